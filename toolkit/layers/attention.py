"""Multi-head self-attention with an optional key-padding mask."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Self-attention: ``F.scaled_dot_product_attention`` on accelerators, explicit
    ``softmax(q k^T / sqrt(d)) v`` on the CPU.

    On the CPU, SDPA's flash kernel took 43 % of an MAE training step (its backward alone
    314 ms of 731 ms at 64 px / width 192 / batch 64, bf16), where two batched matmuls and
    a softmax take a fraction of that (``benchmarks/bench_mae_step.py``). Both paths
    compute the same function (tested).

    Args:
        dim: token width D.
        num_heads: heads; ``dim % num_heads == 0``.
        qkv_bias: bias on the fused qkv projection (as ViT).
        impl: ``"auto"`` (explicit on CPU, SDPA elsewhere), ``"sdpa"`` or ``"explicit"``.
    """

    impl: str = "auto"

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """``x (B, N, D)``; ``key_padding_mask (B, N)`` True where a key must be ignored."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, N, Dh)
        attn_mask = None
        if key_padding_mask is not None:
            # (B, 1, 1, N) boolean "may attend"; a row with no valid key would be NaN, so
            # let fully padded rows attend to themselves (their output is never used).
            allowed = ~key_padding_mask
            allowed = allowed | ~allowed.any(dim=1, keepdim=True)
            attn_mask = allowed[:, None, None, :]
        impl = self.impl if self.impl != "auto" else ("explicit" if x.device.type == "cpu" else "sdpa")
        if impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, N, N)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            out = scores.softmax(dim=-1).to(v.dtype) @ v
        return self.proj(out.transpose(1, 2).reshape(B, N, D))
