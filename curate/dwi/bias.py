"""Bias-field correction: N4 (SimpleITK) on the mean b0, the same field for every volume.

Tustison et al. 2010, IEEE TMI 29:1310.  The field is estimated once, on a
shrunken mean b0 inside a head mask, then evaluated at full resolution and
divided out of every volume, so the diffusion signal ratios S/S0 (hence FA
and MD) are untouched by the correction itself.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from curate.dwi.motion import fit_shrink, from_itk, to_itk


def n4_field(mean_b0: np.ndarray, mask: np.ndarray, zooms: tuple[float, ...], shrink: int = 4,
             iterations: tuple[int, ...] = (50, 50, 30)) -> np.ndarray:
    """Multiplicative bias field of ``mean_b0`` (1 on average inside ``mask``).

    Parameters
    ----------
    mean_b0
        (X, Y, Z) image the field is estimated on.
    mask
        Voxels N4 fits (head); at least a few hundred.
    zooms
        Voxel size in mm.
    shrink
        Down-sampling factor for the fit (the field is smooth).
    iterations
        Fitting iterations per level.
    """
    image = to_itk(np.clip(mean_b0, 0, None) + 1e-3, zooms)
    itk_mask = sitk.Cast(to_itk(mask.astype(np.float32), zooms), sitk.sitkUInt8)
    shrink = fit_shrink((shrink,), image.GetSize())[0]
    small = sitk.Shrink(image, [shrink] * 3) if shrink > 1 else image
    small_mask = sitk.Shrink(itk_mask, [shrink] * 3) if shrink > 1 else itk_mask
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(iterations))
    n4.Execute(small, small_mask)
    log_field = from_itk(n4.GetLogBiasFieldAsImage(image)).astype(np.float64)
    field = np.exp(log_field - log_field[mask.astype(bool)].mean())
    return field.astype(np.float32)


def apply_field(data: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Divide every volume of a 3D/4D image by the field."""
    return data / (field if data.ndim == 3 else field[..., None])
