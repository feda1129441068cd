"""Anonymization-aware masked reconstruction loss (S3D Sec. 4; OpenMind Table 7).

The MAE loss is the mean squared error in z-scored voxel space over *masked* voxels only.
OpenMind showed that also ignoring voxels changed by anonymization (defacing, skull
stripping) helps: a voxel contributes with weight

    w = (mask == 0) * (anon_mask == 0) * valid

where ``mask`` is the MAE visibility mask (1 = visible), ``anon_mask == 1`` marks voxels
changed by anonymization and ``valid`` is ``False`` on padding.  The loss is
``sum(w * (pred - target)^2) / sum(w)``; voxels with ``w == 0`` get exactly zero gradient.

Examples
--------
>>> pred = torch.zeros(1, 1, 2, 2, 2); target = torch.ones_like(pred)
>>> mask = torch.zeros_like(pred); mask[..., 0, :, :] = 1          # half visible
>>> anon = torch.zeros_like(pred, dtype=torch.uint8); anon[..., 1, 0, :] = 1
>>> float(masked_l2_loss(pred, target, mask, anon)), int(loss_weights(mask, anon).sum())
(1.0, 2)
"""

from __future__ import annotations

import torch


def loss_weights(mask: torch.Tensor, anon_mask: torch.Tensor | None = None,
                 valid: torch.Tensor | None = None, masked_only: bool = True) -> torch.Tensor:
    """Boolean weight map: masked, not anonymized, not padding.

    ``valid`` may be per voxel (same shape as ``mask``) or per sample (shape ``(B,)``).
    ``masked_only=False`` weighs visible voxels too (AMAES's loss over the whole volume);
    anonymized voxels and padding stay out either way.
    """
    w = mask == 0 if masked_only else torch.ones_like(mask, dtype=torch.bool)
    if anon_mask is not None:
        w = w & (anon_mask == 0)
    if valid is not None:
        valid = valid.bool()
        if valid.ndim == 1:
            valid = valid.view(-1, *([1] * (mask.ndim - 1)))
        w = w & valid
    return w


def masked_l2_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                   anon_mask: torch.Tensor | None = None,
                   valid: torch.Tensor | None = None, masked_only: bool = True) -> torch.Tensor:
    """Mean squared error over masked, non-anonymized, non-padding voxels.

    Parameters
    ----------
    pred, target
        ``(B, 1, D, H, W)``; the target is the z-scored image.
    mask
        MAE visibility mask, 1 = visible (no loss), 0 = masked (loss).
    anon_mask, valid, masked_only
        See :func:`loss_weights`.

    Returns
    -------
    torch.Tensor
        Scalar float32 loss; 0 (with zero gradient) when no voxel has weight.
    """
    w = loss_weights(mask, anon_mask, valid, masked_only)
    # where() rather than a product: a NaN/inf in an ignored voxel cannot leak into the loss.
    diff = torch.where(w, pred.float() - target.float(), torch.zeros((), device=pred.device))
    return (diff * diff).sum() / w.sum().clamp_min(1)
