"""Anonymization-aware loss: weights, exact zero gradients, normalisation."""

from __future__ import annotations

import torch

from pretrain.loss import loss_weights, masked_l2_loss


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 1, 8, 8, 8)
    target = torch.randn(shape, generator=g)
    pred = torch.randn(shape, generator=g, requires_grad=True)
    mask = (torch.rand(shape, generator=g) > 0.5).float()
    anon = (torch.rand(shape, generator=g) > 0.7).to(torch.uint8)
    return pred, target, mask, anon


def test_anonymized_and_visible_voxels_get_exactly_zero_gradient() -> None:
    pred, target, mask, anon = _batch()
    masked_l2_loss(pred, target, mask, anon).backward()
    grad = pred.grad
    assert torch.all(grad[anon == 1] == 0)
    assert torch.all(grad[mask == 1] == 0)
    learn = (mask == 0) & (anon == 0)
    assert torch.all(grad[learn] != 0)


def test_loss_is_the_mean_squared_error_over_weighted_voxels() -> None:
    pred, target, mask, anon = _batch(1)
    w = (mask == 0) & (anon == 0)
    expected = ((pred - target)[w] ** 2).mean()
    torch.testing.assert_close(masked_l2_loss(pred, target, mask, anon), expected)


def test_garbage_in_ignored_voxels_does_not_reach_the_loss() -> None:
    pred, target, mask, anon = _batch(2)
    noisy = target.clone()
    noisy[anon == 1] = float("nan")
    noisy[mask == 1] = 1e6
    loss = masked_l2_loss(pred, noisy, mask, anon)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, masked_l2_loss(pred, target, mask, anon))


def test_padding_samples_have_zero_weight() -> None:
    pred, target, mask, anon = _batch(3)
    valid = torch.tensor([True, False])
    w = loss_weights(mask, anon, valid)
    assert not w[1].any() and w[0].any()
    masked_l2_loss(pred, target, mask, anon, valid).backward()
    assert torch.all(pred.grad[1] == 0)


def test_voxelwise_valid_mask_is_honoured() -> None:
    pred, target, mask, _ = _batch(4)
    valid = torch.ones_like(mask, dtype=torch.bool)
    valid[..., :4] = False
    masked_l2_loss(pred, target, mask, None, valid).backward()
    assert torch.all(pred.grad[..., :4] == 0)


def test_no_weighted_voxel_gives_zero_loss_not_nan() -> None:
    pred, target, mask, _ = _batch(5)
    loss = masked_l2_loss(pred, target, torch.ones_like(mask))
    assert loss.item() == 0.0
