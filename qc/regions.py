"""Where the measures look: a coarse work grid, the head, the air around it, tissue classes.

No registration and no template: the head is Otsu's threshold [Otsu1979]_ on
the intensities of a strided copy of the volume (the *work grid*), cleaned with
the largest connected component, a closing and hole filling; the air is
everything farther than a margin from the head.  Tissue classes come from a
three-class Otsu split [Liao2001]_ of the intensities inside the eroded head
(or inside a given anatomy mask) -- the histogram split the issue asks for
instead of MRIQC's FSL FAST segmentation.

Strided copies keep voxels independent, so noise statistics taken on the work
grid are unbiased (averaging would shrink the noise); they cost 1/8 of the
voxels at step 2.

References
----------
.. [Otsu1979] Otsu N, A threshold selection method from gray-level
   histograms, IEEE Trans Syst Man Cybern 9(1):62-66, 1979.
.. [Liao2001] Liao P-S et al., A fast algorithm for multilevel thresholding,
   J Inf Sci Eng 17(5):713-727, 2001.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu

#: Fewest air voxels (on the work grid) that make a usable noise sample.
MIN_AIR_VOXELS = 500
#: Above this fraction of exact zeros the air is zero-filled and its zeros are dropped.
ZERO_FILLED_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class Regions:
    """Head / air split of one volume on its work grid.

    Attributes
    ----------
    step
        Stride of the work grid (1 keeps every voxel).
    work
        The strided, finite (non-finite set to 0) float32 copy.
    head
        Boolean head (foreground) mask on the work grid.
    air
        Boolean mask of usable air on the work grid (may be empty).
    threshold
        The head/air intensity threshold (NaN when the volume is constant).
    air_reason
        Why there is no usable air, or ``None`` when there is.
    """

    step: int
    work: np.ndarray
    head: np.ndarray
    air: np.ndarray
    threshold: float
    air_reason: str | None


def work_step(shape: tuple[int, ...], max_voxels: int = 3_000_000) -> int:
    """Smallest stride whose strided grid has at most ``max_voxels`` voxels.

    Examples
    --------
    >>> work_step((256, 256, 256)), work_step((64, 64, 64))
    (2, 1)
    """
    step = 1
    while math.prod(-(-n // step) for n in shape) > max_voxels:
        step += 1
    return step


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (empty stays empty)."""
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def head_mask(work: np.ndarray) -> tuple[np.ndarray, float]:
    """Foreground mask (largest component, closed, holes filled) and its threshold.

    A constant volume has no foreground: the mask is empty and the threshold NaN.
    """
    values = work.ravel()
    if values.size < 2 or float(values.min()) == float(values.max()):
        return np.zeros(work.shape, bool), float("nan")
    # Zeros stay in (a zero-filled background is background, as the air it replaced, so
    # zeroing the air hardly moves the threshold; padding is cropped before this); the
    # values are clipped at the 99.5th percentile of the non-zero ones, so that a few
    # bright voxels (vessels, fat, a hot pixel) do not stretch the histogram.
    sample = values[:: max(1, values.size // 1_000_000)]
    nonzero = sample[sample != 0]
    top = float(np.percentile(nonzero, 99.5)) if nonzero.size else float(sample.max())
    sample = np.minimum(sample, top) if top > float(sample.min()) else sample
    threshold = float(threshold_otsu(sample))
    mask = largest_component(work > threshold)
    mask = ndi.binary_closing(mask, iterations=2, border_value=0) | mask
    return ndi.binary_fill_holes(mask), threshold


def air_mask(work: np.ndarray, head: np.ndarray, margin: int = 3) -> tuple[np.ndarray, str | None]:
    """Air farther than ``margin`` work voxels from the head, without its exact zeros.

    Returns the mask and, when it is unusable, the reason (skull-stripped,
    masked or zero-filled background, or a head that fills the field of view).
    """
    air = ~ndi.binary_dilation(head, iterations=margin) if head.any() else np.ones(head.shape, bool)
    n_air = int(air.sum())
    if n_air < MIN_AIR_VOXELS:
        return np.zeros(head.shape, bool), f"only {n_air} air voxels around the head"
    # Mostly exact zeros: a zero-filled background, no measured air (a few zeros are
    # just quantised air and stay; padding is cropped before this).
    zero = air & (work == 0)
    if zero.sum() > ZERO_FILLED_FRACTION * n_air:
        air &= ~zero
    if air.sum() < MIN_AIR_VOXELS:
        return np.zeros(head.shape, bool), (
            "background is zero-filled (skull-stripped, masked or defaced image)")
    return air, None


def data_box(data: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the voxels that are not exactly zero (padding is no information).

    Examples
    --------
    >>> x = np.zeros((5, 6, 7)); x[1:3, 2:4, 3:6] = 1
    >>> data_box(x)
    (slice(1, 3, None), slice(2, 4, None), slice(3, 6, None))
    """
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        used = np.flatnonzero(np.any(data != 0, axis=others))
        box.append(slice(int(used[0]), int(used[-1]) + 1) if used.size else slice(0, data.shape[axis]))
    return tuple(box)


def split(data: np.ndarray, max_voxels: int = 3_000_000, margin: int = 3) -> Regions:
    """Head/air split of a 3D volume on a strided work grid.

    Parameters
    ----------
    data
        The volume (any real dtype; non-finite voxels count as 0).
    max_voxels
        Largest size of the work grid.
    margin
        Air starts this many work voxels away from the head.
    """
    step = work_step(data.shape, max_voxels)
    work = np.asarray(data[::step, ::step, ::step], dtype=np.float32)
    work = np.where(np.isfinite(work), work, np.float32(0))
    head, threshold = head_mask(work)
    if not head.any():
        return Regions(step, work, head, np.zeros(work.shape, bool), threshold,
                       "no foreground: the volume is constant")
    air, reason = air_mask(work, head, margin)
    return Regions(step, work, head, air, threshold, reason)


def tissue_thresholds(values: np.ndarray) -> tuple[float, float]:
    """Two thresholds splitting ``values`` into three classes (multi-Otsu).

    Returns ``(nan, nan)`` when the values have fewer than three distinct levels.
    Outliers that squeeze the tissue into one histogram bin are clipped first.

    Examples
    --------
    >>> v = np.repeat([10.0, 50.0, 90.0], 100)
    >>> low, high = tissue_thresholds(v)
    >>> bool(10 < low < 50 < high < 90)
    True
    """
    values = values[np.isfinite(values)]
    if values.size < 3 or np.unique(values[:: max(1, values.size // 100_000)]).size < 3:
        return float("nan"), float("nan")
    sample = values[:: max(1, values.size // 1_000_000)]
    thresholds = _multiotsu(sample)
    if thresholds is None or np.count_nonzero(sample > thresholds[1]) < 0.001 * sample.size:
        # A few extreme voxels (a hot voxel, a fill value) stretch the 256 histogram bins
        # so far that the tissue falls in one or two: split the 0.1-99.9 percentile range.
        thresholds = _multiotsu(np.clip(sample, *np.percentile(sample, (0.1, 99.9))))
    return thresholds if thresholds is not None else (float("nan"), float("nan"))


def _multiotsu(values: np.ndarray) -> tuple[float, float] | None:
    """scikit-image's three-class Otsu thresholds, or ``None`` when the histogram has < 3 levels."""
    try:
        low, high = threshold_multiotsu(values, classes=3)
    except ValueError:
        return None
    return float(low), float(high)


def inner_region(head: np.ndarray, anatomy: np.ndarray | None, erode: int = 2) -> np.ndarray:
    """Voxels whose intensities the tissue split uses: the anatomy mask, else the eroded head."""
    if anatomy is not None and anatomy.shape == head.shape and anatomy.any():
        return anatomy.astype(bool)
    inner = ndi.binary_erosion(head, iterations=erode)
    return inner if inner.sum() >= 100 else head
