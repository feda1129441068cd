r"""Artifact measures: ghosting, artifacts in the air, k-space spikes, ringing,
intensity non-uniformity, anatomy cut by the field of view, zero or duplicated slices.

Ghost ratio (along the phase-encoding axis :math:`a`)
    Ghosts are faint copies of the head displaced along the phase-encoding
    axis, so they land in the air *band* whose lines along :math:`a` cross the
    head.  With :math:`S` the median head intensity,
    :math:`g_a = \max(0, \mathrm{med}(B_\mathrm{band}) - \mathrm{med}(B_\mathrm{off})) / S`,
    and the same with the band replaced by the air where the head shifted by
    half the field of view lands (a Nyquist ghost); medians, so that anatomy
    in part of the band (neck, shoulders) is no ghost; exact zeros are no air.
    Unknown phase-encoding: the largest of the three axes.
QI1-like air artifact fraction [Mortamet2009]_
    Air voxels above the Rayleigh tail threshold
    :math:`t = \hat\sigma\sqrt{2\ln(1/p)}` (:math:`p = 10^{-4}`), kept only where a
    morphological opening leaves them (structured, not isolated), as a fraction
    of the air.
Spike score
    A k-space spike is one bright, isolated Fourier coefficient.  A 3D spike
    shows in the 2D spectrum of every slice at the same place with the same
    magnitude, so in the mean 2D magnitude spectrum :math:`M` of a few slices
    the score is :math:`\max \ln(M / \mathrm{median}_{5\times5}(M))` outside the
    low frequencies, the two axis lines and the outermost band (radius > 0.4
    cycles per voxel).  Largest over the three slice axes.
Ringing
    Gibbs ringing oscillates beside strong edges.  In a few slices per axis,
    the RMS second difference in a band 2-5 voxels from strong edges, minus
    the white-noise part :math:`20\sigma^2` (2D Laplacian), over :math:`S`.
INU (bias) spread
    A degree-2 polynomial least-squares fit to the log intensity of the inner
    head above the lowest tissue class; the standard deviation of the fitted
    field over those voxels.  A smooth multiplicative field shows up in it,
    anatomy (spatially mixed classes) hardly does.
Border truncation
    Largest head cross-section on a face of the volume, over the head's
    largest cross-section along that axis, over the faces other than the
    inferior one (the neck always leaves);
    :mod:`qc.profile` crops exact-zero padding first, so the faces are those of
    the acquired data.
Bad slices
    Slices, along any axis and inside the anatomy (the head covers at least a
    quarter of its largest cross-section there), that are constant (zeroed,
    dropped) or identical to their neighbour.  Empty edge slices, padding and a
    zero-filled background are not corruption.

References
----------
.. [Mortamet2009] Mortamet B et al., Automatic quality assessment in structural brain
   MRI, MRM 62(2):365-372, 2009.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi

from qc.measures import NAN, rayleigh_sigma

MIN_BAND = 200


def ghost_ratio(work: np.ndarray, head: np.ndarray, air: np.ndarray, axis: int, signal: float) -> float:
    """Ghost signal in the air band along ``axis`` relative to ``signal`` (NaN without air).

    The excess of the band's median over the off-band air's median: medians, so
    that anatomy below the head (neck, shoulders) that lies in a part of the band
    does not read as a ghost; the larger of the whole band and of its half
    shifted by N/2 from the head (where a Nyquist ghost lands).
    """
    if air.sum() < MIN_BAND or not math.isfinite(signal) or signal <= 0:
        return NAN
    footprint = head.any(axis=axis, keepdims=True)
    band = air & footprint
    off = air & ~footprint
    if band.sum() < MIN_BAND:
        return 0.0
    base = float(np.median(work[off])) if off.sum() >= MIN_BAND else 0.0
    excess = float(np.median(work[band])) - base
    nyquist = air & np.roll(head, head.shape[axis] // 2, axis=axis)
    if nyquist.sum() >= MIN_BAND:
        excess = max(excess, float(np.median(work[nyquist])) - base)
    return max(0.0, excess) / signal


def air_artifact_fraction(work: np.ndarray, air: np.ndarray, sigma: float, p: float = 1e-4) -> float:
    """QI1-like fraction of air voxels above the Rayleigh tail threshold, after an opening."""
    n_air = int(air.sum())
    if n_air < MIN_BAND or not math.isfinite(sigma):
        return NAN
    threshold = sigma * math.sqrt(2.0 * math.log(1.0 / p))
    artifact = ndi.binary_opening(air & (work > threshold))
    return float(artifact.sum() / n_air)


def _slices(data: np.ndarray, axis: int, count: int) -> np.ndarray:
    n = data.shape[axis]
    index = np.unique(np.linspace(n * 0.3, n * 0.7, count).astype(int).clip(0, n - 1))
    # plane by plane: NIfTI arrays come Fortran-ordered, and np.take on them walks the whole volume
    moved = np.moveaxis(np.asarray(data), axis, 0)
    return np.stack([np.asarray(moved[i], dtype=np.float32) for i in index])


def spike_score(data: np.ndarray, count: int = 4, size: int = 5) -> float:
    """Largest log ratio of a Fourier magnitude to the median of its neighbourhood (see module doc)."""
    best = NAN
    for axis in range(3):
        planes = np.nan_to_num(_slices(data, axis, count))
        if min(planes.shape[1:]) < 16:
            continue
        magnitude = np.abs(np.fft.fft2(planes)).mean(axis=0) + 1e-12
        local = ndi.median_filter(magnitude, size=size, mode="wrap")
        fy = np.fft.fftfreq(planes.shape[1])[:, None]
        fx = np.fft.fftfreq(planes.shape[2])[None, :]
        radius = np.hypot(fy, fx)
        keep = (radius > 0.06) & (radius < 0.4) & (np.abs(fy) > 1.5 / planes.shape[1]) \
            & (np.abs(fx) > 1.5 / planes.shape[2])
        score = float(np.max(np.log(magnitude[keep] / local[keep])))
        best = score if not math.isfinite(best) else max(best, score)
    return best


def ringing(data: np.ndarray, sigma: float, signal: float, count: int = 4) -> float:
    """Noise-corrected RMS second difference beside strong edges, over ``signal``."""
    if not math.isfinite(signal) or signal <= 0:
        return NAN
    sigma = sigma if math.isfinite(sigma) else 0.0
    total, n = 0.0, 0
    for axis in range(3):
        planes = np.nan_to_num(_slices(data, axis, count))
        for plane in planes:
            gy, gx = np.gradient(plane)
            edges = np.hypot(gy, gx) > 0.25 * signal
            if not edges.any():
                continue
            band = ndi.binary_dilation(edges, iterations=5) & ~ndi.binary_dilation(edges, iterations=1)
            d2 = np.zeros_like(plane)
            d2[1:-1, :] += plane[2:, :] - 2 * plane[1:-1, :] + plane[:-2, :]
            d2[:, 1:-1] += plane[:, 2:] - 2 * plane[:, 1:-1] + plane[:, :-2]
            values = d2[band]
            total += float(np.sum(values.astype(np.float64) ** 2))
            n += values.size
    if n == 0:
        return NAN
    return math.sqrt(max(total / n - 20.0 * sigma**2, 0.0)) / signal


def _poly_terms(coords: np.ndarray) -> np.ndarray:
    """Polynomial terms up to degree 2 (without the constant) of (n, 3) coordinates."""
    u, v, w = coords.T
    return np.stack([u, v, w, u * v, u * w, v * w, u**2, v**2, w**2], axis=1)


def inu_spread(work: np.ndarray, inner: np.ndarray, low: float, max_points: int = 50_000) -> float:
    """Std of a degree-2 polynomial fitted to the log intensity of inner voxels above ``low``.

    NaN with fewer than 100 such voxels.
    """
    mask = inner & (work > max(low, 0.0))
    points = np.argwhere(mask)
    if points.shape[0] < 100 or not math.isfinite(low):
        return NAN
    points = points[:: max(1, points.shape[0] // max_points)]
    values = np.log(work[tuple(points.T)].astype(np.float64))
    # Coordinates scaled by one common length (not per axis) so that a permuted or
    # padded volume gives the same fit.
    coords = (points - points.mean(axis=0)) / max(float(np.max(np.ptp(points, axis=0))) / 2.0, 1.0)
    terms = _poly_terms(coords)
    terms = terms - terms.mean(axis=0)
    coef, *_ = np.linalg.lstsq(terms, values - values.mean(), rcond=None)
    return float(np.std(terms @ coef))


def border_truncation(head: np.ndarray, skip: tuple[tuple[int, int], ...] = (), depth: int = 1) -> float:
    """Largest head cross-section on a volume face, over the head's largest cross-section along that axis.

    ``skip`` holds ``(axis, side)`` pairs, side 0 for the low end and 1 for the
    high end.  Relative to the head's own cross-section, not to the face's
    area, so a tighter box (cropped padding, a zeroed background) does not
    change it; a head cut by the field of view gives a large value, one that
    only touches a face a small one.
    """
    best = 0.0
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        area = head.sum(axis=others)
        if area.max() == 0:
            continue
        for side in (0, 1):
            if (axis, side) in skip:
                continue
            index = slice(0, depth) if side == 0 else slice(-depth, None)
            face = np.moveaxis(head, axis, 0)[index].any(axis=0)
            best = max(best, float(face.sum() / area.max()))
    return best


def bad_slices(data: np.ndarray, head: np.ndarray | None = None, step: int = 1,
               min_cover: float = 0.25) -> int:
    """Slices inside the anatomy (any axis) that are constant or identical to the previous slice.

    A slice counts only where the head covers at least ``min_cover`` of its
    largest cross-section along that axis (``head`` on a work grid of stride
    ``step``): empty edge slices, padding and zero-filled background are no
    corruption.  Without ``head``, the slices between the first and last
    non-constant one are checked.
    """
    data = np.asarray(data)
    if not np.isfinite(data).all():
        data = np.where(np.isfinite(data), data, 0)
    count = 0
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        low, high = data.min(axis=others), data.max(axis=others)
        if head is not None and head.any():
            area = np.repeat(head.sum(axis=others), step)[: data.shape[axis]]
            # a zeroed slice may hole the head mask itself: look one work slice around
            area = ndi.maximum_filter1d(area, size=2 * step + 1)
            inside = area >= min_cover * area.max()
        else:
            varying = np.flatnonzero(high > low)
            inside = np.zeros(data.shape[axis], bool)
            if varying.size >= 2:
                inside[varying[0]:varying[-1] + 1] = True
        constant = inside & ~(high > low)
        sums = data.sum(axis=others, dtype=np.float64)
        candidates = np.flatnonzero((sums[1:] == sums[:-1]) & inside[1:] & inside[:-1] & (high > low)[1:]) + 1
        duplicated = sum(bool(np.array_equal(np.take(data, c, axis), np.take(data, c - 1, axis)))
                         for c in candidates)
        count += int(constant.sum()) + duplicated
    return count
