"""The sparse ResEnc U-Net: masked norm, sparsity, parameter sharing, nnU-Net keys."""

from __future__ import annotations

import pytest
import torch

from pretrain.masking import random_block_mask
from pretrain.model import build_model, build_unet, count_parameters
from pretrain.sparse import MaskedInstanceNorm3d


@pytest.mark.parametrize("block", [8, 4])  # bottleneck-aligned, and the finer option
def test_encoder_features_are_zero_at_masked_positions_at_every_stage(block: int) -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    x = torch.randn(2, 1, 16, 16, 16)
    mask = random_block_mask(2, 16, block, 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model.encode(x, mask)
    for f, m in zip(feats, model.stage_masks(mask)):
        assert torch.all(f * (1 - m) == 0)
        assert torch.any(f * m != 0)


def test_the_dense_baseline_leaks_into_masked_positions() -> None:
    # The contrast to the test above: without sparse layers, masked regions fill up.
    torch.manual_seed(0)
    model = build_model("tiny", sparse=False)
    x = torch.randn(1, 1, 16, 16, 16)
    mask = random_block_mask(1, 16, model.block_size, 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        stem = model.net.encoder.stem(x * mask)
    assert torch.any(stem * (1 - mask) != 0)


def test_sparse_layers_share_the_dense_parameters_and_keep_nnunet_keys() -> None:
    model = build_model("tiny")
    norms = [m for m in model.net.encoder.modules() if isinstance(m, MaskedInstanceNorm3d)]
    assert norms
    assert not any(type(m) is torch.nn.InstanceNorm3d for m in model.net.encoder.modules())
    stem = model.net.encoder.stem.convs[0]
    assert stem.conv is stem.all_modules[0]
    plain = build_unet("tiny")
    assert set(plain.state_dict()) == {k[len("net."):] for k in model.net.state_dict(prefix="net.")}
    plain.load_state_dict(model.net.state_dict(), strict=True)


def test_sparse_model_adds_only_mask_tokens_and_densification() -> None:
    sparse, dense = build_model("tiny"), build_model("tiny", sparse=False)
    c = [8, 16, 32, 32]
    extra = sum(c) + sum(k * k * 27 + k for k in c[1:])
    assert count_parameters(sparse) - count_parameters(dense) == extra


def test_without_a_mask_the_sparse_layers_run_densely() -> None:
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    plain = build_unet("tiny").eval()
    plain.load_state_dict(model.net.state_dict())
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), plain(x))


@pytest.mark.parametrize("sparse", [True, False])
def test_a_training_step_reaches_every_trainable_parameter(sparse: bool) -> None:
    torch.manual_seed(0)
    model = build_model("tiny", sparse=sparse)
    x = torch.randn(2, 1, 16, 16, 16)
    mask = random_block_mask(2, 16, model.block_size, 0.75, torch.Generator().manual_seed(2))
    model(x, mask).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_the_sparse_model_traces_into_one_graph_for_torch_compile() -> None:
    # torch.compile (GPU path) gains most without graph breaks; dynamo's trace shows them.
    model = build_model("tiny")
    x = torch.randn(1, 1, 16, 16, 16)
    mask = random_block_mask(1, 16, model.block_size, 0.75, torch.Generator().manual_seed(0))
    explained = torch._dynamo.explain(model)(x, mask)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
