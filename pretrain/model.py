"""ResEnc-L made sparse the S3D / SparK way, without duplicating the network's parameters.

The network is nnU-Net's own ``ResidualEncoderUNet`` (``dynamic-network-architectures``)
with one output channel.  Sparsity is added *in place* (S3D Sec. 4 "Sparsification",
see :mod:`pretrain.sparse`):

* every encoder ``InstanceNorm3d`` becomes a masked norm (statistics over visible voxels
  only, output re-masked), so every conv -> norm output is re-masked at every resolution
  and masked regions are not eroded by the receptive field;
* a convolution not followed by a norm would become a masked convolution (none in ResEnc);
* a learnable mask token per stage fills the masked positions of each skip before the
  (dense) decoder, and a 3^3 densification convolution follows at every stage except the
  highest resolution.

The replacements are subclasses that *reuse the same* ``Parameter`` objects under the same
names, so the U-Net's ``state_dict`` keys are exactly nnU-Net's and the only extra weights
are what the method needs (mask tokens + densification convolutions, ~7.9 M for ResEnc-L).
nnssl's SparK model instead kept a dense and a sparse copy of the encoder (~200 M).

Examples
--------
>>> model = build_model("tiny")
>>> x = torch.randn(1, 1, 16, 16, 16)
>>> mask = torch.ones_like(x); mask[..., :8, :, :] = 0
>>> tuple(model(x, mask).shape)
(1, 1, 16, 16, 16)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
from torch import nn

from pretrain.masking import mask_at, total_stride
from pretrain.sparse import SparseContext, sparsify_

RESENC_L: dict[str, Any] = {
    "n_stages": 6,
    "features_per_stage": (32, 64, 128, 256, 320, 320),
    "kernel_sizes": (3, 3, 3, 3, 3, 3),
    "strides": (1, 2, 2, 2, 2, 2),
    "n_blocks_per_stage": (1, 3, 4, 6, 6, 6),
    "n_conv_per_stage_decoder": (1, 1, 1, 1, 1),
}
TINY: dict[str, Any] = {
    "n_stages": 4,
    "features_per_stage": (8, 16, 32, 32),
    "kernel_sizes": (3, 3, 3, 3),
    "strides": (1, 2, 2, 2),
    "n_blocks_per_stage": (1, 1, 1, 1),
    "n_conv_per_stage_decoder": (1, 1, 1),
}
ARCHITECTURES = {"resenc-l": RESENC_L, "tiny": TINY}


def unet_kwargs(name: str, num_classes: int = 1, input_channels: int = 1) -> dict[str, Any]:
    """Keyword arguments of nnU-Net's ``ResidualEncoderUNet`` for a named architecture."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return {
        "input_channels": input_channels,
        **ARCHITECTURES[name],
        "num_classes": num_classes,
        "conv_op": nn.Conv3d,
        "conv_bias": True,
        "norm_op": nn.InstanceNorm3d,
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": nn.LeakyReLU,
        "nonlin_kwargs": {"inplace": True},
        "deep_supervision": False,
    }


def build_unet(name: str, num_classes: int = 1) -> ResidualEncoderUNet:
    """A plain (dense) nnU-Net ResEnc U-Net, initialised as nnU-Net does."""
    net = ResidualEncoderUNet(**unet_kwargs(name, num_classes))
    net.apply(ResidualEncoderUNet.initialize)
    return net


class SparseMAE(nn.Module):
    """S3D masked autoencoder: sparse ResEnc encoder, mask tokens, densification, U-Net decoder.

    Parameters
    ----------
    name
        Architecture (``resenc-l`` or ``tiny``).
    mask_token, densify
        The two S3D additions (both on in the paper's final model).
    """

    def __init__(self, name: str = "resenc-l", mask_token: bool = True, densify: bool = True):
        super().__init__()
        self.arch = name
        self.net = build_unet(name, num_classes=1)
        # Only the last segmentation head is used without deep supervision; freezing the
        # others keeps DDP from waiting for gradients that never come.
        for head in self.net.decoder.seg_layers[:-1]:
            head.requires_grad_(False)
        self._ctx = SparseContext()
        sparsify_(self.net.encoder, self._ctx)
        channels = list(self.net.encoder.output_channels)
        self.strides = [s[0] for s in self.net.encoder.strides]
        self.mask_tokens = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, c, 1, 1, 1)) for c in channels] if mask_token else [])
        for token in self.mask_tokens:
            nn.init.trunc_normal_(token, std=0.02)
        self.densify = nn.ModuleList(
            [nn.Identity()] + [nn.Conv3d(c, c, 3, padding=1) for c in channels[1:]]
            if densify else [])

    @property
    def block_size(self) -> int:
        """Mask block edge aligned with the bottleneck (total encoder stride)."""
        return total_stride(self.strides)

    def stage_masks(self, mask: torch.Tensor) -> list[torch.Tensor]:
        """The visibility mask at each encoder stage's resolution."""
        out, factor = [], 1
        for s in self.strides:
            factor *= s
            out.append(mask_at(mask, [d // factor for d in mask.shape[2:]]))
        return out

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Sparse encoder features per stage (zero at masked positions)."""
        masks = self.stage_masks(mask)
        self._ctx.masks = {tuple(m.shape[2:]): m for m in [mask, *masks]}
        try:
            return self.net.encoder(x * mask.to(x.dtype))
        finally:
            self._ctx.masks = {}

    def fill(self, skips: list[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
        """Mask tokens into masked positions, then densification convolutions."""
        out = []
        for s, (f, m) in enumerate(zip(skips, self.stage_masks(mask))):
            if len(self.mask_tokens):
                m = m.to(f.dtype)
                f = f * m + self.mask_tokens[s].to(f.dtype) * (1 - m)
            if len(self.densify):
                f = self.densify[s](f)
            out.append(f)
        return out

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` from its visible part (``mask == 1``)."""
        return self.net.decoder(self.fill(self.encode(x, mask), mask))


class DenseMAE(nn.Module):
    """nnssl-style dense MAE: the plain U-Net on the masked input (baseline, no sparsity).

    ``skips=False`` hands the decoder zeros instead of the encoder's skip features, so the
    reconstruction comes from the bottleneck alone (AMAES pre-trains without skips; the
    decoder keeps nnU-Net's shape and names, so exported weights still load).
    """

    def __init__(self, name: str = "resenc-l", skips: bool = True):
        super().__init__()
        self.arch = name
        self.skips = skips
        self.net = build_unet(name, num_classes=1)
        for head in self.net.decoder.seg_layers[:-1]:
            head.requires_grad_(False)
        self.strides = [s[0] for s in self.net.encoder.strides]

    @property
    def block_size(self) -> int:
        """Mask block edge aligned with the bottleneck (total encoder stride)."""
        return total_stride(self.strides)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` from ``x * mask``."""
        x = x * mask.to(x.dtype)
        if self.skips:
            return self.net(x)
        features = self.net.encoder(x)
        return self.net.decoder([torch.zeros_like(f) for f in features[:-1]] + [features[-1]])


def build_model(name: str = "resenc-l", sparse: bool = True, mask_token: bool = True,
                densify: bool = True, skips: bool = True) -> SparseMAE | DenseMAE:
    """The pre-training network for a :class:`pretrain.config.ModelConfig`'s fields."""
    if sparse:
        return SparseMAE(name, mask_token=mask_token, densify=densify)
    return DenseMAE(name, skips=skips)


def count_parameters(module: nn.Module) -> int:
    """Number of distinct parameters (shared ones counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def trainable(module: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters that receive gradients."""
    return (p for p in module.parameters() if p.requires_grad)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / ``torch.compile`` wrappers."""
    while True:
        if isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


__all__ = ["DenseMAE", "SparseMAE", "build_model", "build_unet", "count_parameters",
           "trainable", "unet_kwargs", "unwrap"]
