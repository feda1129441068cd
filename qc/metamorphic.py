"""Metamorphic relations of the IQS: transforms that must not change it, degradations that must raise it.

One definition shared by the CI test (``tests/qc/test_iqs_metamorphic.py``), the
full-corpus benchmark (``benchmarks/bench_iqs_metamorphic.py``) and the
calibration (:mod:`qc.calibrate`), so the three check the same relations.

Invariance (|delta IQS| <= :data:`INVARIANCE_TOL`, no flag flips)
    intensity x0.1 and x10; int16 / uint8 / float32 re-quantisation; zero
    padding by 16 voxels; zeroing the background outside the head (scans with
    air); axis permutation and flips; one empty edge slice added or removed;
    1 mm <-> 0.8 mm resampling.
Monotonicity (IQS never drops by more than :data:`MONOTONE_TOL` as severity grows,
the matching component rises most, the total rises >= :data:`MIN_RISE` at the top level)
    Rician noise 2/4/8/16 % of the tissue signal, Gaussian blur FWHM 1.5/3/5
    voxels, Nyquist ghost, k-space motion, bias field (:mod:`qc.degrade`).

Every transform takes ``(data, zooms)`` and returns ``(data, zooms)``; the
degradations take a severity too and a fixed seed, so runs repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import math

import numpy as np
import scipy.ndimage as ndi

from qc import degrade, regions

#: Volumes with fewer voxels are scored but not held to the relations (nibabel's 33x41x25
#: SPM-normalised example: too few voxels for the head/air split and the patch statistics).
MIN_RELATION_VOXELS = 50_000
INVARIANCE_TOL = 0.25
MONOTONE_TOL = 0.1
MIN_RISE = 1.0
Zooms = tuple[float, float, float]
Transform = Callable[[np.ndarray, Zooms], tuple[np.ndarray, Zooms]]


def tissue_level(data: np.ndarray) -> float:
    """Tissue signal that noise levels are relative to: the median of the head on its work grid."""
    reg = regions.split(np.asarray(data, np.float32))
    inner = regions.inner_region(reg.head, None)
    return float(np.median(reg.work[inner])) if inner.any() else float("nan")


def requantise(data: np.ndarray, dtype: str) -> np.ndarray:
    """Store as ``dtype`` the way a converter would: integers rescaled to the type's range."""
    x = np.asarray(data, np.float64)
    if dtype == "float32":
        return x.astype(np.float32)
    top = {"int16": 32767.0, "uint8": 255.0}[dtype]
    low = min(float(x.min()), 0.0)
    scaled = (x - low) / (float(x.max()) - low) * top
    return np.round(scaled).astype(dtype)


def zero_background(data: np.ndarray) -> np.ndarray:
    """Zero every voxel farther than 2 voxels from the head (as a masking or defacing tool does)."""
    x = np.asarray(data, np.float32)
    reg = regions.split(x)
    head = reg.head
    if reg.step > 1:
        head = ndi.zoom(head.astype(np.uint8), [n / m for n, m in zip(x.shape, head.shape)], order=0) > 0
        head = head[: x.shape[0], : x.shape[1], : x.shape[2]]
    keep = ndi.binary_dilation(head, iterations=2)
    return np.where(keep, x, 0).astype(np.float32)


def resample(data: np.ndarray, zooms: Zooms, factor: float) -> tuple[np.ndarray, Zooms]:
    """Cubic-spline resampling to voxels ``factor`` times the size (0.8 makes 1 mm into 0.8 mm)."""
    x = np.asarray(data, np.float32)
    out = ndi.zoom(x, 1.0 / factor, order=3, mode="nearest", grid_mode=True)
    return np.clip(out, 0, None).astype(np.float32), tuple(z * factor for z in zooms)  # type: ignore[return-value]


def _edge_slice(data: np.ndarray, add: bool) -> np.ndarray:
    x = np.asarray(data)
    if add:
        return np.concatenate([x, np.zeros((1, *x.shape[1:]), x.dtype)], axis=0)
    return x[1:]


INVARIANCES: dict[str, Transform] = {
    "x0.1": lambda x, z: (np.asarray(x, np.float32) * np.float32(0.1), z),
    "x10": lambda x, z: (np.asarray(x, np.float32) * np.float32(10), z),
    "int16": lambda x, z: (requantise(x, "int16"), z),
    "uint8": lambda x, z: (requantise(x, "uint8"), z),
    "float32": lambda x, z: (requantise(x, "float32"), z),
    "pad16": lambda x, z: (np.pad(np.asarray(x), 16), z),
    "zero_bg": lambda x, z: (zero_background(x), z),
    "permute": lambda x, z: (np.transpose(x, (2, 0, 1)), (z[2], z[0], z[1])),
    "flip": lambda x, z: (np.asarray(x)[::-1, :, ::-1], z),
    "edge+1": lambda x, z: (_edge_slice(x, True), z),
    "edge-1": lambda x, z: (_edge_slice(x, False), z),
    "res0.8": lambda x, z: resample(x, z, 0.8),
}


def moved_faces(name: str, faces: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The ``(axis, side)`` faces (the inferior one) after the invariance transform ``name``."""
    if name == "permute":  # np.transpose(x, (2, 0, 1)): old axis 2 -> 0, 0 -> 1, 1 -> 2
        return tuple(({2: 0, 0: 1, 1: 2}[axis], side) for axis, side in faces)
    if name == "flip":  # axes 0 and 2 reversed
        return tuple((axis, 1 - side if axis in (0, 2) else side) for axis, side in faces)
    return faces


@dataclass(frozen=True, slots=True)
class Series:
    """One degradation with its severities (the clean image is the level before the first)."""

    name: str
    component: str
    levels: tuple[float, ...]
    apply: Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]


SERIES: tuple[Series, ...] = (
    Series("noise", "noise", (0.02, 0.04, 0.08, 0.16),
           lambda x, v, ref, g: degrade.rician_noise(x, v * ref, g)),
    Series("blur", "blur", (1.5, 3.0, 5.0), lambda x, v, ref, g: degrade.gaussian_blur(x, v)),
    Series("ghost", "artifact", (0.03, 0.08, 0.15, 0.3), lambda x, v, ref, g: degrade.nyquist_ghost(x, v)),
    Series("motion", "artifact", (0.1, 0.25, 0.5), lambda x, v, ref, g: degrade.motion_phase(x, v, 4.0, g)),
    Series("bias", "artifact", (0.25, 0.5, 0.75, 1.0), lambda x, v, ref, g: worsening_bias(x, v)),
)


def worsening_bias(data: np.ndarray, strength: float) -> np.ndarray:
    """:func:`qc.degrade.bias_field` with the sign that adds to the scan's own non-uniformity.

    A real scan has a bias field of its own; the fixed-shape synthetic field with
    the wrong sign partly *corrects* it, which is no degradation.  The sign is
    the one whose weak (0.25) field raises the INU measure more.
    """
    from qc import artifacts

    def spread(x: np.ndarray) -> float:
        reg = regions.split(x)
        inner = regions.inner_region(reg.head, None)
        low = regions.tissue_thresholds(reg.work[inner])[0]
        return artifacts.inu_spread(reg.work, inner, low)

    x = np.asarray(data, np.float32)
    up, down = spread(degrade.bias_field(x, 0.25)), spread(degrade.bias_field(x, -0.25))
    sign = -1.0 if math.isfinite(down) and (not math.isfinite(up) or down > up) else 1.0
    return degrade.bias_field(x, sign * strength)


def degraded(data: np.ndarray, series: Series, level: float, seed: int = 0) -> np.ndarray:
    """``data`` degraded by ``series`` at ``level`` with a fixed seed."""
    x = np.asarray(data, np.float32)
    return series.apply(x, level, tissue_level(x), np.random.default_rng(seed))


def check_scores(s: dict[str, tuple], series: tuple[Series, ...] = SERIES) -> list[str]:
    """Failed relations of one scan's scores (empty when every relation holds).

    ``s`` maps ``clean``, ``inv/<transform>`` and ``deg/<series>/<level>`` to
    ``(iqs, noise, blur, artifact, fov_suboptimal, corrupted)``.
    """
    fails = []
    clean = s["clean"]
    for key, value in s.items():
        if key.startswith("inv/"):
            if abs(value[0] - clean[0]) > INVARIANCE_TOL or value[4:] != clean[4:]:
                fails.append(f"{key[4:]}: {clean[0]:.2f} -> {value[0]:.2f}"
                             + (" (flag flip)" if value[4:] != clean[4:] else ""))
    parts = {"noise": 1, "blur": 2, "artifact": 3}
    for ser in series:
        seq = [clean] + [s[f"deg/{ser.name}/{lv:g}"] for lv in ser.levels]
        totals = [v[0] for v in seq]
        if any(b < a - MONOTONE_TOL for a, b in zip(totals, totals[1:])):
            fails.append(f"{ser.name}: not monotone {['%.2f' % t for t in totals]}")
        if totals[-1] < 5.0 and totals[-1] - totals[0] < MIN_RISE:
            fails.append(f"{ser.name}: rises only {totals[-1] - totals[0]:.2f}")
        rises = {name: _rise(seq[0][i], seq[-1][i]) for name, i in parts.items()}
        finite = {k: v for k, v in rises.items() if math.isfinite(v)}
        if finite and max(finite, key=finite.get) != ser.component and \
                finite[max(finite, key=finite.get)] > finite.get(ser.component, -math.inf) + 1e-9:
            fails.append(f"{ser.name}: {max(finite, key=finite.get)} rises most, not {ser.component}")
    return fails


def _rise(a: float, b: float) -> float:
    if not math.isfinite(b):
        return math.nan
    return b - (a if math.isfinite(a) else 1.0)
