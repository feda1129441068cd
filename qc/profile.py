"""Every quality measure of one volume at once, with the reason for each NaN.

:func:`measure_image` is what the IQS stage calls: one head/air split on the
work grid (:mod:`qc.regions`), then the measures of :mod:`qc.measures` and
:mod:`qc.artifacts` on the parts they need.  It never raises on a bad image:
constant, all-NaN, zero-background or 4D input gives NaNs plus notes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi

from qc import artifacts, measures, regions
from qc.measures import NAN

#: Quantile of the local RMS tissue residual taken as the noise scale (see residual_sigma).
NOISE_QUANTILE = 0.1
#: Air noise below this fraction of the tissue signal is not acquisition noise.
NEGLIGIBLE_AIR = 1e-3


@dataclass(slots=True)
class Profile:
    """Raw measures of one volume (NaN where undefined; ``notes`` says why)."""

    noise_sigma: float = NAN
    noise_source: str = "none"
    noise_air: float = NAN
    noise_residual: float = NAN
    signal: float = NAN
    snr: float = NAN
    snr_dietrich: float = NAN
    cnr: float = NAN
    cjv: float = NAN
    efc: float = NAN
    fber: float = NAN
    fwhm_mm: float = NAN
    sharpness: float = NAN
    ghost: float = NAN
    qi1: float = NAN
    spike: float = NAN
    ringing: float = NAN
    inu: float = NAN
    border_truncation: float = NAN
    head_fraction: float = NAN
    finite_fraction: float = NAN
    bad_slices: int = 0
    notes: dict[str, str] = field(default_factory=dict)


def upsample(mask: np.ndarray, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upsampling of a work-grid mask back to ``shape``."""
    if step == 1:
        return mask
    full = mask
    for axis in range(3):
        full = np.repeat(full, step, axis=axis)
    return full[: shape[0], : shape[1], : shape[2]]


def _stats(values: np.ndarray) -> tuple[float, float, float, int]:
    """median, std, MAD-std, n of ``values`` (NaNs when empty)."""
    if values.size == 0:
        return NAN, NAN, NAN, 0
    return (float(np.median(values)), float(np.std(values, dtype=np.float64)),
            measures.mad_std(values), int(values.size))


def _as_3d(data: np.ndarray, profile: Profile) -> np.ndarray | None:
    data = np.asarray(data)
    if data.ndim == 4:
        profile.notes["shape"] = f"4D input {data.shape}: first volume measured"
        data = data[..., 0]
    data = np.squeeze(data) if data.ndim > 3 else data
    if data.ndim != 3 or min(data.shape) < 4:
        profile.notes["shape"] = f"not a 3D volume: shape {data.shape}"
        return None
    return data


def _noise(profile: Profile, data: np.ndarray, reg: regions.Regions, inner_full: np.ndarray,
           zooms: tuple[float, ...]) -> None:
    """Noise from the tissue residual (always), the air sigma beside it where there is air.

    One estimator for every image: the air is absent or zeroed on many real
    scans (defaced, masked, skull-stripped, scanner-filtered), and switching
    between air and tissue estimates made the score jump with the background.
    """
    # Tissue above the darkest class: in dark bone and CSF magnitude noise is Rician-shrunk.
    low = regions.tissue_thresholds(reg.work[reg.head])[0]
    tissue = inner_full & (data > low) if math.isfinite(low) else inner_full
    profile.noise_residual = measures.residual_sigma(data, tissue, zooms=zooms, quantile=NOISE_QUANTILE,
                                                    every=3)
    if reg.air_reason is None:
        profile.noise_air = measures.rayleigh_sigma(reg.work[reg.air])
        if not profile.noise_air > NEGLIGIBLE_AIR * profile.signal:
            profile.notes["air"] = (f"air noise {profile.noise_air:.3g} is negligible next to the signal "
                                    f"{profile.signal:.3g}: processed or zero-filled background")
            profile.noise_air = NAN
    else:
        profile.notes["air"] = reg.air_reason
    if math.isfinite(profile.noise_residual):
        profile.noise_sigma, profile.noise_source = profile.noise_residual, "residual"
    elif math.isfinite(profile.noise_air):
        profile.noise_sigma, profile.noise_source = profile.noise_air, "air"
    else:
        profile.notes["noise"] = "no air and no tissue residual to estimate noise from"


def _tissue(profile: Profile, reg: regions.Regions, inner: np.ndarray) -> float:
    """Tissue-class measures; returns the lower class threshold (NaN without classes)."""
    values = reg.work[inner]
    low, high = regions.tissue_thresholds(values)
    if not math.isfinite(high):
        profile.notes["tissue"] = "fewer than three intensity levels in the head"
        return NAN
    wm_med, wm_sd, wm_mad, wm_n = _stats(values[values > high])
    gm_med, gm_sd, gm_mad, _ = _stats(values[(values > low) & (values <= high)])
    air = reg.work[reg.air]
    sd_air = float(np.std(air)) if air.size else profile.noise_sigma
    profile.snr = measures.snr(wm_med, wm_sd, wm_n)
    profile.snr_dietrich = measures.snr_dietrich(wm_med, measures.mad_std(air)) if air.size else NAN
    profile.cnr = measures.cnr(wm_med, gm_med, sd_air, wm_sd, gm_sd)
    profile.cjv = measures.cjv(wm_med, gm_med, wm_mad, gm_mad)
    return low


def _artifacts(profile: Profile, data: np.ndarray, reg: regions.Regions, pe_axis: int | None,
               skip_faces: tuple[tuple[int, int], ...], zooms: tuple[float, ...], low: float) -> None:
    axes = [pe_axis] if pe_axis in (0, 1, 2) else [0, 1, 2]
    ghosts = [artifacts.ghost_ratio(reg.work, reg.head, reg.air, a, profile.signal) for a in axes]
    finite = [g for g in ghosts if math.isfinite(g)]
    profile.ghost = max(finite) if finite else NAN
    profile.qi1 = artifacts.air_artifact_fraction(reg.work, reg.air, profile.noise_air)
    profile.spike = artifacts.spike_score(data)
    profile.ringing = artifacts.ringing(data, profile.noise_sigma, profile.signal)
    profile.inu = artifacts.inu_spread(reg.work, _deep(reg, zooms), low)
    profile.border_truncation = artifacts.border_truncation(reg.head, skip_faces, depth=1)
    profile.bad_slices = artifacts.bad_slices(data, reg.head, reg.step)


def _deep(reg: regions.Regions, zooms: tuple[float, ...], depth_mm: float = 8.0) -> np.ndarray:
    """The head eroded by about ``depth_mm`` (scalp and skull off), for the bias fit."""
    iterations = max(1, int(round(depth_mm / (reg.step * float(np.mean(zooms[:3]))))))
    deep = ndi.binary_erosion(reg.head, iterations=iterations)
    return deep if deep.sum() >= 1000 else regions.inner_region(reg.head, None)


def measure_image(data: np.ndarray, zooms: tuple[float, ...] = (1.0, 1.0, 1.0),
                  anatomy: np.ndarray | None = None, pe_axis: int | None = None,
                  skip_faces: tuple[tuple[int, int], ...] = ()) -> Profile:
    """All measures of a 3D volume.

    Parameters
    ----------
    data
        The image (3D; a 4D series is measured on its first volume).
    zooms
        Voxel size in mm.
    anatomy
        Optional anatomy mask (1 = subject tissue) on the image grid; the
        tissue classes of SNR, CNR and CJV are taken inside it when given (the
        calibrated measures keep the eroded head, as in the calibration).
    pe_axis
        Phase-encoding axis when known (ghosts are sought along it), else ``None``.
    skip_faces
        ``(axis, side)`` faces left out of the truncation check (the inferior one).
    """
    profile = Profile()
    volume = _as_3d(data, profile)
    if volume is None:
        return profile
    finite = np.isfinite(volume)
    profile.finite_fraction = float(finite.mean())
    if profile.finite_fraction < 1.0:
        profile.notes["finite"] = f"{1 - profile.finite_fraction:.2%} non-finite voxels (set to 0)"
        volume = np.where(finite, volume, 0).astype(np.float32)
    # Exact-zero padding (and empty edge slices) carry no information: measure the data box.
    box = regions.data_box(volume)
    if anatomy is not None:
        anatomy = np.asarray(anatomy)[box] if np.shape(anatomy) == volume.shape else None
    volume = volume[box]
    zooms = tuple(float(z) for z in zooms[:3])
    reg = regions.split(volume)
    profile.head_fraction = float(reg.head.mean())
    if not reg.head.any():
        profile.notes["head"] = reg.air_reason or "no foreground"
        profile.bad_slices = artifacts.bad_slices(volume)
        return profile
    # The calibrated measures (signal, noise, FWHM, INU) always use the eroded head, as
    # in the calibration; an anatomy mask only refines the tissue classes of SNR/CNR/CJV.
    inner = regions.inner_region(reg.head, None)
    inner_full = upsample(inner, reg.step, volume.shape)
    profile.signal = float(np.median(reg.work[inner]))
    _noise(profile, volume, reg, inner_full, zooms)
    if not math.isfinite(profile.noise_air):
        reg = dataclasses.replace(reg, air=np.zeros_like(reg.air))
    if anatomy is None:
        low = _tissue(profile, reg, inner)
    else:
        anatomy_work = np.asarray(anatomy)[:: reg.step, :: reg.step, :: reg.step] > 0
        _tissue(profile, reg, regions.inner_region(reg.head, anatomy_work))
        low = regions.tissue_thresholds(reg.work[inner])[0]
    profile.efc = measures.efc(reg.work)
    profile.fber = measures.fber(reg.work, reg.head) if reg.air.any() else NAN
    # Raw lag-1 FWHM in mm (no noise subtraction: on real anatomy the tissue residual is
    # texture as well as noise, and subtracting it sent the FWHM to infinity), the median
    # over the axes so that one thick-slice axis does not decide it.
    profile.fwhm_mm, profile.sharpness = measures.fwhm(volume, inner_full, zooms, 0.0, thin=2, median=True)
    _artifacts(profile, volume, reg, pe_axis, skip_faces, zooms, low)
    return profile
