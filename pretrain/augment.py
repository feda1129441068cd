"""nnssl's light spatial augmentation (rotation, scaling, mirroring) as one torch resampling.

nnssl's MAE trainers apply, per sample: rotation about each axis uniform in
+-30 degrees with probability 0.2, isotropic scaling uniform in 0.7-1.4 with
probability 0.2 (>1 shows more anatomy, i.e. zooms out), and mirroring of
each axis with probability 0.5.  They first crop an enlarged patch so the
rotated patch stays filled, then resample it with batchgenerators.

Here the three transforms are folded into one 3 x 3 matrix per sample, which
gives three savings: only the source box the transformed patch touches is read
from disk; the image is resampled with one trilinear
``torch.nn.functional.grid_sample`` and both masks with one nearest-neighbour
call on the packed mask byte; and a sample that is neither rotated
nor scaled (64 % of them) is a plain crop plus flips with no interpolation at
all.  The maths is device-agnostic: :func:`resample` runs on CPU in loader
workers or on a GPU.  Nearest-neighbour masks stay exactly 0/1.

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


def sample_grid(centre: np.ndarray, matrix: np.ndarray, patch: int, lo: np.ndarray,
                region_shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """``grid_sample`` grid (1, P, P, P, 3) of the patch over a region starting at array voxel ``lo``.

    The affine map output voxel -> normalised region coordinate is folded into one
    matrix, and the grid is built as the broadcast sum of three per-axis terms:
    a single pass over memory instead of a meshgrid, a matmul and a rescale.
    """
    size = np.maximum(np.asarray(region_shape[:3], dtype=np.float64) - 1, 1)
    scale = 2.0 / size  # array offset -> normalised coordinate, per array axis
    offsets = np.arange(patch) - (patch - 1) / 2.0
    base = (centre - lo) * scale - 1.0
    # rows of ``m`` are array axes; grid_sample wants (x, y, z) = array axes reversed
    m = (matrix * scale[:, None])[::-1].copy()
    terms = [torch.as_tensor(np.outer(offsets, m[:, axis]), dtype=torch.float32, device=device)
             for axis in range(3)]
    grid = (terms[0].view(patch, 1, 1, 3) + terms[1].view(1, patch, 1, 3)
            + (terms[2] + torch.as_tensor(base[::-1].copy(), dtype=torch.float32, device=device))
            .view(1, 1, patch, 3))
    return grid[None]


#: Bit set on every voxel of a read region, so nearest sampling tells inside from padding.
INSIDE_BIT = 4


def region_masks(packed: np.ndarray) -> torch.Tensor:
    """Packed masks of a region as the float32 channel :func:`resample` samples (inside bit set)."""
    return torch.from_numpy(np.add(packed, INSIDE_BIT, dtype=np.float32))


def resample(image: torch.Tensor, masks: torch.Tensor, grid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sample a region at ``grid`` (from :func:`sample_grid`).

    ``image`` is the region's float32 intensities (D x H x W) and ``masks`` its packed
    masks from :func:`region_masks`.  The image is trilinear; the masks are nearest
    neighbour, so they stay exactly 0/1.  Returns ``image`` (1 x P^3 float32, 0 on
    padding), ``anatomy_mask``/``anon_mask`` (uint8) and ``valid`` (bool: the nearest
    voxel is inside the region, which is clipped to the array, so inside the array).
    Runs on whatever device the tensors live on.
    """
    img = F.grid_sample(image[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    packed = F.grid_sample(masks[None, None], grid, mode="nearest", padding_mode="zeros",
                           align_corners=True)[0].to(torch.uint8)
    valid = (packed & INSIDE_BIT).bool()
    img.mul_(valid)  # no half-blended padding at the edge of the array
    return {"image": img, "anatomy_mask": packed & 1, "anon_mask": (packed >> 1) & 1, "valid": valid}


def crop_and_flip(region: np.ndarray, lo: np.ndarray, start: np.ndarray, patch: int,
                  flips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The no-interpolation path: place ``region`` (C x ...) into a zero P^3 patch, then mirror.

    ``start`` is the patch origin in array coordinates (may be negative: padding).
    Returns ``(patch C x P^3, valid P^3 bool)``.
    """
    if tuple(region.shape[1:]) == (patch,) * 3 and np.array_equal(lo, start):
        out, valid = region, np.ones((patch,) * 3, dtype=bool)  # the usual case: no padding, no copy
    else:
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
