r"""No-reference image-quality measures: arrays in, numbers out.

Every function returns a plain ``float``; where a measure is undefined on its
input (no air around a skull-stripped head, a constant image, equal tissue
means) it returns NaN -- never MRIQC's sentinels (-1, 0, 1e15) and never an
exception.  :func:`qc.profile.measure_image` records the reason beside it.

Noise
    *Air sigma* (Rayleigh-corrected): in magnitude images the air holds
    Rician noise with zero signal, i.e. a Rayleigh distribution whose median is
    :math:`\sigma\sqrt{2\ln 2}`, so :math:`\hat\sigma = \mathrm{median}(B)/\sqrt{2\ln 2}`
    [Gudbjartsson1995]_; the median ignores up to half the air being artifact.
    *Residual sigma* (for images without air: skull-stripped, FA/MD maps): the
    in-plane residual :math:`r = x - \bar x_{4}` against the mean of the four
    neighbours has :math:`\mathrm{var}(r)=\tfrac54\sigma^2` for white noise on a locally
    linear signal, so :math:`\hat\sigma = 1.4826\,\mathrm{MAD}(r)/\sqrt{5/4}`
    (after Immerkaer's Laplacian estimator [Immerkaer1996]_).

MRIQC's structural IQMs [Esteban2017]_ (same formulas, NaN instead of sentinels)
    :math:`\mathrm{SNR} = \mu_F / (\sigma_F\sqrt{n/(n-1)})` [Magnotta2006]_;
    Dietrich's :math:`\mathrm{SNR_d} = 0.6551\,\mu_F / \mathrm{MAD}_\mathrm{air}`
    [Dietrich2007]_ (0.6551 = :math:`\sqrt{(4-\pi)/2}`, the Rayleigh std over sigma);
    :math:`\mathrm{CNR} = |\mu_\mathrm{WM}-\mu_\mathrm{GM}| /
    \sqrt{\sigma_\mathrm{air}^2+\sigma_\mathrm{WM}^2+\sigma_\mathrm{GM}^2}`;
    :math:`\mathrm{CJV} = (\sigma_\mathrm{WM}+\sigma_\mathrm{GM})/|\mu_\mathrm{WM}-\mu_\mathrm{GM}|`
    [Ganzetti2016]_; :math:`\mathrm{EFC} = -\frac{1}{E_\max}\sum_j \frac{x_j}{x_\max}
    \ln\frac{x_j}{x_\max}` with :math:`x_\max=\sqrt{\sum_j x_j^2}` and
    :math:`E_\max = \sqrt N \ln(1/\sqrt N)` [Atkinson1997]_;
    :math:`\mathrm{FBER} = \mathrm{median}(|F|^2)/\mathrm{median}(|B|^2)` [Shehzad2015]_.
    As in MRIQC 24, tissue :math:`\mu` are medians, CNR's sigmas standard
    deviations and CJV's sigmas normalised MADs.

Smoothness
    *FWHM* from the lag-1 autocorrelation (AFNI 3dFWHMx classic, as in MRIQC):
    a Gaussian-smoothed field has :math:`\rho_1 = 1-\mathrm{var}(\Delta x)/(2\,\mathrm{var}(x))
    = e^{-1/(4s^2)}`, so :math:`\mathrm{FWHM}=\sqrt{-2\ln 2/\ln\rho_1}` voxels
    [Forman1995]_.  White noise of known sigma inflates :math:`\mathrm{var}(\Delta x)` by
    :math:`2\sigma^2` and :math:`\mathrm{var}(x)` by :math:`\sigma^2`; we subtract both, so
    the FWHM measures blur of the anatomy, not the noise.
    *Sharpness*: the noise-corrected gradient energy
    :math:`(\mathrm{var}(\Delta x)-2\sigma^2)/(\mathrm{var}(x)-\sigma^2) = 2(1-\rho_1)`
    per axis, averaged (higher is sharper).

References
----------
.. [Atkinson1997] Atkinson D et al., Automatic correction of motion artifacts in MR
   images using an entropy focus criterion, IEEE TMI 16(6):903-910, 1997.
.. [Dietrich2007] Dietrich O et al., Measurement of SNRs in MR images, JMRI
   26(2):375-385, 2007.
.. [Esteban2017] Esteban O et al., MRIQC: advancing the automatic prediction of image
   quality in MRI from unseen sites, PLoS ONE 12(9):e0184661, 2017.
.. [Forman1995] Forman SD et al., Improved assessment of significant activation in
   fMRI: use of a cluster-size threshold, MRM 33(5):636-647, 1995.
.. [Ganzetti2016] Ganzetti M et al., Intensity inhomogeneity correction of structural
   MR images, Front Neuroinform 10:10, 2016.
.. [Gudbjartsson1995] Gudbjartsson H, Patz S, The Rician distribution of noisy MRI
   data, MRM 34(6):910-914, 1995.
.. [Immerkaer1996] Immerkaer J, Fast noise variance estimation, CVIU 64(2):300-302, 1996.
.. [Magnotta2006] Magnotta VA, Friedman L, Measurement of SNR and CNR in the fBIRN
   multicenter imaging study, J Digit Imaging 19(2):140-147, 2006.
.. [Shehzad2015] Shehzad Z et al., The Preprocessed Connectomes Project Quality
   Assessment Protocol, Front Neurosci Conf Abstr, 2015.
"""

from __future__ import annotations

import math

import numpy as np

NAN = float("nan")
#: Rayleigh median over sigma, sqrt(2 ln 2).
RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))
#: Rayleigh standard deviation over sigma, sqrt((4 - pi) / 2) (MRIQC's DIETRICH_FACTOR).
DIETRICH_FACTOR = math.sqrt((4.0 - math.pi) / 2.0)
#: 10th percentile of the 5x5 local RMS of white-noise residuals over their sigma
#: (measured on 64^3 Gaussian noise; checked in tests/qc/test_measures.py).
PATCH_Q10 = 0.7598
#: Normal-consistent MAD scale.
MAD_SCALE = 1.482602218505602


def _ok(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def mad_std(values: np.ndarray) -> float:
    """Normal-consistent median absolute deviation, ``1.4826 * median(|x - median x|)``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return NAN
    return float(MAD_SCALE * np.median(np.abs(values - np.median(values))))


def rayleigh_sigma(air: np.ndarray) -> float:
    """Noise sigma from air voxels assumed Rayleigh: ``median / sqrt(2 ln 2)``; NaN if empty or zero."""
    air = np.asarray(air, dtype=np.float64).ravel()
    if air.size == 0:
        return NAN
    sigma = float(np.median(np.abs(air))) / RAYLEIGH_MEDIAN
    return sigma if sigma > 0 else NAN


def residual_sigma(data: np.ndarray, mask: np.ndarray | None = None, axis: int | None = None,
                   every: int = 4, zooms: tuple[float, ...] | None = None, quantile: float | None = None,
                   window: int = 5) -> float:
    """Noise sigma from in-plane residuals against the 4-neighbour mean, in ``mask``.

    Uses every ``every``-th slice along ``axis``.  ``axis=None`` is
    orientation-free: the slices across the coarsest axis when the voxels are
    anisotropic (``zooms`` differ by more than 10 %), else the median of the
    three axes' estimates (each on every ``2 every``-th slice, to bound the
    cost).  ``quantile=None`` gives the normal-consistent MAD of
    the residuals; a ``quantile`` q gives the q-quantile over the mask of the
    local RMS residual in ``window x window`` in-plane patches (a texture-robust
    noise scale: anatomy raises the residual in most patches, noise in all, so
    the flattest patches see the noise), divided by ``sqrt(5/4)`` and by
    :data:`PATCH_Q10` so that white noise gives its sigma.  NaN when fewer
    than 100 voxels remain.
    """
    shape = np.shape(data)
    if axis is None:
        z = np.asarray(zooms if zooms is not None else (1.0, 1.0, 1.0), float)[:3]
        axes = [int(np.argmax(z))] if z.max() > 1.1 * z.min() else [0, 1, 2]
        every = every if len(axes) == 1 else 2 * every  # three axes: half the slices each
    else:
        axes = [axis]
    estimates = []
    for a in axes:
        plane = [n for i, n in enumerate(shape) if i != a]
        if min(plane) < 3:
            continue
        value = _plane_estimate(data, mask, a, every, quantile, window)
        if math.isfinite(value):
            scale = 1.0 if quantile is None else PATCH_Q10 if quantile == 0.1 else 1.0
            estimates.append(value / math.sqrt(1.25) / scale)
    return float(np.median(estimates)) if estimates else NAN


def _plane_estimate(data: np.ndarray, mask: np.ndarray | None, axis: int, every: int,
                    quantile: float | None, window: int) -> float:
    """MAD-std, or local-RMS quantile, of the in-plane residuals along ``axis`` (un-normalised)."""
    moved = np.moveaxis(np.asarray(data), axis, 0)
    # evenly spread slices, the same set read from either end (a flipped volume gives the same value)
    index = np.unique(np.linspace(0, moved.shape[0] - 1, -(-moved.shape[0] // every)).round().astype(int))
    slab = np.stack([np.asarray(moved[i], dtype=np.float32) for i in index])
    neighbours = (slab[:, :-2, 1:-1] + slab[:, 2:, 1:-1] + slab[:, 1:-1, :-2] + slab[:, 1:-1, 2:])
    residual = slab[:, 1:-1, 1:-1] - neighbours / 4.0
    inside = np.ones(residual.shape, bool) if mask is None else \
        np.moveaxis(np.asarray(mask, bool), axis, 0)[index][:, 1:-1, 1:-1]
    inside &= np.isfinite(residual)
    if inside.sum() < 100:
        return NAN
    if quantile is None:
        return mad_std(residual[inside])
    import scipy.ndimage as ndi

    # only the mask's bounding box (plus half a window, so every window sees what it saw before)
    box = [slice(None)]
    for axis in (1, 2):
        used = np.flatnonzero(inside.any(axis=tuple(a for a in (0, 1, 2) if a != axis)))
        box.append(slice(max(int(used[0]) - window // 2, 0), int(used[-1]) + 1 + window // 2))
    residual, inside = residual[tuple(box)], inside[tuple(box)]
    local = ndi.uniform_filter(np.where(inside, residual, 0) ** 2, size=(1, window, window))
    share = ndi.uniform_filter(inside.astype(np.float32), size=(1, window, window))
    full = inside & (share > 0.999)  # patches wholly inside the mask
    if full.sum() < 100:
        return NAN
    return float(np.sqrt(np.quantile(local[full] / share[full], quantile)))


def snr(mu_fg: float, sigma_fg: float, n: int) -> float:
    """MRIQC's SNR, ``mu_fg / (sigma_fg * sqrt(n / (n - 1)))``; NaN when undefined."""
    if n < 2 or not _ok(mu_fg, sigma_fg) or sigma_fg <= 0:
        return NAN
    return float(mu_fg / (sigma_fg * math.sqrt(n / (n - 1))))


def snr_dietrich(mu_fg: float, mad_air: float) -> float:
    """Dietrich's SNR as in MRIQC, ``0.6551 * mu_fg / mad_air``; NaN if the air MAD is 0.

    MRIQC falls back to the air std below a MAD of 1.0 and returns -1 below
    1e-3, which depends on the intensity scale; we return NaN only for a
    zero or non-finite MAD.
    """
    if not _ok(mu_fg, mad_air) or mad_air <= 0:
        return NAN
    return float(DIETRICH_FACTOR * mu_fg / mad_air)


def cnr(mu_wm: float, mu_gm: float, sigma_air: float, sigma_wm: float, sigma_gm: float) -> float:
    """MRIQC's CNR, ``|mu_wm - mu_gm| / sqrt(sigma_air^2 + sigma_wm^2 + sigma_gm^2)``."""
    if not _ok(mu_wm, mu_gm, sigma_air, sigma_wm, sigma_gm):
        return NAN
    denominator = math.sqrt(sigma_air**2 + sigma_gm**2 + sigma_wm**2)
    return float(abs(mu_wm - mu_gm) / denominator) if denominator > 0 else NAN


def cjv(mu_wm: float, mu_gm: float, sigma_wm: float, sigma_gm: float) -> float:
    """MRIQC's CJV, ``(sigma_wm + sigma_gm) / |mu_wm - mu_gm|``; NaN for equal means."""
    if not _ok(mu_wm, mu_gm, sigma_wm, sigma_gm) or mu_wm == mu_gm:
        return NAN
    return float((sigma_wm + sigma_gm) / abs(mu_wm - mu_gm))


def efc(img: np.ndarray, framemask: np.ndarray | None = None) -> float:
    """MRIQC's entropy focus criterion over voxels outside ``framemask``.

    Magnitudes are used (MRIQC takes the log of negative values and returns
    NaN by accident); an all-zero image gives NaN.
    """
    values = np.abs(np.asarray(img, dtype=np.float64))
    if framemask is not None:
        values = values[np.asarray(framemask) == 0]
    values = values[np.isfinite(values)].ravel()
    n_vox = values.size
    b_max = math.sqrt(float(np.dot(values, values))) if n_vox else 0.0
    if n_vox < 2 or b_max == 0:
        return NAN
    efc_max = n_vox * (1.0 / math.sqrt(n_vox)) * math.log(1.0 / math.sqrt(n_vox))
    scaled = values / b_max
    return float(np.sum(scaled * np.log(scaled + 1e-16 / b_max)) / efc_max)


def fber(img: np.ndarray, headmask: np.ndarray, rotmask: np.ndarray | None = None) -> float:
    """MRIQC's FBER, ``median(|F|^2) / median(|B|^2)``; NaN when the background is zero."""
    img = np.asarray(img)
    head = np.asarray(headmask) > 0
    air = ~head
    if rotmask is not None:
        air &= ~(np.asarray(rotmask) > 0)
    if not head.any() or not air.any():
        return NAN
    fg = float(np.median(np.abs(img[head]) ** 2))
    bg = float(np.median(np.abs(img[air]) ** 2))
    if not _ok(fg, bg) or bg <= 0:
        return NAN
    return fg / bg


def _axis_lag1(data: np.ndarray, mask: np.ndarray, axis: int, sigma: float, thin: int) -> float:
    """Noise-corrected ``var(dx) / var(x)`` along ``axis`` over pairs inside ``mask``.

    The other axes are strided by ``thin`` (pairs stay adjacent along ``axis``).
    """
    view = tuple(slice(None) if a == axis else slice(None, None, thin) for a in range(3))
    data = np.asarray(data[view], dtype=np.float32)
    mask = mask[view]
    lo = [slice(None)] * data.ndim
    hi = [slice(None)] * data.ndim
    lo[axis], hi[axis] = slice(None, -1), slice(1, None)
    pair = mask[tuple(lo)] & mask[tuple(hi)]
    if pair.sum() < 100:
        return NAN
    diff = (data[tuple(hi)] - data[tuple(lo)])[pair]
    var_x = float(np.var(data[mask], dtype=np.float64)) - sigma**2
    var_d = float(np.mean(diff.astype(np.float64) ** 2)) - 2 * sigma**2
    if var_x <= 0:
        return NAN
    return max(var_d, 0.0) / var_x


def fwhm(data: np.ndarray, mask: np.ndarray, zooms: tuple[float, ...], sigma: float = 0.0,
         thin: int = 1, unit_floor: float = 0.0, median: bool = False) -> tuple[float, float]:
    """Mean FWHM from the lag-1 autocorrelation in ``mask``, and the sharpness.

    ``sigma`` is the white-noise level to remove (0 keeps MRIQC's raw estimate);
    ``thin`` strides the axes across each lag (1 uses every voxel pair).  Each
    axis's FWHM is in mm divided by ``max(voxel size, unit_floor)`` (the
    default 0 keeps plain mm); with ``unit_floor=1``
    it is in mm for voxels up to 1 mm and in voxels for coarser ones, so a
    1 mm scan upsampled to 0.8 mm keeps its value and a good 2 mm scan is not
    blurred for being coarse.

    ``median=True`` takes the median over the axes instead of the mean (one
    thick-slice axis then does not decide the value).

    Returns
    -------
    fwhm, sharpness
        Mean (or median) over axes of the FWHM and of ``2 (1 - rho_1)``; NaN when undefined.
    """
    sigma = sigma if _ok(sigma) else 0.0
    mask = np.asarray(mask, bool)
    widths: list[float] = []
    energies: list[float] = []
    for axis in range(3):
        ratio = _axis_lag1(data, mask, axis, sigma, thin)
        if not _ok(ratio):
            continue
        energies.append(ratio)
        rho = min(max(1.0 - ratio / 2.0, 1e-6), 1.0 - 1e-9)
        unit = max(float(zooms[axis]), unit_floor) if unit_floor > 0 else 1.0
        widths.append(math.sqrt(-2.0 * math.log(2.0) / math.log(rho)) * float(zooms[axis]) / unit)
    if not widths:
        return NAN, NAN
    pool = np.median if median else np.mean
    return float(pool(widths)), float(pool(energies))
