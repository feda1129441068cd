"""MRIQC's own classifier, built by the ``mriqc-learn`` wheel's code, on today's scikit-learn.

``mriqc_learn.models.production.init_pipeline`` is the wheel's production model:
drop geometry -> ``SiteRobustScaler`` (per-site median/IQR, unit variance) ->
``SiteCorrelationSelector`` (drop features that predict the site) ->
``NoiseWinnowFeatSelect`` (drop features less important than a noise column) ->
random forest (400 trees, depth 10).  Two shims, both outside the wheel's logic:

* the wheel imports ``pkg_resources`` at module level (gone from setuptools >= 81);
  a stand-in with ``resource_filename`` is registered only for that import;
* ``SiteCorrelationSelector`` calls ``OneHotEncoder(sparse=False)``, a keyword
  scikit-learn 1.4 removed; it is passed on as ``sparse_output``.

``selector_trees`` lowers the 1,000 trees of the two selection steps (the
shared 2-core machine cannot fit 1,000 x ~45 forests per fold in time); the
random forest keeps its 400.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def _resource_filename(package: str, name: str) -> str:
    head, *rest = package.split(".")
    return str(files(head).joinpath(*rest, name))


def _production() -> types.ModuleType:
    """``mriqc_learn.models.production``, imported with a ``pkg_resources`` stand-in if needed."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stub = types.ModuleType("pkg_resources")
        stub.resource_filename = _resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stub
        try:
            from mriqc_learn.models import production
        finally:
            del sys.modules["pkg_resources"]
        return production
    from mriqc_learn.models import production
    return production


def _one_hot(*args: Any, sparse: bool | None = None, **kwargs: Any) -> OneHotEncoder:
    if sparse is not None:
        kwargs["sparse_output"] = sparse
    return OneHotEncoder(*args, **kwargs)


@contextlib.contextmanager
def sklearn_compat() -> Iterator[None]:
    """While inside, the wheel's preprocess module builds its encoders with today's keyword."""
    from mriqc_learn.models import preprocess

    saved = preprocess.OneHotEncoder
    preprocess.OneHotEncoder = _one_hot
    try:
        yield
    finally:
        preprocess.OneHotEncoder = saved


def init_pipeline(selector_trees: int = 1000, seed: int | None = 0) -> Pipeline:
    """The wheel's production pipeline; ``selector_trees`` for both selection steps."""
    pipe = _production().init_pipeline()
    pipe.set_params(site_pred__n_estimators=selector_trees, winnow__n_estimators=selector_trees,
                    rfc__random_state=seed)
    return pipe
