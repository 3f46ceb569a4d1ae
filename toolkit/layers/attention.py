"""Multi-head self-attention with an optional key-padding mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# CPU: the sequence length from which SDPA (flash, memory linear in N) replaces the explicit
# path, per compute dtype. Defaults measured on a 2-core AMD EPYC (avx512_bf16, torch 2.11;
# fwd + bwd at width 192): bf16 explicit 1.05-1.7x faster up to 2,048 tokens, fp32 SDPA
# faster from 64 on. ``omnipatch.train.precision`` replaces them with this machine's probe.
_CPU_CROSSOVER: dict[torch.dtype, int] = {torch.bfloat16: 1024, torch.float16: 1024, torch.float32: 128}
# ... and never explicit when its (B, H, N, N) scores would pass this many bytes per layer
# (kept for backward in every layer: 64 MiB x 12 blocks stays under 1 GiB)
EXPLICIT_MAX_BYTES = 64 * 2**20


def set_cpu_crossover(values: dict[torch.dtype, int]) -> None:
    _CPU_CROSSOVER.update({k: int(v) for k, v in values.items()})


def cpu_crossover(dtype: torch.dtype) -> int:
    return _CPU_CROSSOVER.get(dtype, _CPU_CROSSOVER[torch.float32])


def choose_impl(q: Tensor) -> str:
    """``auto``: SDPA on accelerators; on the CPU explicit below the crossover length (and
    while its scores stay under ``EXPLICIT_MAX_BYTES``), SDPA above."""
    if q.device.type != "cpu":
        return "sdpa"
    B, H, N, _ = q.shape
    small = B * H * N * N * 6 <= EXPLICIT_MAX_BYTES  # bf16 scores + fp32 softmax kept for backward
    return "explicit" if N < cpu_crossover(q.dtype) and small else "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, impl: str = "auto") -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` on ``(B, H, N, Dh)``; ``attn_mask`` boolean "may attend",
    broadcastable to ``(B, H, N, N)``. ``impl``: ``auto``, ``sdpa`` or ``explicit``."""
    if impl == "auto":
        impl = choose_impl(q)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, N, N)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(dim=-1).to(v.dtype) @ v


class Attention(nn.Module):
    """Self-attention: ``F.scaled_dot_product_attention`` on accelerators; on the CPU the
    explicit ``softmax(q k^T / sqrt(d)) v`` for short sequences and SDPA for long ones.

    On the CPU, SDPA's flash kernel took 43 % of an MAE training step at 64 tokens (its
    backward alone 314 ms of 731 ms at 64 px / width 192 / batch 64, bf16), where two batched
    matmuls and a softmax take a fraction of that (``benchmarks/bench_mae_step.py``). But the
    explicit path materialises ``(B, H, N, N)``: memory quadratic in tokens. So ``auto``
    switches to SDPA (memory linear in N) at a crossover length measured per machine and
    dtype (:func:`cpu_crossover`, ``benchmarks/bench_scaling.py``). Both paths compute the
    same function (tested).

    Args:
        dim: token width D.
        num_heads: heads; ``dim % num_heads == 0``.
        qkv_bias: bias on the fused qkv projection (as ViT).
    The class attribute ``impl`` is ``"auto"``, ``"sdpa"`` or ``"explicit"``.
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
        out = attention(q, k, v, attn_mask, self.impl)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))
