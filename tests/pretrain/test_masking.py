"""Block masks: alignment with the bottleneck, ratios, reproducibility."""

from __future__ import annotations

import pytest
import torch

from pretrain.masking import (
    block_grid,
    is_block_aligned,
    mask_at,
    masked_block_count,
    random_block_mask,
    sample_ratio,
    total_stride,
)
from pretrain.model import RESENC_L, build_model


def test_resenc_l_bottleneck_gives_32_voxel_blocks_on_a_5_cubed_grid() -> None:
    block = total_stride(RESENC_L["strides"])
    assert block == 32
    assert block_grid(160, block) == 5


def test_mask_blocks_map_onto_whole_bottleneck_voxels() -> None:
    model = build_model("tiny")  # strides 1-2-2-2: bottleneck factor 8
    g = torch.Generator().manual_seed(1)
    mask = random_block_mask(3, 32, model.block_size, 0.75, g)
    assert is_block_aligned(mask, model.block_size)
    bottleneck = model.stage_masks(mask)[-1]
    assert bottleneck.shape[2:] == (4, 4, 4)
    # Upsampling the bottleneck mask gives back the input mask exactly: aligned grids.
    up = bottleneck
    for dim in (2, 3, 4):
        up = up.repeat_interleave(8, dim=dim)
    assert torch.equal(up, mask)


def test_finer_blocks_are_not_aligned_with_the_bottleneck_but_with_themselves() -> None:
    mask = random_block_mask(2, 32, 4, 0.75, torch.Generator().manual_seed(0))
    assert is_block_aligned(mask, 4)
    assert not is_block_aligned(mask, 8)


@pytest.mark.parametrize("ratio", [0.6, 0.75, 0.9])
def test_every_sample_masks_the_requested_share_of_blocks(ratio: float) -> None:
    mask = random_block_mask(4, 40, 8, ratio, torch.Generator().manual_seed(3))
    n_blocks = 5**3
    masked_blocks = (1 - mask).sum(dim=(1, 2, 3, 4)) / 8**3
    assert torch.all(masked_blocks == round(ratio * n_blocks))
    # Different samples get different masks.
    assert not torch.equal(mask[0], mask[1])


def test_ratio_is_uniform_within_bounds_and_fixed_when_bounds_are_equal() -> None:
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_ratio(0.6, 0.9, g) for _ in range(2000)])
    assert draws.min() >= 0.6 and draws.max() <= 0.9
    assert abs(float(draws.mean()) - 0.75) < 0.01
    assert sample_ratio(0.75, 0.75, g) == 0.75


def test_same_generator_state_gives_the_same_mask() -> None:
    a = random_block_mask(2, 16, 4, 0.7, torch.Generator().manual_seed(5))
    b = random_block_mask(2, 16, 4, 0.7, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_a_mask_keeps_at_least_one_visible_and_one_masked_block() -> None:
    assert masked_block_count(8, 0.99) == 7
    assert masked_block_count(8, 0.01) == 1
    with pytest.raises(ValueError, match="at least 2 blocks"):
        masked_block_count(1, 0.5)


def test_patch_not_a_multiple_of_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        random_block_mask(1, 100, 32, 0.75, torch.Generator())


def test_mask_at_coarse_grid_marks_visible_where_any_voxel_is() -> None:
    mask = torch.zeros(1, 1, 4, 4, 4)
    mask[0, 0, 0, 0, 0] = 1
    coarse = mask_at(mask, (2, 2, 2))
    assert coarse.sum() == 1 and coarse[0, 0, 0, 0, 0] == 1
