"""AMAES's intensity augmentations, applied to the network input only (augmentation reversal).

AMAES (Munk et al., BRAINS-45K; Sec. 3.1 and appendix B) degrades the input of a masked
autoencoder with nnU-Net's intensity augmentations and keeps the reconstruction target
un-degraded, so the encoder learns features invariant to them (their Table 3); spatial
augmentations (:mod:`pretrain.augment`) are applied to input and target alike.  In
AMAES's order, each with its own probability per sample:

============================  =====  ==================================================
transform                       p    parameters (AMAES code, on a [0, 1] image)
============================  =====  ==================================================
additive Gaussian noise        0.2   sigma ~ U[1e-4, 1e-3] (x intensity range)
Gaussian blur                  0.1   sigma ~ U[0, 1] voxels (p 0.2 per sample x 0.5 per channel)
multiplicative Gaussian noise  0.2   x * (1 + N(0, sigma)), sigma ~ U[1e-4, 1e-3]
motion ghosting                0.2   every n-th k-space line of one axis x alpha,
                                     alpha ~ U[0.85, 0.95], n ~ {2..10}
Gibbs ringing                  0.2   k-space of one axis truncated to cut/128 of it,
                                     cut ~ {96..128}
simulated low resolution       0.1   each axis (p 0.33) down-sampled by U[0.5, 1] and back
bias field                     0.33  smooth multiplicative field exp(cubic polynomial)
gamma                          0.2   gamma ~ U[0.5, 2] on the range-scaled image; the
                                     result inverted with p 0.05
============================  =====  ==================================================

Where the paper's table and its code differ (blur and low resolution 0.1 in the paper,
0.2 x 0.5 per channel in the code: the same for one channel; gamma inversion 0.01 in the
paper, 0.05 in the code) the code's values are used.  After each transform the image is
clipped to the range it had before it, as AMAES does (``clip_to_input_range``).  Every
parameter is relative to the crop's intensity range, so the transforms act the same on
z-scored and on [0, 1]-scaled crops.  The bias field's form is not given in AMAES;
here it is TorchIO's (exp of a random order-3 polynomial, coefficients U[-0.5, 0.5]
over [-1, 1]^3), evaluated on a coarse grid and upsampled since it is that smooth.

All transforms are pure torch on CPU (the loader's workers) or GPU; the randomness
comes from the sample's numpy generator, so a sample is reproducible and resumable.

Examples
--------
>>> x = torch.linspace(0, 1, 16**3).view(16, 16, 16)
>>> y, applied = degrade(x, np.random.default_rng(3), AMAES)
>>> tuple(y.shape), x.min().item() <= y.min().item() and y.max().item() <= x.max().item()
((16, 16, 16), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


@dataclass(frozen=True, slots=True)
class IntensityConfig:
    """Probabilities and ranges of the input-only intensity augmentations (AMAES code)."""

    p_additive_noise: float = 0.2
    additive_sigma: tuple[float, float] = (1e-4, 1e-3)
    p_blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    p_multiplicative_noise: float = 0.2
    multiplicative_sigma: tuple[float, float] = (1e-4, 1e-3)
    p_ghosting: float = 0.2
    ghosting_alpha: tuple[float, float] = (0.85, 0.95)
    ghosting_reps: tuple[int, int] = (2, 11)  # numpy integers(): upper bound excluded
    p_ringing: float = 0.2
    ringing_cut: tuple[int, int] = (96, 129)  # of a 128-line k-space, upper bound excluded
    p_lowres: float = 0.1
    lowres_p_per_axis: float = 0.33
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    p_bias_field: float = 0.33
    bias_coefficient: float = 0.5
    p_gamma: float = 0.2
    gamma: tuple[float, float] = (0.5, 2.0)
    p_invert: float = 0.05


#: AMAES's intensity augmentations.
AMAES = IntensityConfig()
#: The intensity presets ``[augment] intensity`` may name (``none``: no input-only augmentation).
INTENSITY_PRESETS: dict[str, IntensityConfig | None] = {"none": None, "amaes": AMAES}


def _clip_to(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return x.clamp_(lo, hi)


def _noise(shape: tuple[int, ...], rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return torch.randn(shape, generator=g).to(device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a 3D tensor (``sigma`` in voxels, edges replicated).

    On the CPU scipy's ``gaussian_filter`` (``mode="nearest"``, truncated at 3 sigma):
    6x faster than three ``conv3d`` passes here; on a GPU the convolutions.
    """
    if sigma <= 0:
        return x
    if x.device.type == "cpu":
        out = ndimage.gaussian_filter(x.numpy(), sigma, mode="nearest", truncate=3.0)
        return torch.from_numpy(out)
    return gaussian_blur_conv(x, sigma)


def gaussian_blur_conv(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`gaussian_blur` as three 1D ``conv3d`` passes (any device)."""
    radius = max(1, int(3 * sigma + 0.5))  # scipy's truncation at 3 sigma
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    out = x[None, None]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), kernel.view(shape))
    return out[0, 0]


def motion_ghosting(x: torch.Tensor, alpha: float, reps: int, axis: int) -> torch.Tensor:
    """Scale every ``reps``-th k-space line along ``axis`` by ``alpha`` (magnitude image back).

    Scaling whole lines of the 3D spectrum is diagonal in that axis's frequency, so a 1D
    FFT along the axis gives the same image as the 3D FFT at a third of the work.
    """
    shift = torch.clamp(-x.min(), min=0)  # k-space of a non-negative image, as AMAES
    k = torch.fft.fft(x + shift, dim=axis)
    index = [slice(None)] * 3
    index[axis] = slice(0, k.shape[axis] - 1, reps)
    k[tuple(index)] *= alpha
    return torch.fft.ifft(k, dim=axis).abs() - shift


def gibbs_ringing(x: torch.Tensor, keep: float, axis: int) -> torch.Tensor:
    """Keep the central ``keep`` fraction of the k-space of ``axis`` (the rest zeroed)."""
    n = x.shape[axis]
    kept = max(1, min(n, round(keep * n)))
    if kept == n:
        return x
    k = torch.fft.fftshift(torch.fft.fft(x, dim=axis), dim=axis)
    lo = (n - kept) // 2
    index = [slice(None)] * 3
    index[axis] = slice(0, lo)
    k[tuple(index)] = 0
    index[axis] = slice(lo + kept, n)
    k[tuple(index)] = 0
    return torch.fft.ifft(torch.fft.ifftshift(k, dim=axis), dim=axis).real


def simulate_lowres(x: torch.Tensor, zooms: tuple[float, float, float]) -> torch.Tensor:
    """Down-sample each axis by its zoom (nearest) and back to the grid (trilinear)."""
    small = [max(1, round(s * z)) for s, z in zip(x.shape, zooms)]
    down = F.interpolate(x[None, None], size=small, mode="nearest")
    return F.interpolate(down, size=tuple(x.shape), mode="trilinear", align_corners=False)[0, 0]


def bias_field(shape: tuple[int, ...], coefficients: np.ndarray, device: torch.device,
               coarse: int = 24) -> torch.Tensor:
    """``exp`` of the order-3 polynomial with ``coefficients`` (20, in :func:`_monomials` order)."""
    grid = [torch.linspace(-1, 1, min(coarse, s), device=device) for s in shape]
    zz, yy, xx = torch.meshgrid(*grid, indexing="ij")
    log_field = torch.zeros_like(zz)
    for c, (i, j, k) in zip(coefficients, _monomials()):
        log_field += float(c) * zz**i * yy**j * xx**k
    field = torch.exp(log_field)[None, None]
    return F.interpolate(field, size=tuple(shape), mode="trilinear", align_corners=True)[0, 0]


def _monomials(order: int = 3) -> list[tuple[int, int, int]]:
    return [(i, j, k) for i in range(order + 1) for j in range(order + 1 - i) for k in range(order + 1 - i - j)]


def gamma_transform(x: torch.Tensor, gamma: float, invert: bool) -> torch.Tensor:
    """``u ** gamma`` of the range-scaled image ``u``, mapped back to the range; inverted if asked."""
    lo, hi = x.min(), x.max()
    span = torch.clamp(hi - lo, min=1e-8)
    u = ((x - lo) / span).pow_(gamma)
    if invert:
        u = 1.0 - u
    return u * span + lo


def degrade(image: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig) -> tuple[torch.Tensor, list[str]]:
    """The input-only degradation of one 3D crop; returns the new tensor and what was applied.

    ``image`` is not modified.  Each transform is drawn with its probability, in AMAES's
    order, and the result is clipped to the range the image had before that transform.
    """
    x = image.clone()
    applied: list[str] = []
    for name, step in _STEPS:
        if rng.uniform() < getattr(cfg, f"p_{name}"):
            lo, hi = x.min(), x.max()
            x = _clip_to(step(x, rng, cfg, float(hi - lo)), lo, hi)
            applied.append(name)
    return x, applied


def _additive(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    sigma = rng.uniform(*cfg.additive_sigma) * span
    return x.add_(_noise(tuple(x.shape), rng, x.device), alpha=sigma)


def _blur(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    return gaussian_blur(x, rng.uniform(*cfg.blur_sigma))


def _multiplicative(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    sigma = rng.uniform(*cfg.multiplicative_sigma)
    return x.mul_(_noise(tuple(x.shape), rng, x.device).mul_(sigma).add_(1.0))


def _ghosting(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    alpha = rng.uniform(*cfg.ghosting_alpha)
    reps = int(rng.integers(*cfg.ghosting_reps))
    return motion_ghosting(x, alpha, reps, int(rng.integers(3)))


def _ringing(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    cut = int(rng.integers(*cfg.ringing_cut))
    return gibbs_ringing(x, cut / (cfg.ringing_cut[1] - 1), int(rng.integers(3)))


def _lowres(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    pick = rng.uniform(size=3) < cfg.lowres_p_per_axis
    zooms = np.where(pick, rng.uniform(*cfg.lowres_zoom, size=3), 1.0)
    return simulate_lowres(x, tuple(float(z) for z in zooms)) if pick.any() else x  # type: ignore[arg-type]


def _bias(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    c = rng.uniform(-cfg.bias_coefficient, cfg.bias_coefficient, len(_monomials()))
    lo = x.min()
    return (x - lo).mul_(bias_field(tuple(x.shape), c, x.device)).add_(lo)  # a field on intensities >= 0


def _gamma(x: torch.Tensor, rng: np.random.Generator, cfg: IntensityConfig, span: float) -> torch.Tensor:
    return gamma_transform(x, rng.uniform(*cfg.gamma), bool(rng.uniform() < cfg.p_invert))


_STEPS = (("additive_noise", _additive), ("blur", _blur), ("multiplicative_noise", _multiplicative),
          ("ghosting", _ghosting), ("ringing", _ringing), ("lowres", _lowres), ("bias_field", _bias),
          ("gamma", _gamma))


#: Intensity scales of the loader: the stored z-scored values, or [0, 1] per crop (AMAES).
SCALES = ("zscore", "unit")


def unit_range(image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``image`` min-max scaled to [0, 1] over its valid voxels; padding (and a flat crop) 0.

    Examples
    --------
    >>> unit_range(torch.tensor([[2.0, 4.0, 3.0, 9.0]]), torch.tensor([[True, True, True, False]])).tolist()
    [[0.0, 1.0, 0.5, 0.0]]
    """
    if not bool(valid.any()):
        return torch.zeros_like(image)
    if bool(valid.all()):  # the usual crop: no padding
        lo, hi = torch.aminmax(image)
    else:  # no boolean indexing: it copies the selection, 10x slower at 128^3 (measured)
        lo = torch.where(valid, image, torch.inf).amin()
        hi = torch.where(valid, image, -torch.inf).amax()
    out = (image - lo) / torch.clamp(hi - lo, min=1e-8)
    return out.mul_(valid)
