"""Motion (and, with ``affine``, eddy-current) correction: every volume to the mean b0.

Registration is SimpleITK's: Mattes mutual information (b0 and
diffusion-weighted volumes differ in contrast), random sampling of a fraction
of the head voxels, a regular-step gradient descent over a short coarse-to-fine
pyramid.  Each volume is resampled onto the mean b0 with linear interpolation
and its gradient direction is rotated by the inverse of the transform's
rotation (as ``dipy.core.gradients.reorient_bvecs`` does), so the tensor fit
sees directions in the corrected frame.

Images are handed to ITK in the array frame: ITK axis i is array axis i,
spacing the voxel size, no rotation.  FSL-style bvecs are in that frame
except that x is flipped when the image affine has a positive determinant;
``flip_x`` accounts for it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy.linalg import polar


@dataclass(frozen=True, slots=True)
class MotionSettings:
    """Registration settings (see :class:`curate.config.DwiConfig`)."""

    kind: str = "rigid"
    shrink_factors: tuple[int, ...] = (4, 2)
    smoothing_mm: tuple[float, ...] = (2.0, 1.0)
    sampling: float = 0.25
    iterations: int = 50
    seed: int = 13


@dataclass(slots=True)
class MotionResult:
    """Corrected series, rotated bvecs and per-volume displacement (mm)."""

    data: np.ndarray = field(repr=False)
    bvecs: np.ndarray = field(repr=False)
    matrices: np.ndarray = field(repr=False)  # (N, 4, 4) fixed -> moving, array frame, mm
    displacement_mm: np.ndarray = field(repr=False)  # (N,) mean over the mask


def to_itk(volume: np.ndarray, zooms: tuple[float, ...]) -> sitk.Image:
    """A 3D array as an ITK image in the array frame (ITK axis i = array axis i)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0), np.float32))
    image.SetSpacing(tuple(float(z) for z in zooms[:3]))
    return image


def from_itk(image: sitk.Image) -> np.ndarray:
    """Inverse of :func:`to_itk`."""
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def _register(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image | None,
              settings: MotionSettings) -> sitk.Transform:
    base = sitk.AffineTransform(3) if settings.kind == "affine" else sitk.Euler3DTransform()
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, base, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling, settings.seed)
    if mask is not None:
        reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=settings.iterations,
        relaxationFactor=0.5)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(fit_shrink(settings.shrink_factors, fixed.GetSize()))
    reg.SetSmoothingSigmasPerLevel(list(settings.smoothing_mm))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    return reg.Execute(fixed, moving)


def fit_shrink(factors: tuple[int, ...], size: tuple[int, ...], smallest: int = 8) -> list[int]:
    """Shrink factors capped so no level is smaller than ``smallest`` voxels along any axis.

    Examples
    --------
    >>> fit_shrink((4, 2), (96, 96, 60)), fit_shrink((4, 2), (10, 10, 6))
    ([4, 2], [1, 1])
    """
    limit = max(1, min(size) // smallest)
    return [max(1, min(int(f), limit)) for f in factors]


def transform_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 matrix of a (composite of one) matrix-offset transform, fixed -> moving."""
    tx = transform
    if isinstance(tx, sitk.CompositeTransform):
        tx = tx.GetBackTransform()
    tx = sitk.AffineTransform(tx) if tx.GetName() == "AffineTransform" else sitk.Euler3DTransform(tx)
    a = np.asarray(tx.GetMatrix(), float).reshape(3, 3)
    c = np.asarray(tx.GetCenter(), float)
    t = np.asarray(tx.GetTranslation(), float)
    out = np.eye(4)
    out[:3, :3] = a
    out[:3, 3] = c + t - a @ c
    return out


def displacement(matrix: np.ndarray, points_mm: np.ndarray) -> float:
    """Mean distance (mm) the transform moves ``points_mm`` (P, 3)."""
    moved = points_mm @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.linalg.norm(moved - points_mm, axis=1).mean())


def rotate_bvecs(bvecs: np.ndarray, matrices: np.ndarray, flip_x: bool) -> np.ndarray:
    """Apply the inverse rotation of each volume's transform to its direction."""
    flip = np.diag([-1.0 if flip_x else 1.0, 1.0, 1.0])
    out = np.array(bvecs, dtype=float, copy=True)
    for i, matrix in enumerate(matrices):
        rotation, _ = polar(matrix[:3, :3])
        out[i] = flip @ rotation.T @ flip @ out[i]
    return out


def correct_motion(data: np.ndarray, zooms: tuple[float, ...], reference: np.ndarray,
                   bvecs: np.ndarray, mask: np.ndarray, flip_x: bool,
                   settings: MotionSettings, threads: int = 1) -> MotionResult:
    """Register every volume of ``data`` to ``reference`` and resample it there.

    Parameters
    ----------
    data
        (X, Y, Z, N) series.
    zooms
        Voxel size in mm.
    reference
        (X, Y, Z) target, normally the mean b0.
    bvecs
        (N, 3) unit directions (zero rows for b0 volumes).
    mask
        Head mask on the reference: where the metric samples and where
        displacement is measured.
    flip_x
        True when the image affine has a positive determinant (FSL bvec convention).
    settings
        Registration settings.
    threads
        Volumes registered at the same time (ITK releases the GIL).
    """
    fixed = to_itk(reference, zooms)
    itk_mask = sitk.Cast(to_itk(mask.astype(np.float32), zooms), sitk.sitkUInt8)
    points = np.argwhere(mask) * np.asarray(zooms[:3], float)
    corrected = np.empty_like(data, dtype=np.float32)
    matrices = np.zeros((data.shape[3], 4, 4))

    def one(v: int) -> None:
        moving = to_itk(data[..., v], zooms)
        transform = _register(fixed, moving, itk_mask, settings)
        corrected[..., v] = from_itk(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0))
        matrices[v] = transform_matrix(transform)

    # Volumes run side by side, so each registration gets one ITK thread; the
    # worker's own setting (curate.threads) is put back afterwards.
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            list(pool.map(one, range(data.shape[3])))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    moved = np.array([displacement(m, points) for m in matrices])
    return MotionResult(corrected, rotate_bvecs(bvecs, matrices, flip_x), matrices, moved)
