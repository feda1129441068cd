"""Diffusion tensor fit and the maps derived from it.

FA = sqrt(3/2) |lambda - mean(lambda)| / |lambda|, MD = mean(lambda) in mm^2/s
(b in s/mm^2).  The fit is dipy's ``TensorModel`` (weighted least squares by
default) on the b0 volumes and the shells with b <= 1000 s/mm^2 (plus
tolerance): at higher b the mono-exponential tensor model no longer holds and
biases FA/MD (e.g. Jones et al. 2013).  A voxel is *NaN* when the fit gives a
non-finite value (set to 0 in the maps), *degenerate* when an eigenvalue is
negative or all are zero (kept, with FA clipped to [0, 1] and MD to >= 0);
both are counted for the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class TensorMaps:
    """FA, MD and counts of bad voxels inside the mask."""

    fa: np.ndarray = field(repr=False)
    md: np.ndarray = field(repr=False)
    nan_voxels: int = 0
    degenerate_voxels: int = 0


def fit_tensor(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray,
               method: str = "WLS", b0_threshold: float = 50.0) -> TensorMaps:
    """Fit tensors inside ``mask``; return FA in [0, 1] and MD >= 0 (mm^2/s)."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    gtab = gradient_table(np.asarray(bvals, float), bvecs=np.asarray(bvecs, float),
                          b0_threshold=b0_threshold)
    inside = np.asarray(mask, bool)
    readable = np.isfinite(data).all(axis=-1)
    model = TensorModel(gtab, fit_method=method)
    with np.errstate(all="ignore"):
        fit = model.fit(np.clip(np.where(readable[..., None], data, 0), 0, None),
                        mask=inside & readable)
        evals = np.asarray(fit.evals, float)
        fa = np.asarray(fit.fa, float)
        md = np.asarray(fit.md, float)
    nan = inside & ~(readable & np.isfinite(evals).all(-1) & np.isfinite(fa) & np.isfinite(md))
    finite = np.where(np.isfinite(evals), evals, 0.0)
    degenerate = inside & ~nan & ((finite < 0).any(-1) | (finite == 0).all(-1))
    bad = nan | ~inside
    fa = np.where(bad, 0.0, np.clip(fa, 0.0, 1.0))
    md = np.where(bad, 0.0, np.clip(md, 0.0, None))
    return TensorMaps(fa.astype(np.float32), md.astype(np.float32), int(nan.sum()),
                      int(degenerate.sum()))
