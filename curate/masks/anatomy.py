"""Anatomy (subject foreground) masks for heads and other body parts.

Method
------
The mask is computed on a block-averaged copy of the image with voxels of
about ``work_mm`` (2 mm by default), which makes the morphology cheap and
averages away most of the noise, and is then brought back to the image grid.

1. **Log-Otsu threshold.**  The coarse image is log-compressed
   (``log1p(x / scale)``).  Otsu's threshold on the log image separates air
   from tissue even under a strong multiplicative bias field, because a bias
   field is an additive offset in the log domain while the air/tissue contrast
   is an order of magnitude.
2. **Noise floor.**  Voxels below that threshold are taken as air; their
   median plus ``noise_k`` robust standard deviations (MAD) is the noise floor.
   The final threshold is the *lower* of the Otsu threshold and a small multiple
   of the floor, but never below the floor, so dark tissue (scalp-fat-free
   regions, bias-darkened slices, CSF) stays in the mask while noise does not.
3. **Components.**  The largest connected component and every component at
   least ``min_component_fraction`` of its size are kept (two legs, two
   hemispheres split by a dark midline in a skull-stripped image).
4. **Closing and filling.**  A morphological closing bridges the dark skull
   and sinuses; 3-D hole filling then a slice-wise fill along each axis closes
   cavities that open to the outside through a thin channel (ear canals,
   nasal cavity, mouth).

Failure modes
-------------
* Images whose background is brighter than tissue (inverted contrast, some
  phase or quantitative maps) give an inverted mask.  Such images are rare in
  structural collections; the mask is then still 0/1 but meaningless.
* Very dark tissue next to air (cortical bone, air-filled sinuses open to the
  outside of the FOV) can be left out where the closing cannot bridge it.
* Ghosting or wrap-around artefacts brighter than the noise floor join the
  foreground if they touch the head.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

__all__ = ["anatomy_mask", "block_factors", "downsample", "finite", "foreground_threshold", "upsample"]


def finite(data: np.ndarray) -> np.ndarray:
    """``data`` as float32 with non-finite voxels set to 0 (copied only when needed)."""
    out = data.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def block_factors(zooms: tuple[float, ...], work_mm: float) -> tuple[int, int, int]:
    """Integer block sizes that bring voxels of size ``zooms`` close to ``work_mm``.

    Examples
    --------
    >>> block_factors((1.0, 1.0, 1.0), 2.0)
    (2, 2, 2)
    >>> block_factors((0.5, 0.5, 3.0), 2.0)
    (4, 4, 1)
    """
    return tuple(max(1, int(round(work_mm / max(float(z), 1e-3)))) for z in zooms[:3])  # type: ignore[return-value]


def downsample(data: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Block means of ``data`` (edges padded by repetition to whole blocks), float32."""
    pads = [(0, (-s) % f) for s, f in zip(data.shape, factors)]
    padded = np.pad(data.astype(np.float32, copy=False), pads, mode="edge")
    shape = []
    for size, f in zip(padded.shape, factors):
        shape.extend([size // f, f])
    return padded.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def upsample(mask: np.ndarray, factors: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour inverse of :func:`downsample` for boolean masks, cropped to ``shape``."""
    out = mask
    for axis, f in enumerate(factors):
        if f > 1:
            out = np.repeat(out, f, axis=axis)
    return out[: shape[0], : shape[1], : shape[2]]


def foreground_threshold(smooth: np.ndarray, noise_k: float = 5.0,
                         floor_multiple: float = 3.0) -> float:
    """Tissue/air threshold of a smoothed image (log-Otsu bounded by the noise floor).

    Returns ``inf`` when the image has no contrast at all.
    """
    values = smooth[np.isfinite(smooth)].astype(np.float64)  # float32 overflows near FLT_MAX
    low, high = float(values.min()), float(np.percentile(values, 99.5))
    if high <= low:
        return float("inf")
    scale = max((high - low) / 1000.0, 1e-12)
    logs = np.log1p((values - low) / scale)
    t_log = float(threshold_otsu(logs[:: max(1, logs.size // 400_000)]))
    t_otsu = low + scale * float(np.expm1(t_log))
    air = values[values < t_otsu]
    if air.size == 0:
        return t_otsu
    median = float(np.median(air))
    mad = 1.4826 * float(np.median(np.abs(air - median)))
    floor = median + noise_k * max(mad, 1e-6 * (high - low))
    return max(floor, min(t_otsu, floor_multiple * floor))


def _keep_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, keep)


def _ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius**2


def fill_slicewise(mask: np.ndarray) -> np.ndarray:
    """Fill holes in 3-D, then in every 2-D slice along each axis."""
    out = ndimage.binary_fill_holes(mask)
    for axis in range(3):
        structure = np.zeros((3, 3, 3), dtype=bool)
        index: list[slice | int] = [slice(None)] * 3
        index[axis] = 1
        structure[tuple(index)] = ndimage.generate_binary_structure(2, 1)
        out = ndimage.binary_fill_holes(out, structure=structure)
    return out


def coarse_anatomy(coarse: np.ndarray, closing_voxels: int = 2, noise_k: float = 5.0,
                   floor_multiple: float = 3.0, min_component_fraction: float = 0.1) -> np.ndarray:
    """Boolean foreground of an already block-averaged image (see module docstring)."""
    threshold = foreground_threshold(coarse, noise_k, floor_multiple)
    mask = coarse > threshold
    if not mask.any():
        return mask
    mask = _keep_components(mask, min_component_fraction)
    if closing_voxels > 0:
        pad = closing_voxels + 1
        padded = np.pad(mask, pad)
        padded = ndimage.binary_closing(padded, structure=_ball(closing_voxels))
        mask = padded[pad:-pad, pad:-pad, pad:-pad]
    return fill_slicewise(mask)


def anatomy_mask(data: np.ndarray, zooms: tuple[float, ...], work_mm: float = 2.0,
                 closing_mm: float = 4.0, noise_k: float = 5.0, floor_multiple: float = 3.0,
                 min_component_fraction: float = 0.1) -> np.ndarray:
    """Subject-tissue mask of a 3-D image, uint8 0/1 on the image's grid.

    Parameters
    ----------
    data
        3-D image (non-finite voxels count as air).
    zooms
        Voxel sizes in mm.
    work_mm
        Voxel size the mask is computed at.
    closing_mm
        Radius of the morphological closing.
    noise_k, floor_multiple, min_component_fraction
        See the module docstring.

    Examples
    --------
    >>> img = np.zeros((40, 40, 40), np.float32); img[10:30, 10:30, 10:30] = 100
    >>> m = anatomy_mask(img + np.random.default_rng(0).random(img.shape), (1.0, 1.0, 1.0))
    >>> m.dtype, int(m.sum()), int(m[20, 20, 20]), int(m[2, 2, 2])
    (dtype('uint8'), 8000, 1, 0)
    """
    if data.ndim != 3:
        raise ValueError(f"anatomy_mask needs a 3-D image, got shape {data.shape}")
    clean = finite(data)
    factors = block_factors(zooms, work_mm)
    coarse = downsample(clean, factors)
    work = [z * f for z, f in zip(zooms[:3], factors)]
    closing = int(round(closing_mm / float(np.mean(work))))
    mask = coarse_anatomy(coarse, closing, noise_k, floor_multiple, min_component_fraction)
    full = upsample(mask, factors, clean.shape)
    return full.astype(np.uint8)
