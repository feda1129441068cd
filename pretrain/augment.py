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
``centre + M @ (o - (P - 1) / 2)`` (plus, with elastic deformation, a smooth
displacement ``d(o)`` in array voxels).

AMAES's spatial set (:data:`AMAES_SPATIAL`) differs: rotation with probability 0.2, each
axis then rotated with probability 0.66, scaling 0.9-1.1, elastic deformation with
probability 0.33 (batchgenerators' alpha 200-600, sigma 20-30), no mirroring.  Its
displacement field is Gaussian-smoothed noise; with sigma >= 20 voxels it has no detail
finer than a few voxels, so :func:`elastic_displacement` draws it on a coarse grid,
smooths and upsamples it, and scales it to the standard deviation batchgenerators' full
resolution field has: ``alpha / sqrt(3) * (4 pi sigma^2) ** -0.75`` (uniform noise in
[-1, 1] through a normalised 3D Gaussian), i.e. ~0.3 voxel for alpha 400, sigma 25.
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
    p_rotation_per_axis: float = 1.0
    p_elastic: float = 0.0
    elastic_alpha: tuple[float, float] = (200.0, 600.0)
    elastic_sigma: tuple[float, float] = (20.0, 30.0)


#: AMAES's spatial augmentations (appendix B and its code), applied to input and target.
AMAES_SPATIAL = AugmentConfig(p_rotation=0.2, max_rotation_deg=30.0, p_rotation_per_axis=0.66,
                              p_scaling=0.2, scaling=(0.9, 1.1), p_mirror_per_axis=0.0, p_elastic=0.33)
#: The spatial presets ``[augment] spatial`` may name.
SPATIAL_PRESETS = {"nnssl": AugmentConfig(), "amaes": AMAES_SPATIAL}


@dataclass(frozen=True, slots=True)
class SpatialParams:
    """One sample's transform: ``matrix`` maps output offsets to array offsets.

    ``elastic`` is ``(alpha, sigma, seed)`` of the displacement field, or ``None``.
    """

    matrix: np.ndarray
    interpolate: bool
    elastic: tuple[float, float, int] | None = None


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
        angles = rng.uniform(-limit, limit, 3)
        if cfg.p_rotation_per_axis < 1.0:  # drawn only then: nnssl's stream stays as it was
            angles = np.where(rng.uniform(size=3) < cfg.p_rotation_per_axis, angles, 0.0)
        matrix = rotation_matrix(tuple(angles))  # type: ignore[arg-type]
        interpolate = True
    if rng.uniform() < cfg.p_scaling:
        matrix = matrix * rng.uniform(*cfg.scaling)
        interpolate = True
    flips = np.where(rng.uniform(size=3) < cfg.p_mirror_per_axis, -1.0, 1.0)
    elastic = None
    if cfg.p_elastic > 0 and rng.uniform() < cfg.p_elastic:
        elastic = (float(rng.uniform(*cfg.elastic_alpha)), float(rng.uniform(*cfg.elastic_sigma)),
                   int(rng.integers(2**62)))
        interpolate = True
    return SpatialParams(matrix=matrix @ np.diag(flips), interpolate=interpolate, elastic=elastic)


def elastic_displacement(patch: int, alpha: float, sigma: float, seed: int) -> torch.Tensor:
    """A smooth random displacement field (P, P, P, 3), in array voxels, for one sample.

    Noise on a grid of spacing ``sigma / 2``, smoothed there with a Gaussian of ``sigma``,
    upsampled trilinearly to the patch and scaled to batchgenerators' field's standard
    deviation (module docstring).
    """
    g = torch.Generator().manual_seed(seed)
    n = max(2, math.ceil(2 * patch / sigma) + 1)
    coarse = torch.randn((3, 1, n + 4, n + 4, n + 4), generator=g)
    t = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / 2.0) ** 2)  # sigma = 2 coarse cells = sigma voxels
    kernel /= kernel.sum()
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = 5
        coarse = F.conv3d(coarse, kernel.view(shape))
    field = F.interpolate(coarse, size=(patch,) * 3, mode="trilinear", align_corners=True)[:, 0]
    target_std = alpha / math.sqrt(3.0) * (4 * math.pi * sigma**2) ** -0.75
    field *= target_std / field.std().clamp_min(1e-12)
    return field.permute(1, 2, 3, 0).contiguous()


def source_window(centre: np.ndarray, matrix: np.ndarray, patch: int,
                  shape: tuple[int, ...], margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Half-open array box ``(lo, hi)`` holding every voxel the patch samples (clipped to the array).

    ``margin`` (voxels) widens it for a displacement field of at most that size.
    """
    half = (patch - 1) / 2.0
    corners = np.array(np.meshgrid(*[[-half, half]] * 3, indexing="ij")).reshape(3, -1)
    reach = matrix @ corners
    lo = np.floor(centre + reach.min(axis=1) - margin).astype(int)
    hi = np.floor(centre + reach.max(axis=1) + margin).astype(int) + 2  # +1 inclusive, +1 trilinear neighbour
    shape_arr = np.array(shape[:3])
    return np.clip(lo, 0, shape_arr), np.clip(hi, 0, shape_arr)


def sample_grid(centre: np.ndarray, matrix: np.ndarray, patch: int, lo: np.ndarray,
                region_shape: tuple[int, ...], device: torch.device | str = "cpu",
                displacement: torch.Tensor | None = None) -> torch.Tensor:
    """``grid_sample`` grid (1, P, P, P, 3) of the patch over a region starting at array voxel ``lo``.

    The affine map output voxel -> normalised region coordinate is folded into one
    matrix, and the grid is built as the broadcast sum of three per-axis terms:
    a single pass over memory instead of a meshgrid, a matmul and a rescale.
    ``displacement`` (P, P, P, 3, array voxels, from :func:`elastic_displacement`) is
    added to the sampled positions.
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
    if displacement is not None:
        per_axis = torch.as_tensor(scale[::-1].copy(), dtype=torch.float32, device=device)
        grid = grid + displacement.to(device).flip(-1) * per_axis
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
