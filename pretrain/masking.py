"""Random block masks aligned with the encoder's bottleneck (S3D, Sec. 4 "Masking strategy").

S3D samples the mask at random on the bottleneck grid of the CNN (5^3 for a 160^3 patch and
ResEnc-L's total stride of 32) and upsamples it to the input, so every masked region is a
32^3 block that maps onto whole voxels at every encoder resolution.  The masking ratio is
drawn once per batch from U[0.6, 0.9].

Convention: ``1`` = visible (fed to the encoder), ``0`` = masked (to be reconstructed).

Examples
--------
>>> g = torch.Generator().manual_seed(0)
>>> m = random_block_mask(2, 160, 32, 0.75, g)
>>> tuple(m.shape), int(m[0].numel() - m[0].sum()) // 32**3   # 94 of 125 blocks masked
((2, 1, 160, 160, 160), 94)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def total_stride(strides: Sequence[int | Sequence[int]]) -> int:
    """Product of the encoder's per-stage strides (isotropic), i.e. the bottleneck factor."""
    out = 1
    for s in strides:
        values = [s] if isinstance(s, int) else list(s)
        if len(set(values)) != 1:
            raise ValueError(f"only isotropic strides are supported, got {s}")
        out *= values[0]
    return out


def block_grid(patch_size: int, block_size: int) -> int:
    """Number of blocks along one axis; the patch must be a whole number of blocks."""
    if block_size < 1 or patch_size % block_size:
        raise ValueError(f"patch size {patch_size} is not a multiple of the mask block size "
                         f"{block_size}; choose a patch that is")
    return patch_size // block_size


def sample_ratio(ratio_min: float, ratio_max: float, generator: torch.Generator) -> float:
    """Masking ratio for one batch, ~ U[ratio_min, ratio_max] (fixed when they are equal)."""
    if ratio_min == ratio_max:
        return float(ratio_min)
    u = torch.rand((), generator=generator).item()
    return ratio_min + (ratio_max - ratio_min) * u


def masked_block_count(n_blocks: int, ratio: float) -> int:
    """Blocks to mask: ``round(ratio * n)``, keeping at least one visible and one masked."""
    if n_blocks < 2:
        raise ValueError("a mask needs at least 2 blocks; use a larger patch or smaller blocks")
    return min(max(round(ratio * n_blocks), 1), n_blocks - 1)


def random_block_mask(batch: int, patch_size: int, block_size: int, ratio: float,
                      generator: torch.Generator,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Per-sample random block masks, upsampled to the patch.

    Parameters
    ----------
    batch, patch_size
        Output shape is ``(batch, 1, patch_size, patch_size, patch_size)``.
    block_size
        Edge of one cubic block in voxels (the encoder's total stride for S3D).
    ratio
        Fraction of blocks masked in every sample (see :func:`masked_block_count`).
    generator
        Source of randomness (CPU), so masks are reproducible and resumable.
    device
        Where the full-resolution mask is built (the block grid is drawn on CPU).

    Returns
    -------
    torch.Tensor
        float32, 1 = visible, 0 = masked.
    """
    g = block_grid(patch_size, block_size)
    n = g**3
    k = masked_block_count(n, ratio)
    order = torch.rand((batch, n), generator=generator).argsort(dim=1)
    coarse = torch.ones((batch, n), dtype=torch.float32)
    coarse.scatter_(1, order[:, :k], 0.0)
    coarse = coarse.view(batch, 1, g, g, g).to(device or "cpu")
    for dim in (2, 3, 4):
        coarse = coarse.repeat_interleave(block_size, dim=dim)
    return coarse


def mask_at(mask: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The visibility mask on a coarser grid ``shape``.

    A coarse voxel is visible when any input voxel under it is; for bottleneck-aligned
    blocks every coarse voxel lies wholly inside one block, so this is exact.
    """
    factors = [s // t for s, t in zip(mask.shape[2:], shape)]
    if any(f * t != s for f, t, s in zip(factors, shape, mask.shape[2:])):
        raise ValueError(f"feature grid {tuple(shape)} does not divide the patch {tuple(mask.shape[2:])}")
    if all(f == 1 for f in factors):
        return mask
    return F.max_pool3d(mask, kernel_size=factors, stride=factors)


def visible_fraction(mask: torch.Tensor) -> float:
    """Fraction of visible voxels (1 - realised masking ratio)."""
    return float(mask.float().mean())


def is_block_aligned(mask: torch.Tensor, block_size: int) -> bool:
    """True when ``mask`` is constant within every ``block_size``^3 block."""
    grid = [s // block_size for s in mask.shape[2:]]
    coarse = mask_at(mask, grid)
    up = coarse
    for dim in (2, 3, 4):
        up = up.repeat_interleave(block_size, dim=dim)
    return bool(torch.equal(up, mask)) and math.prod(grid) > 0
