"""The shared transformer encoder: a stack of pre-norm blocks over (visible) tokens.

It never sees a modality: adapters embed and position tokens, masking picks the visible
ones, the encoder mixes them. Presets follow ViT widths (Dosovitskiy et al., 2021).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnipatch.layers import Block
from omnipatch.registry import Registry


@dataclass(frozen=True)
class EncoderConfig:
    """Attributes: width ``dim``, ``depth`` blocks, ``num_heads``, MLP ``mlp_ratio``."""

    dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0


PRESETS: Registry[EncoderConfig] = Registry("encoder preset")
PRESETS.add("micro", EncoderConfig(128, 4, 4), "128 wide, 4 blocks: CPU demos and tests")
PRESETS.add("mini", EncoderConfig(192, 6, 3), "192 wide, 6 blocks: quick CPU pretraining")
PRESETS.add("tiny", EncoderConfig(192, 12, 3), "ViT-Ti: 192 wide, 12 blocks, 3 heads")
PRESETS.add("small", EncoderConfig(384, 12, 6), "ViT-S: 384 wide, 12 blocks, 6 heads")
PRESETS.add("base", EncoderConfig(768, 12, 12), "ViT-B: 768 wide, 12 blocks, 12 heads")


class Encoder(nn.Module):
    """Transformer encoder over ``(B, N, D)`` tokens with an optional key-padding mask."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.grad_checkpointing = False
        self.apply(_init_weights)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def forward_features(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """``x (B, N, D)`` -> ``(B, N, D)`` after the final norm."""
        for blk in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, key_padding_mask, use_reentrant=False)
            else:
                x = blk(x, key_padding_mask)
        return self.norm(x)

    forward = forward_features

    def forward_intermediates(self, x: Tensor, key_padding_mask: Tensor | None = None,
                              indices: list[int] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Final normed output and the outputs of the blocks in ``indices`` (default all)."""
        keep = set(range(len(self.blocks)) if indices is None else indices)
        inter = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, key_padding_mask)
            if i in keep:
                inter.append(x)
        return self.norm(x), inter

    def no_weight_decay(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.dim() < 2}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def config(self) -> dict:
        return asdict(self.cfg)


def _init_weights(m: nn.Module) -> None:
    # MAE reference: xavier-uniform linears, zero bias, unit LayerNorm
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def pool(x: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over valid tokens: ``x (B, N, D)``, ``valid (B, N)`` bool -> ``(B, D)``."""
    if valid is None:
        return x.mean(dim=1)
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


__all__ = ["Encoder", "EncoderConfig", "PRESETS", "pool", "torch"]
