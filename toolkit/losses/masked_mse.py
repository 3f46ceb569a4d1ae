"""Masked mean-squared error (MAE, He et al., 2022): scored only on hidden patches."""

from __future__ import annotations

from torch import Tensor


def normalize_targets(target: Tensor, eps: float = 1e-6) -> Tensor:
    """MAE's ``norm_pix_loss``: standardise each patch's values, ``(B, L, P)``."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True, unbiased=False)
    return (target - mean) / (var + eps).sqrt()


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``pred, target (B, L, P)``, ``mask (B, L)`` 1 where scored -> scalar mean over scored patches."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
