"""Sparse layers: the masked norm against a dense norm over visible voxels, and sparsify_."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.masking import random_block_mask
from pretrain.sparse import (
    MaskedConv3d,
    MaskedInstanceNorm3d,
    SparseContext,
    masked_instance_norm,
    sparsify_,
)


def _inputs(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, 3, 8, 8, 8, generator=g) * 4 + 2).to(dtype).requires_grad_()
    mask = random_block_mask(2, 8, 2, 0.6, g).to(dtype)
    w = torch.randn(3, generator=g).to(dtype).requires_grad_()
    b = torch.randn(3, generator=g).to(dtype).requires_grad_()
    return x, mask, w, b


def _dense_over_visible(x, mask, w, b):
    """torch's own instance_norm applied to the gathered visible voxels of each sample."""
    return [F.instance_norm(x[i][:, mask[i, 0].bool()][None], weight=w, bias=b, eps=1e-5)[0]
            for i in range(x.shape[0])]


def test_masked_norm_equals_a_dense_norm_over_the_visible_voxels() -> None:
    x, mask, w, b = _inputs(0, torch.float32)
    y = masked_instance_norm(x, mask, w, b, 1e-5)
    for i, dense in enumerate(_dense_over_visible(x, mask, w, b)):
        visible = mask[i, 0].bool()
        torch.testing.assert_close(y[i][:, visible], dense)
        assert torch.all(y[i][:, ~visible] == 0)


def test_masked_norm_gradients_equal_the_dense_norm_gradients() -> None:
    x, mask, w, b = _inputs(1)
    g = torch.Generator().manual_seed(9)
    up = torch.randn(x.shape, generator=g, dtype=x.dtype)
    ours = torch.autograd.grad((masked_instance_norm(x, mask, w, b, 1e-5) * up).sum(), (x, w, b))
    dense = _dense_over_visible(x, mask, w, b)
    ref_loss = sum((d * up[i][:, mask[i, 0].bool()]).sum() for i, d in enumerate(dense))
    ref = torch.autograd.grad(ref_loss, (x, w, b))
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a, r)
    assert torch.all(ours[0][mask.expand_as(x) == 0] == 0)


def test_masked_norm_passes_gradcheck_without_affine() -> None:
    x, mask, _, _ = _inputs(2)
    x = x[:, :, :4, :4, :4].detach().requires_grad_()
    mask = mask[:, :, :4, :4, :4]
    assert torch.autograd.gradcheck(lambda t: masked_instance_norm(t, mask, None, None, 1e-5), (x,))


def test_masked_norm_ignores_values_at_masked_positions() -> None:
    x, mask, w, b = _inputs(3, torch.float32)
    changed = torch.where(mask.bool(), x, torch.full_like(x, 1000.0))
    assert torch.equal(masked_instance_norm(x, mask, w, b, 1e-5),
                       masked_instance_norm(changed, mask, w, b, 1e-5))


def test_a_sample_with_nothing_visible_gives_zeros_not_nan() -> None:
    x = torch.randn(1, 2, 4, 4, 4)
    y = masked_instance_norm(x, torch.zeros(1, 1, 4, 4, 4), None, None, 1e-5)
    assert torch.all(y == 0)


def test_convs_without_a_following_norm_are_masked_and_others_are_not() -> None:
    ctx = SparseContext()
    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.InstanceNorm3d(2, affine=True),
                        nn.LeakyReLU(), nn.Conv3d(2, 2, 3, padding=1))
    counts = sparsify_(net, ctx)
    assert counts == {"norms": 1, "convs": 1}
    assert type(net[0]) is nn.Conv3d and isinstance(net[3], MaskedConv3d)
    assert isinstance(net[1], MaskedInstanceNorm3d)
    x = torch.randn(1, 1, 8, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, 8)
    mask[..., :4] = 1
    ctx.masks = {(8, 8, 8): mask}
    y = net(x * mask)
    assert torch.all(y[..., 4:] == 0) and torch.any(y[..., :4] != 0)
    ctx.masks = {}
    assert torch.any(net(x * mask)[..., 4:] != 0)  # without a mask: dense behaviour


def test_masked_norm_under_bf16_keeps_float32_statistics() -> None:
    # The GPU path runs under bf16 autocast: bf16 features in, bf16 out, float32 maths inside.
    x, mask, w, b = _inputs(4, torch.float32)
    x_bf16 = x.detach().to(torch.bfloat16).requires_grad_()
    y = masked_instance_norm(x_bf16, mask.to(torch.bfloat16), w, b, 1e-5)
    assert y.dtype == torch.bfloat16
    ref = masked_instance_norm(x_bf16.detach().float(), mask, w, b, 1e-5)
    torch.testing.assert_close(y.float(), ref, atol=0.05, rtol=0.02)
    y.float().sum().backward()
    assert x_bf16.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
