"""Each real anonymization method family of the corpus, on the CI subset (pip-shipped head).

Targets of issue 15: the class right; recall of the removed/altered voxels
>= 0.85 with <= 1 % of brain voxels flagged; an intact head <= 2 % flagged.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from curate.config import MasksConfig
from curate.masks import anatomy_mask, detect_anonymization
from curate.masks.learned import brain_method, learned_brain_mask

from .ci_cases import case_zooms, ci_cases

RULES = MasksConfig(brain_model="none")
NAMES = ("intact", "quickshear", "pydeface", "plane45", "plane45_noisebg", "reface_noise", "blur3",
         "strip_mni_zero", "strip_mni_noise", "strip_loose_zero", "real_mni152")


def _run(name: str, learned: bool = False):
    case = ci_cases()[name]
    anatomy = anatomy_mask(case.image, case_zooms(case))
    brain = learned_brain_mask(case.image, case.affine) if learned else None
    return case, detect_anonymization(case.image, case.affine, anatomy, RULES, brain=brain)


def _share(mask: np.ndarray, region: np.ndarray) -> float:
    return float((mask & region).sum()) / max(int(region.sum()), 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_method_family_is_classified_and_masked(name: str) -> None:
    case, result = _run(name)
    anon = result.mask > 0
    assert result.kind == case.kind, (result.confidence, result.evidence)
    if case.removed is not None and case.removed.any():
        assert _share(anon, case.removed) >= 0.85, result.evidence
    kept_brain = case.brain & ~(case.removed if case.removed is not None else False)
    assert _share(anon, kept_brain) <= 0.01
    if case.kind == "none":
        assert _share(anon, case.head) <= 0.02


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepbet") is None, reason="deepbet not installed")
@pytest.mark.parametrize("name", ["intact", "strip_mni_noise", "strip_deepbet_zero",
                                  "real_mni152", "pydeface"])
def test_learned_brain_mask_agrees_with_the_rules(name: str) -> None:
    assert brain_method().startswith("deepbet-")
    case, result = _run(name, learned=True)
    assert result.kind == case.kind, result.evidence
    assert "outside_brain" in result.evidence


def test_without_a_learned_model_the_method_is_rules() -> None:
    from curate.stages.masks import method_of

    assert method_of(RULES) == "rules"
    auto = method_of(MasksConfig())
    assert auto == ("rules" if brain_method() == "none" else f"rules+{brain_method()}")
