"""Pure maths of the pre-training arrays: reorient, crop, resample, z-score, pack masks.

The recipe follows OpenMind/nnssl preprocessing: every image is put in RAS
voxel order, cropped to its anatomy (or non-zero region) with a margin,
resampled to a fixed spacing (1 mm by default; image cubic B-spline, masks
nearest neighbour) and z-scored.  Unlike nnssl we crop *before* resampling,
so the expensive spline only runs over the voxels that are kept.

Geometry is kept exactly: :attr:`PreparedArray.affine` maps an array voxel to
scanner millimetres, so ``inv(source_affine) @ affine`` maps it back to a
(fractional) voxel of the source file; :attr:`PreparedArray.crop_box` is the
kept region in source voxel indices.  Nothing here touches files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import nibabel.orientations as nio
import numpy as np
import SimpleITK as sitk

from curate.nifti import clip_outliers

#: Bit of the packed mask byte that holds the anatomy mask (1 = subject tissue).
ANATOMY_BIT = 1
#: Bit of the packed mask byte that holds the anonymization mask (1 = changed).
ANON_BIT = 2

_INTERPOLATORS = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear}


@dataclass(frozen=True, slots=True)
class PreparedArray:
    """One image ready to store: float32 image, packed uint8 masks, geometry."""

    image: np.ndarray
    masks: np.ndarray
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    crop_box: tuple[int, int, int, int, int, int]
    notes: tuple[str, ...] = ()


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip/permute voxel axes to the closest RAS order (no interpolation).

    Returns ``(data, affine, to_source)`` where ``to_source`` (4 x 4) maps a RAS-grid
    voxel to the source voxel it came from.

    Examples
    --------
    >>> lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    >>> out, aff, _ = to_ras(np.arange(8.0).reshape(2, 2, 2), lps)
    >>> nio.aff2axcodes(aff), float(out[0, 0, 0])
    (('R', 'A', 'S'), 6.0)
    """
    ornt = nio.io_orientation(affine)
    to_source = nio.inv_ornt_aff(ornt, data.shape[:3])
    return nio.apply_orientation(data, ornt), affine @ to_source, to_source


def reorient_like(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorient ``mask`` (on the grid of ``affine``) the way :func:`to_ras` reorients its image."""
    return nio.apply_orientation(mask, nio.io_orientation(affine))


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """uint8 mask of finite, non-zero voxels: the fallback anatomy when no mask exists."""
    return (np.isfinite(data) & (data != 0)).astype(np.uint8)


def bounding_box(mask: np.ndarray, margin: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Half-open box ``(lo, hi)`` around the non-zero voxels of ``mask``, grown by ``margin``.

    Returns ``None`` for an empty mask.

    Examples
    --------
    >>> m = np.zeros((10, 10, 10), np.uint8); m[4:6, 2, 7] = 1
    >>> bounding_box(m, (1, 1, 1))
    ((3, 1, 6), (7, 4, 9))
    """
    lo: list[int] = []
    hi: list[int] = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        lo.append(max(0, int(hits[0]) - margin[axis]))
        hi.append(min(mask.shape[axis], int(hits[-1]) + 1 + margin[axis]))
    return tuple(lo), tuple(hi)


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...],
                    target: tuple[float, ...]) -> tuple[int, ...]:
    """Number of target-spaced samples that fit from the first voxel centre to the last.

    Examples
    --------
    >>> resampled_shape((100, 10), (1.0, 2.0), (1.0, 1.0))
    (100, 19)
    """
    return tuple(int(math.floor((n - 1) * s / t + 1e-6)) + 1 for n, s, t in zip(shape, spacing, target))


def resample_image(data: np.ndarray, spacing: tuple[float, ...], target: tuple[float, ...],
                   interpolation: str = "bspline") -> np.ndarray:
    """Resample a 3D image to ``target`` spacing; voxel 0 stays at voxel 0.

    SimpleITK's multi-threaded B-spline (cubic) interpolator is used rather than
    ``scipy.ndimage``: it gives the same order-3 result several times faster.
    """
    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"unknown image_interpolation {interpolation!r}; use one of {sorted(_INTERPOLATORS)}")
    out_shape = resampled_shape(data.shape, spacing, target)
    # SimpleITK indexes (x, y, z) = numpy's last axis first, hence the reversals.
    img = sitk.GetImageFromArray(np.ascontiguousarray(data, dtype=np.float32))
    img.SetSpacing([float(s) for s in spacing[::-1]])
    out = sitk.Resample(img, [int(n) for n in out_shape[::-1]], sitk.Transform(),
                        _INTERPOLATORS[interpolation], (0.0, 0.0, 0.0),
                        [float(t) for t in target[::-1]], img.GetDirection(), 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def resample_mask(mask: np.ndarray, spacing: tuple[float, ...], target: tuple[float, ...]) -> np.ndarray:
    """Nearest-neighbour resampling of a label mask on the grid of :func:`resample_image`."""
    out_shape = resampled_shape(mask.shape, spacing, target)
    index = [np.minimum(np.rint(np.arange(n) * t / s).astype(np.intp), size - 1)
             for n, s, t, size in zip(out_shape, spacing, target, mask.shape)]
    return mask[np.ix_(*index)]


def zscore(data: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
    """Zero-mean, unit-variance float32 copy; statistics over ``within`` voxels when given.

    Non-finite voxels become 0 and are left out of the statistics.

    Examples
    --------
    >>> out = zscore(np.array([1.0, 2.0, 3.0, np.nan]))
    >>> [round(float(v), 3) for v in out]
    [-1.225, 0.0, 1.225, 0.0]
    """
    finite = np.isfinite(data)
    select = finite if within is None else finite & (within > 0)
    if not select.any():
        select = finite
    values = data[select].astype(np.float64)
    mean = float(values.mean()) if values.size else 0.0
    std = float(values.std()) if values.size else 0.0
    out = (np.where(finite, data, mean).astype(np.float32) - np.float32(mean)) / np.float32(std or 1.0)
    return out


def fill_nonfinite(data: np.ndarray, within: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """``data`` with NaN/Inf voxels set to the finite mean (over ``within`` when given), and their count.

    Done before resampling: the cubic B-spline prefilter is recursive along
    whole lines, so a single NaN would otherwise spread over the whole array.
    The mean is the value :func:`zscore` maps to 0, where it puts non-finite voxels.

    Examples
    --------
    >>> out, n = fill_nonfinite(np.array([1.0, np.inf, 3.0]))
    >>> out.tolist(), n
    ([1.0, 2.0, 3.0], 1)
    """
    finite = np.isfinite(data)
    n_bad = int(finite.size - np.count_nonzero(finite))
    if n_bad == 0:
        return data, 0
    select = finite if within is None else finite & (within > 0)
    if not select.any():
        select = finite
    fill = float(data[select].astype(np.float64).mean()) if select.any() else 0.0
    return np.where(finite, data, np.float32(fill)).astype(data.dtype, copy=False), n_bad


def pack_masks(anatomy: np.ndarray, anon: np.ndarray) -> np.ndarray:
    """One uint8 per voxel: bit 0 anatomy, bit 1 anonymization."""
    return ((anatomy > 0).astype(np.uint8) * ANATOMY_BIT) | ((anon > 0).astype(np.uint8) * ANON_BIT)


def unpack_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_masks`: ``(anatomy, anon)`` as uint8 0/1."""
    return (masks & ANATOMY_BIT) // ANATOMY_BIT, (masks & ANON_BIT) // ANON_BIT


def source_box(lo: tuple[int, ...], hi: tuple[int, ...], to_source: np.ndarray) -> tuple[int, ...]:
    """The RAS-grid box ``[lo, hi)`` in source voxel indices, as ``(i0, j0, k0, i1, j1, k1)``."""
    corners = np.array([[*lo, 1.0], [h - 1 for h in hi] + [1.0]]).T
    mapped = np.rint(to_source @ corners)[:3]
    return (*(int(v) for v in mapped.min(axis=1)), *(int(v) + 1 for v in mapped.max(axis=1)))


def coarse_occupancy(anatomy_packed: np.ndarray, cell: int = 8) -> np.ndarray:
    """Fraction (0-255) of anatomy voxels in each ``cell``^3 block of packed masks.

    Stored beside the array so a loader can centre crops on anatomy without
    decompressing the mask.

    Examples
    --------
    >>> m = np.zeros((16, 8, 8), np.uint8); m[:8] = ANATOMY_BIT
    >>> coarse_occupancy(m, 8).ravel().tolist()
    [255, 0]
    """
    anatomy = (anatomy_packed & ANATOMY_BIT).astype(np.float32)
    pads = [(0, (-n) % cell) for n in anatomy.shape]
    padded = np.pad(anatomy, pads)
    blocks = padded.reshape(*(n // cell for n in padded.shape[:1]), cell,
                            padded.shape[1] // cell, cell, padded.shape[2] // cell, cell)
    return np.rint(blocks.mean(axis=(1, 3, 5)) * 255).astype(np.uint8)


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]


def prepare(data: np.ndarray, affine: np.ndarray, anatomy: np.ndarray | None, anon: np.ndarray | None, *,
            target: tuple[float, ...] = (1.0, 1.0, 1.0), margin_mm: float = 8.0,
            interpolation: str = "bspline", normalization: str = "image",
            tolerance_mm: float = 1e-3, outlier_spans: float = 10.0) -> PreparedArray:
    """Turn one 3D image (and its masks, on its own grid) into a :class:`PreparedArray`.

    ``anatomy`` ``None`` falls back to the non-zero region; ``anon`` ``None`` to an
    empty mask.  ``normalization`` is ``"image"`` or ``"anatomy"``.
    """
    if normalization not in ("image", "anatomy"):
        raise ValueError(f"unknown normalization {normalization!r}; use 'image' or 'anatomy'")
    notes: list[str] = []
    ras, ras_affine, to_source = to_ras(data, affine)
    anat = reorient_like(anatomy, affine) if anatomy is not None else nonzero_mask(ras)
    anon_ras = reorient_like(anon, affine) if anon is not None else np.zeros(ras.shape, np.uint8)
    spacing = _spacing(ras_affine)
    margin = tuple(int(math.ceil(margin_mm / s)) for s in spacing)
    box = bounding_box(anat, margin)
    if box is None:
        notes.append("arrays: empty anatomy mask, kept the whole image")
        box = ((0, 0, 0), ras.shape)
    lo, hi = box
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    image, anat, anon_ras = ras[window], anat[window], anon_ras[window]
    image, n_bad = fill_nonfinite(image, anat if normalization == "anatomy" else None)
    if n_bad:
        notes.append(f"arrays: {n_bad} non-finite voxels set to the mean before resampling")
    image, n_out = clip_outliers(image, outlier_spans)
    if n_out:
        notes.append(f"arrays: {n_out} outlier voxels (beyond {outlier_spans:g}x the 0.1-99.9 "
                     "percentile range) clipped")
    if any(abs(s - t) > tolerance_mm for s, t in zip(spacing, target)):
        image = resample_image(image, spacing, target, interpolation)
        anat, anon_ras = resample_mask(anat, spacing, target), resample_mask(anon_ras, spacing, target)
        step = tuple(t / s for s, t in zip(spacing, target))
        out_spacing = tuple(float(t) for t in target)
    else:
        step, out_spacing = (1.0, 1.0, 1.0), spacing
    grid = np.diag([*step, 1.0])
    grid[:3, 3] = lo
    image = zscore(image, anat if normalization == "anatomy" else None)
    return PreparedArray(image=image, masks=pack_masks(anat, anon_ras), affine=ras_affine @ grid,
                         spacing_mm=out_spacing,  # type: ignore[arg-type]
                         crop_box=source_box(lo, hi, to_source),  # type: ignore[arg-type]
                         notes=tuple(notes))
