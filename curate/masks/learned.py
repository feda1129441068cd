"""Optional learned brain mask (deepbet), used by the skull-stripped rule when installed.

``pip install mri-curate[brainmask]`` adds deepbet (MIT; its wheel ships its
TorchScript weights) and torch.  Without them :func:`brain_method` is
``"none"`` and :func:`learned_brain_mask` returns ``None``; ``curate build``
never needs torch.

Only deepbet's first network runs: the one that finds the brain on a 128^3
resampling of the whole field of view (deepbet uses it to place its bounding
box).  Its mask is coarse (about 1.5-2 mm on a head) but ample for the question
asked here — how much of the anatomy lies outside the brain — and it runs in a
few CPU seconds where the full 256^3 network takes tens.

Weights are loaded with ``torch.jit.load`` from the installed package's own
data folder (never from a path read from input data).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = ["brain_method", "learned_brain_mask"]

_SMALL = (128, 128, 128)


def brain_method() -> str:
    """``"deepbet-<version>"`` when deepbet and torch are importable, else ``"none"``."""
    if importlib.util.find_spec("deepbet") is None or importlib.util.find_spec("torch") is None:
        return "none"
    return f"deepbet-{importlib.metadata.version('deepbet')}"


@lru_cache(maxsize=1)
def _model() -> Any:
    import torch

    spec = importlib.util.find_spec("deepbet")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).resolve().parents[1] / "data" / "models" / "bbox_model.pt"
    model = torch.jit.load(str(path), map_location="cpu")
    model.eval()
    return model


def _normalize(x: Any, low: Any, high: Any) -> Any:
    """deepbet's input normalisation (clip to the 0.5-99.5 % range, z-score, ImageNet-like)."""
    x = ((x - low) / (high - low)).clamp(0, 1)
    x = (x - x.mean()) / x.std()
    return 0.226 * x + 0.449


def learned_brain_mask(data: np.ndarray, affine: np.ndarray, threads: int = 1) -> np.ndarray | None:
    """Boolean brain mask of a 3-D image on its own grid, or ``None`` without deepbet.

    Parameters
    ----------
    data
        3-D image.
    affine
        Its affine (deepbet expects RAS-canonical input; the image is reoriented
        and the mask brought back).
    threads
        torch intra-op threads.
    """
    if brain_method() == "none":
        return None
    import torch

    torch.set_num_threads(max(1, threads))
    ornt = nib.orientations.io_orientation(affine)
    ras = nib.orientations.apply_orientation(np.nan_to_num(data.astype(np.float32)), ornt)
    x = torch.from_numpy(np.ascontiguousarray(ras))
    small = torch.nn.functional.interpolate(x[None, None], _SMALL, mode="nearest-exact")[0, 0]
    low, high = small.quantile(0.005), small.quantile(0.995)
    if not float(high) > float(low):
        return np.zeros(data.shape, dtype=bool)
    with torch.no_grad():
        prob = _model()(_normalize(small, low, high)[None, None])[0, 1].numpy()
    mask = prob > 0.5
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    # nearest neighbour back to the image grid (the inverse of the "nearest-exact" resampling)
    index = [np.minimum((np.arange(n) + 0.5) * m / n, m - 1).astype(int) for n, m in zip(ras.shape, _SMALL)]
    full = mask[np.ix_(*index)]
    back = nib.orientations.ornt_transform(np.array([[0, 1], [1, 1], [2, 1]], float), ornt)
    return nib.orientations.apply_orientation(full, back).astype(bool)
