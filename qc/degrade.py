"""Controlled degradations of a clean magnitude image, for calibration and tests.

Each function takes a 3D array and a severity and returns a new float32 array;
randomness comes from an explicit ``numpy.random.Generator``.  They model what
the IQS components must see: Rician noise, blur, Nyquist ghosts, a k-space
spike (herringbone), motion as k-space phase errors, a bias field and Gibbs
ringing from k-space truncation.

Examples
--------
>>> clean = np.ones((8, 8, 8), np.float32)
>>> noisy = rician_noise(clean, 0.1, np.random.default_rng(0))
>>> noisy.shape, noisy.dtype
((8, 8, 8), dtype('float32'))
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
import scipy.ndimage as ndi

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def rician_noise(data: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of std ``sigma`` per channel."""
    x = _f32(data)
    real = x + rng.normal(0.0, sigma, x.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, x.shape).astype(np.float32)
    return np.hypot(real, imag)


def gaussian_blur(data: np.ndarray, fwhm_vox: float) -> np.ndarray:
    """Gaussian blur with the given FWHM in voxels (0 returns a copy)."""
    x = _f32(data)
    if fwhm_vox <= 0:
        return x.copy()
    return ndi.gaussian_filter(x, fwhm_vox / FWHM_PER_SIGMA, mode="nearest")


def nyquist_ghost(data: np.ndarray, amplitude: float, axis: int = 1) -> np.ndarray:
    """Add a copy shifted by half the field of view along ``axis``, scaled by ``amplitude``."""
    x = _f32(data)
    return x + np.float32(amplitude) * np.roll(x, x.shape[axis] // 2, axis=axis)


def _kspace(x: np.ndarray) -> np.ndarray:
    return sfft.fftn(x.astype(np.complex64), workers=1)


def _image(k: np.ndarray) -> np.ndarray:
    return np.abs(sfft.ifftn(k, workers=1)).astype(np.float32)


def kspace_spike(data: np.ndarray, amplitude: float, position: tuple[float, ...] = (0.2, 0.15, 0.1)) -> np.ndarray:
    """Add a spike of ``amplitude`` times the k-space centre at fractional ``position``."""
    x = _f32(data)
    k = _kspace(x)
    index = tuple(int(round(p * n)) % n for p, n in zip(position, x.shape))
    k[index] += np.complex64(amplitude * abs(k[0, 0, 0]))
    return _image(k)


def motion_phase(data: np.ndarray, fraction: float, shift_vox: float, rng: np.random.Generator,
                 axis: int = 1) -> np.ndarray:
    """Translate the object by up to ``shift_vox`` during a ``fraction`` of the phase-encoding lines.

    The affected lines of k-space along ``axis`` get the linear phase of a shift
    along the same axis, as if the head moved between their acquisitions.
    """
    x = _f32(data)
    k = _kspace(x)
    n = x.shape[axis]
    lines = rng.random(n) < fraction
    shifts = rng.uniform(-shift_vox, shift_vox, n) * lines
    freqs = sfft.fftfreq(n)
    phase = np.exp(-2j * np.pi * freqs * shifts).astype(np.complex64)
    shape = [1, 1, 1]
    shape[axis] = n
    return _image(k * phase.reshape(shape))


def bias_field(data: np.ndarray, strength: float) -> np.ndarray:
    """Multiply by a smooth field ``exp(strength * f)``, ``f`` a fixed low-order polynomial in [-1, 1]."""
    x = _f32(data)
    grids = np.meshgrid(*[np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in x.shape],
                        indexing="ij", sparse=True)
    u, v, w = grids
    field = 0.6 * u + 0.5 * v - 0.4 * w + 0.5 * u * v - 0.6 * (w**2 - 0.33)
    field = field / np.max(np.abs(field))
    return x * np.exp(np.float32(strength) * field).astype(np.float32)


def gibbs_truncation(data: np.ndarray, keep: float) -> np.ndarray:
    """Zero k-space outside the central ``keep`` fraction along every axis (sharp cut)."""
    x = _f32(data)
    k = _kspace(x)
    for axis, n in enumerate(x.shape):
        freqs = np.abs(sfft.fftfreq(n))
        shape = [1, 1, 1]
        shape[axis] = n
        k *= (freqs <= keep / 2).reshape(shape)
    return _image(k)
