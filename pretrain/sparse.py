"""Sparse (masked) layers for SparK / S3D, swapped into an existing network in place.

A masked position must stay exactly zero through the encoder, and must not bias the
normalization statistics (Tian et al., SparK; S3D Sec. 4 "Sparsification"):

* :class:`MaskedInstanceNorm3d` - instance norm whose mean and variance come from visible
  voxels only, output re-masked;
* :class:`MaskedConv3d` - convolution whose output is re-masked.

In a ResEnc U-Net every convolution is followed by a normalization (``conv -> norm ->
nonlin``), and the masked norm ignores masked inputs and re-masks its output, so re-masking
the convolution as well would only repeat a multiply.  :func:`sparsify_` therefore masks a
convolution only when no norm follows it: the outputs are still re-masked at every layer.

The masked norm is a custom autograd function (closed-form backward restricted to visible
voxels) instead of a chain of autograd ops: fewer full-size temporaries and passes on CPU.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class SparseContext:
    """The visibility masks of the current forward pass, one per feature-grid shape."""

    def __init__(self) -> None:
        self.masks: dict[tuple[int, ...], torch.Tensor] = {}

    def mask_for(self, x: torch.Tensor) -> torch.Tensor | None:
        """Mask matching ``x``'s spatial grid, or ``None`` when running densely."""
        if not self.masks:
            return None
        key = tuple(x.shape[2:])
        if key not in self.masks:
            raise RuntimeError(f"no mask for feature grid {key}; known {sorted(self.masks)}")
        return self.masks[key]


def _masked_sum(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per-(sample, channel) sum of ``t`` over visible voxels, as one batched mat-vec product."""
    b, c = t.shape[:2]
    out = torch.bmm(t.reshape(b, c, -1), m.reshape(b, -1, 1))
    return out.view(b, c, *([1] * (t.ndim - 2)))


def _channel_dot(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per-(sample, channel) sum of ``t * u`` without a full-size temporary."""
    b, c = t.shape[:2]
    out = torch.einsum("bcn,bcn->bc", t.reshape(b, c, -1), u.reshape(b, c, -1))
    return out.view(b, c, *([1] * (t.ndim - 2)))


class _MaskedInstanceNorm(torch.autograd.Function):
    """y = (x_hat * w + b) * m with x_hat normalised by visible-voxel statistics.

    Written for few passes over memory: reductions are batched mat-vec products and the
    elementwise work is done in place where autograd allows.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, m: torch.Tensor, weight: torch.Tensor | None,
                bias: torch.Tensor | None, eps: float) -> torch.Tensor:
        acc = torch.promote_types(x.dtype, torch.float32)  # float32 at least (bf16 inputs)
        xf, mf = x.to(acc), m.to(acc)
        count = mf.sum(dim=tuple(range(2, x.ndim)), keepdim=True).clamp_min(1.0)
        xhat = (xf - _masked_sum(xf, mf) / count).mul_(mf)  # centred, zero where masked
        rstd = torch.rsqrt(_channel_dot(xhat, xhat) / count + eps)
        xhat.mul_(rstd)
        if weight is None:
            y = xhat.clone()  # the output may be modified in place (LeakyReLU inplace)
        else:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            y = (xhat * weight.to(acc).view(shape)).addcmul_(mf, bias.to(acc).view(shape))
        ctx.save_for_backward(xhat, mf, rstd, count, weight)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xhat, mf, rstd, count, weight = ctx.saved_tensors
        g = grad.to(xhat.dtype)
        g_sum = _masked_sum(g, mf)       # sum of dL/dy over visible voxels
        g_dot = _channel_dot(g, xhat)    # sum of dL/dy * x_hat (x_hat is 0 where masked)
        dw = db = None
        scale = rstd
        if weight is not None:
            w = weight.to(xhat.dtype).view((1, -1) + (1,) * (xhat.ndim - 2))
            dw, db = g_dot.sum(0).flatten().to(weight.dtype), g_sum.sum(0).flatten().to(weight.dtype)
            g_sum, g_dot, scale = g_sum * w, g_dot * w, rstd * w
        # Normalisation over the visible set: dx = (w g - mean(w g) - x_hat mean(w g x_hat)) / std
        dx = (g * scale).sub_(g_sum * rstd / count).mul_(mf)
        dx.addcmul_(xhat, g_dot * rstd / count, value=-1.0)
        return dx.to(grad.dtype), None, dw, db, None


def masked_instance_norm(x: torch.Tensor, m: torch.Tensor, weight: torch.Tensor | None,
                         bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Instance norm with statistics over visible voxels (``m == 1``) only; output re-masked.

    Parameters
    ----------
    x
        ``(B, C, *spatial)`` features.
    m
        ``(B, 1, *spatial)`` visibility mask (1 visible, 0 masked).
    weight, bias
        Affine parameters ``(C,)`` or ``None``.
    eps
        Added to the variance.

    Notes
    -----
    Statistics and gradients are computed in float32 (safe under bf16 autocast).  A sample
    with no visible voxel on this grid gives zeros rather than NaN.
    """
    return _MaskedInstanceNorm.apply(x, m, weight, bias, eps)


class MaskedConv3d(nn.Conv3d):
    """``Conv3d`` whose output is re-masked (zero at masked positions) when a mask is set."""

    ctx: SparseContext

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        m = self.ctx.mask_for(out)
        return out if m is None else out * m.to(out.dtype)


class MaskedInstanceNorm3d(nn.InstanceNorm3d):
    """``InstanceNorm3d`` with visible-only statistics when a mask is set (dense otherwise)."""

    ctx: SparseContext

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ctx.mask_for(x)
        if m is None:
            return super().forward(x)
        return masked_instance_norm(x, m, self.weight, self.bias, self.eps)


def _masked_twin(module: nn.Module, ctx: SparseContext) -> nn.Module:
    """A masked module sharing ``module``'s parameters."""
    masked = {nn.Conv3d: MaskedConv3d, nn.InstanceNorm3d: MaskedInstanceNorm3d}[type(module)]
    # A shallow copy keeps the same Parameter objects under the same names (same state_dict
    # keys); switching the class to a forward-only subclass changes nothing else.
    twin = copy.copy(module)
    twin.__class__ = masked
    twin.ctx = ctx
    return twin


def convs_followed_by_norm(module: nn.Module) -> set[int]:
    """Ids of the Conv3d modules whose output goes straight (dropout aside) into an InstanceNorm3d."""
    out: set[int] = set()
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        layers = [m for m in seq if not isinstance(m, nn.modules.dropout._DropoutNd)]
        for a, b in zip(layers, layers[1:]):
            if type(a) is nn.Conv3d and type(b) is nn.InstanceNorm3d:
                out.add(id(a))
    return out


def sparsify_(module: nn.Module, ctx: SparseContext) -> dict[str, int]:
    """Make every Conv3d / InstanceNorm3d under ``module`` sparse, in place.

    Norms become :class:`MaskedInstanceNorm3d`; convolutions become :class:`MaskedConv3d`
    unless a (masked) norm follows them.  Modules referenced from several parents
    (``ConvDropoutNormReLU`` keeps ``conv`` and ``all_modules[0]``) get one twin, so weight
    sharing is preserved.  Returns counts of swapped norms and convolutions.
    """
    normed = convs_followed_by_norm(module)
    twins: dict[int, nn.Module] = {}
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            kind = type(child)
            if kind is nn.Conv3d and id(child) in normed:
                continue
            if kind not in (nn.Conv3d, nn.InstanceNorm3d):
                continue
            if id(child) not in twins:
                twins[id(child)] = _masked_twin(child, ctx)
            parent._modules[name] = twins[id(child)]
    kinds = [type(t) for t in twins.values()]
    return {"norms": kinds.count(MaskedInstanceNorm3d), "convs": kinds.count(MaskedConv3d)}
