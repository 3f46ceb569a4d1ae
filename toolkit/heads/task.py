"""Task heads for fine-tuning (:mod:`omnipatch.finetune`): pooled and dense (per patch).

Both take ``(hidden (B, L, D), pooled (B, D), grid)`` -- what the encoder gives for whole,
unmasked samples -- so a saved head spec rebuilds the same head inside omnipatch and inside
the exported ``transformers`` model (:mod:`omnipatch.export.hf`).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from omnipatch.errors import OmnipatchError


class PooledHead(nn.Module):
    """LayerNorm + linear on pooled tokens: ``(B, D) -> (B, K)``."""

    def __init__(self, dim: int, outputs: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, outputs)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)  # MAE: small head init
        nn.init.zeros_(self.fc.bias)

    def forward(self, hidden: Tensor, pooled: Tensor, grid: tuple[int, ...] | None = None) -> Tensor:
        return self.fc(self.norm(pooled))


class DenseHead(nn.Module):
    """Per-token LayerNorm + linear to ``prod(patch) * K`` values, reassembled to pixels.

    ``hidden (B, L, D)`` with ``L = prod(grid)`` -> logits ``(B, K, g1*p1, ..., gn*pn)``.
    """

    def __init__(self, dim: int, outputs: int, patch_size: list[int]):
        super().__init__()
        self.outputs, self.patch_size = outputs, tuple(int(p) for p in patch_size)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, outputs * math.prod(self.patch_size))
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, hidden: Tensor, pooled: Tensor, grid: tuple[int, ...] | None = None) -> Tensor:
        if grid is None or math.prod(grid) != hidden.shape[1]:
            raise OmnipatchError(f"a dense head needs a regular patch grid; got grid {grid} for {hidden.shape[1]} tokens")
        B, n = hidden.shape[0], len(grid)
        y = self.fc(self.norm(hidden)).reshape(B, *grid, *self.patch_size, self.outputs)
        perm = [0, 2 * n + 1]
        for i in range(n):  # (B, g.., p.., K) -> (B, K, g1, p1, ..., gn, pn)
            perm += [1 + i, 1 + n + i]
        return y.permute(perm).reshape(B, self.outputs, *[g * p for g, p in zip(grid, self.patch_size)])


def build_head(spec: dict, adapter: nn.Module | None = None) -> nn.Module:
    """Head from its saved spec ``{"kind": "pooled"|"dense", "dim", "outputs", ...}``."""
    if spec["kind"] == "dense":
        return DenseHead(spec["dim"], spec["outputs"], spec["patch_size"])
    return PooledHead(spec["dim"], spec["outputs"])


__all__ = ["PooledHead", "DenseHead", "build_head"]
