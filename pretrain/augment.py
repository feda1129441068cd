"""nnssl's light spatial augmentation (rotation, scaling, mirroring) as one torch resampling.

nnssl's MAE trainers apply, per sample: rotation about each axis uniform in
+-30 degrees with probability 0.2, isotropic scaling uniform in 0.7-1.4 with
probability 0.2 (>1 shows more anatomy, i.e. zooms out), and mirroring of
each axis with probability 0.5.  They first crop an enlarged patch so the
rotated patch stays filled, then resample it with batchgenerators.

Here the three transforms are folded into one 3 x 3 matrix per sample, which
gives three savings: only the source box the transformed patch touches is read
from disk; image and both masks are resampled by a single trilinear
``torch.nn.functional.grid_sample`` call; and a sample that is neither rotated
nor scaled (64 % of them) is a plain crop plus flips with no interpolation at
all.  The maths is device-agnostic: :func:`resample` runs on CPU in loader
workers or on a GPU.

Coordinates: an output voxel ``o`` (0..P-1 per axis) samples the array at
``centre + M @ (o - (P - 1) / 2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """Probabilities and ranges (nnssl BaseMAETrainer defaults)."""

    p_rotation: float = 0.2
    max_rotation_deg: float = 30.0
    p_scaling: float = 0.2
    scaling: tuple[float, float] = (0.7, 1.4)
    p_mirror_per_axis: float = 0.5
    #: Threshold on the interpolated anatomy mask; the anonymization mask keeps any
    #: voxel that drew on an anonymized voxel (conservative: never learn from them).
    anatomy_threshold: float = 0.5
    anon_threshold: float = 0.01


@dataclass(frozen=True, slots=True)
class SpatialParams:
    """One sample's transform: ``matrix`` maps output offsets to array offsets."""

    matrix: np.ndarray
    interpolate: bool


def rotation_matrix(angles: tuple[float, float, float]) -> np.ndarray:
    """Rotation about axes 0, 1, 2 (radians), applied in that order.

    Examples
    --------
    >>> np.round(rotation_matrix((0.0, 0.0, math.pi / 2)) @ [1, 0, 0], 6).tolist()
    [0.0, 1.0, 0.0]
    """
    out = np.eye(3)
    for axis, angle in enumerate(angles):
        i, j = [a for a in range(3) if a != axis]
        rot = np.eye(3)
        c, s = math.cos(angle), math.sin(angle)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        out = rot @ out
    return out


def sample_params(rng: np.random.Generator, cfg: AugmentConfig, augment: bool = True) -> SpatialParams:
    """Draw one sample's transform with nnssl's probabilities."""
    if not augment:
        return SpatialParams(matrix=np.eye(3), interpolate=False)
    matrix = np.eye(3)
    interpolate = False
    if rng.uniform() < cfg.p_rotation:
        limit = math.radians(cfg.max_rotation_deg)
        matrix = rotation_matrix(tuple(rng.uniform(-limit, limit, 3)))  # type: ignore[arg-type]
        interpolate = True
    if rng.uniform() < cfg.p_scaling:
        matrix = matrix * rng.uniform(*cfg.scaling)
        interpolate = True
    flips = np.where(rng.uniform(size=3) < cfg.p_mirror_per_axis, -1.0, 1.0)
    return SpatialParams(matrix=matrix @ np.diag(flips), interpolate=interpolate)


def source_window(centre: np.ndarray, matrix: np.ndarray, patch: int,
                  shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Half-open array box ``(lo, hi)`` holding every voxel the patch samples (clipped to the array)."""
    half = (patch - 1) / 2.0
    corners = np.array(np.meshgrid(*[[-half, half]] * 3, indexing="ij")).reshape(3, -1)
    reach = matrix @ corners
    lo = np.floor(centre + reach.min(axis=1)).astype(int)
    hi = np.floor(centre + reach.max(axis=1)).astype(int) + 2  # +1 inclusive, +1 trilinear neighbour
    shape_arr = np.array(shape[:3])
    return np.clip(lo, 0, shape_arr), np.clip(hi, 0, shape_arr)


def sample_points(centre: np.ndarray, matrix: np.ndarray, patch: int) -> torch.Tensor:
    """Array coordinates (P, P, P, 3) sampled by the patch, float32."""
    offsets = torch.arange(patch, dtype=torch.float32) - (patch - 1) / 2.0
    grid = torch.stack(torch.meshgrid(offsets, offsets, offsets, indexing="ij"), dim=-1)
    return grid @ torch.as_tensor(matrix.T, dtype=torch.float32) + torch.as_tensor(centre, dtype=torch.float32)


def resample(region: torch.Tensor, points: torch.Tensor, lo: np.ndarray,
             array_shape: tuple[int, ...], cfg: AugmentConfig) -> dict[str, torch.Tensor]:
    """Sample ``region`` (3 x D x H x W: image, anatomy, anon; float) at array ``points``.

    ``lo`` is the region's origin in the array.  Returns ``image`` (1 x P^3 float32),
    ``anatomy_mask``/``anon_mask`` (uint8) and ``valid`` (bool: inside the array).
    Works on whatever device ``region`` and ``points`` live on.
    """
    local = points - torch.as_tensor(lo, dtype=points.dtype, device=points.device)
    size = torch.as_tensor(region.shape[1:], dtype=points.dtype, device=points.device)
    norm = 2.0 * local / torch.clamp(size - 1, min=1) - 1.0
    out = F.grid_sample(region[None], norm.flip(-1)[None], mode="bilinear", padding_mode="zeros",
                        align_corners=True)[0]
    upper = torch.as_tensor(array_shape[:3], dtype=points.dtype, device=points.device) - 1
    valid = ((points >= 0) & (points <= upper)).all(dim=-1)
    return {
        "image": out[0:1] * valid,
        "anatomy_mask": (out[1:2] >= cfg.anatomy_threshold).to(torch.uint8),
        "anon_mask": (out[2:3] > cfg.anon_threshold).to(torch.uint8),
        "valid": valid[None],
    }


def crop_and_flip(region: np.ndarray, lo: np.ndarray, start: np.ndarray, patch: int,
                  flips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The no-interpolation path: place ``region`` (C x ...) into a zero P^3 patch, then mirror.

    ``start`` is the patch origin in array coordinates (may be negative: padding).
    Returns ``(patch C x P^3, valid P^3 bool)``.
    """
    out = np.zeros((region.shape[0], patch, patch, patch), dtype=region.dtype)
    valid = np.zeros((patch,) * 3, dtype=bool)
    src = tuple(slice(0, n) for n in region.shape[1:])
    dst = tuple(slice(int(a - s), int(a - s) + n) for a, s, n in zip(lo, start, region.shape[1:]))
    out[(slice(None), *dst)] = region[(slice(None), *src)]
    valid[dst] = True
    axes = tuple(i for i in range(3) if flips[i] < 0)
    if axes:
        out = np.flip(out, axis=tuple(a + 1 for a in axes))
        valid = np.flip(valid, axis=axes)
    return np.ascontiguousarray(out), np.ascontiguousarray(valid)
