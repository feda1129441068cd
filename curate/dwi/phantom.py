"""A brain-shaped DWI phantom with known FA and MD, for tests and benchmarks.

Tissues (ellipsoids in a 2 mm-ish grid): cerebrospinal fluid in two
ventricles, grey matter as the outer cortex band, white matter inside with
three fibre directions by region (left-right in a central slab, anterior-
posterior laterally, superior-inferior in two columns).  The noise-free
signal of each tissue class comes from ``dipy.sims.voxel.single_tensor``;
Rician noise from ``dipy.sims.voxel.add_noise``; on top, a smooth
multiplicative bias field and a few volumes shifted by about a voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: (eigenvalues in mm^2/s, S0) of the tissue classes.
TISSUES = {
    "wm": ((1.6e-3, 0.35e-3, 0.35e-3), 900.0),
    "gm": ((0.95e-3, 0.8e-3, 0.7e-3), 1100.0),
    "csf": ((3.0e-3, 3.0e-3, 3.0e-3), 2000.0),
}


@dataclass(slots=True)
class Phantom:
    """Simulated series and its ground truth."""

    data: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    affine: np.ndarray
    fa: np.ndarray
    md: np.ndarray
    tissue: np.ndarray  # 0 background, 1 WM, 2 GM, 3 CSF
    shifted: tuple[int, ...]


def gradient_scheme(n_b0: int, shells: dict[float, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """b-values and unit directions: ``n_b0`` b0s, then ``shells[b]`` directions per shell.

    Directions are electrostatically spread points from ``dipy.core.sphere.disperse_charges``.
    """
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(seed)
    bvals = [np.zeros(n_b0)]
    bvecs = [np.zeros((n_b0, 3))]
    for b, n in shells.items():
        theta = np.pi * rng.random(n)
        phi = 2 * np.pi * rng.random(n)
        hemi, _ = disperse_charges(HemiSphere(theta=theta, phi=phi), 200)
        bvals.append(np.full(n, float(b)))
        bvecs.append(hemi.vertices)
    return np.concatenate(bvals), np.concatenate(bvecs)


def _labels(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Tissue labels and the WM fibre-direction index (0 x, 1 y, 2 z)."""
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    x, y, z = grid
    r = np.sqrt((x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.8) ** 2)
    tissue = np.zeros(shape, np.uint8)
    tissue[r < 1.0] = 2
    tissue[r < 0.8] = 1
    ventricles = ((np.abs(x) - 0.18) / 0.1) ** 2 + (y / 0.35) ** 2 + (z / 0.25) ** 2 < 1
    tissue[ventricles] = 3
    direction = np.full(shape, 1, np.uint8)  # anterior-posterior
    direction[np.abs(x) < 0.3] = 0  # left-right slab
    direction[(np.abs(np.abs(x) - 0.45) < 0.1) & (np.abs(y) < 0.25)] = 2
    return tissue, direction


def simulate(shape: tuple[int, int, int] = (40, 48, 24), zooms: float = 2.5,
             bvals: np.ndarray | None = None, bvecs: np.ndarray | None = None,
             snr: float = 30.0, bias: float = 0.25, shifted: tuple[int, ...] = (),
             shift_vox: float = 1.0, seed: int = 0) -> Phantom:
    """Simulate a series over the phantom (SNR relative to the WM b0 signal)."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import fractional_anisotropy, mean_diffusivity
    from dipy.sims.voxel import add_noise, single_tensor

    if bvals is None or bvecs is None:
        bvals, bvecs = gradient_scheme(3, {1000.0: 30})
    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    rng = np.random.default_rng(seed)
    tissue, direction = _labels(shape)
    clean = np.zeros((*shape, len(bvals)), np.float64)
    fa = np.zeros(shape)
    md = np.zeros(shape)
    axes = np.eye(3)
    for label, name in ((1, "wm"), (2, "gm"), (3, "csf")):
        evals, s0 = TISSUES[name]
        for d in range(3 if name == "wm" else 1):
            where = (tissue == label) & ((direction == d) if name == "wm" else True)
            evecs = np.roll(axes, d, axis=1)
            clean[where] = s0 * single_tensor(gtab, 1.0, evals=np.array(evals), evecs=evecs,
                                              snr=None, rng=rng)
        fa[tissue == label] = fractional_anisotropy(np.array(evals))
        md[tissue == label] = mean_diffusivity(np.array(evals))
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    field = 1.0 + bias * (0.6 * grid[0] + 0.8 * grid[1] - 0.5 * grid[2] ** 2)
    clean *= field[..., None]
    for v in shifted:
        clean[..., v] = ndimage.shift(clean[..., v], (shift_vox, -0.6 * shift_vox, 0.0), order=1)
    noisy = add_noise(clean, snr, TISSUES["wm"][1], noise_type="rician", rng=rng)
    affine = np.diag([zooms, zooms, zooms, 1.0])
    affine[:3, 3] = -np.array(shape) * zooms / 2
    return Phantom(noisy.astype(np.float32), np.asarray(bvals, float), np.asarray(bvecs, float),
                   affine, fa, md, tissue, tuple(shifted))
