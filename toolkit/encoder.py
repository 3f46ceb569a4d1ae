"""The shared transformer encoder: a stack of pre-norm blocks over (visible) tokens.

It never sees a modality: adapters embed and position tokens, masking picks the visible
ones, the encoder mixes them. Presets follow ViT widths (Dosovitskiy et al., 2021).

The encoder speaks timm: its state-dict keys are those of timm's ``VisionTransformer``
trunk (``cls_token``, ``blocks.N.norm1`` / ``attn.qkv`` / ``attn.proj`` / ``ls1.gamma`` /
``norm2`` / ``mlp.fc1`` / ``mlp.fc2`` / ``ls2.gamma``, ``norm``), so a timm ViT's trunk loads
with no key mapping (``omnipatch.init``). The patch embedding and positions are the
adapter's. With ``class_token`` the encoder prepends a learned token (its position folded in,
as timm's ``cls_token + pos_embed[:, 0]``) after masking, as MAE does; ``forward`` returns
the patch tokens only, ``forward_features(..., keep_prefix=True)`` the class token too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnipatch.errors import OmnipatchError
from omnipatch.layers import Block
from omnipatch.registry import Registry


@dataclass(frozen=True)
class EncoderConfig:
    """Attributes: width ``dim``, ``depth`` blocks, ``num_heads``, MLP ``mlp_ratio``;
    ``qkv_bias``; ``init_values`` layer scale (None: none; DINOv2 uses it); ``norm_eps``
    (timm 1e-6, Hugging Face ViT/ViTMAE 1e-12); ``class_token`` (a prefix token, as ViT);
    ``final_norm`` (the LayerNorm ``norm`` after the blocks; without it ``norm`` is the
    identity and holds no tensors, as VideoMAE with ``use_mean_pooling`` and timm's
    ``final_norm=False`` / ``fc_norm`` models)."""

    dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    init_values: float | None = None
    norm_eps: float = 1e-6
    class_token: bool = False
    final_norm: bool = True


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
        self.num_prefix_tokens = int(cfg.class_token)
        if cfg.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
            nn.init.normal_(self.cls_token, std=1e-6)  # timm's init
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.init_values,
                                          cfg.norm_eps) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps) if cfg.final_norm else nn.Identity()
        self.grad_checkpointing = False
        self.apply(_init_weights)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def _prefix(self, x: Tensor, key_padding_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not self.num_prefix_tokens:
            return x, key_padding_mask
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        if key_padding_mask is not None:
            key_padding_mask = torch.cat([key_padding_mask.new_zeros(x.shape[0], 1), key_padding_mask], dim=1)
        return x, key_padding_mask

    def forward_features(self, x: Tensor, key_padding_mask: Tensor | None = None,
                         keep_prefix: bool = False) -> Tensor:
        """``x (B, N, D)`` -> ``(B, N, D)`` after the final norm (``(B, 1 + N, D)`` with the
        class token first when ``keep_prefix`` and the encoder has one)."""
        x, key_padding_mask = self._prefix(x, key_padding_mask)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, key_padding_mask, use_reentrant=False)
            else:
                x = blk(x, key_padding_mask)
        x = self.norm(x)
        return x if keep_prefix else x[:, self.num_prefix_tokens:]

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.forward_features(x, key_padding_mask)

    def forward_intermediates(self, x: Tensor, key_padding_mask: Tensor | None = None,
                              indices: list[int] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Final normed output and the outputs of the blocks in ``indices`` (default all),
        patch tokens only."""
        keep = set(range(len(self.blocks)) if indices is None else indices)
        n = self.num_prefix_tokens
        x, key_padding_mask = self._prefix(x, key_padding_mask)
        inter = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, key_padding_mask)
            if i in keep:
                inter.append(x[:, n:])
        return self.norm(x)[:, n:], inter

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


def region_pool(x: Tensor, grid: tuple[int, ...], regions: tuple[int, ...], mean_axes: tuple[int, ...] = (),
                valid: Tensor | None = None) -> Tensor:
    """A sample embedding that keeps coarse layout: tokens ``x (B, N, D)`` on a regular
    ``grid`` (row-major, ``prod(grid) == N``) averaged over the grid axes in ``mean_axes``,
    then over ``regions`` near-equal blocks of each remaining axis (adaptive average pooling;
    spatial-pyramid style), concatenated region by region: ``(B, prod(regions) * D)``.
    ``valid (B, N)`` weights padded tokens out. Averaging an axis makes the embedding
    invariant to flips along it."""
    B, N, D = x.shape
    if not grid or math.prod(grid) != N:
        raise OmnipatchError(f"region pooling needs a regular token grid, got grid {grid} for {N} tokens")
    keep = [a for a in range(len(grid)) if a not in mean_axes]
    if len(keep) != len(regions) or len(keep) not in (1, 2, 3):
        raise OmnipatchError(f"region pooling: {len(regions)} region counts for {len(keep)} kept axes of grid {grid}")
    w = torch.ones(B, N, 1, dtype=x.dtype, device=x.device) if valid is None else valid.to(x.dtype).unsqueeze(-1)
    h = torch.cat([x * w, w], -1).reshape(B, *grid, D + 1)
    if mean_axes:
        h = h.mean(dim=tuple(1 + a for a in mean_axes))
    h = h.movedim(-1, 1)  # (B, D + 1, *kept grid)
    adaptive = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[len(keep) - 1]
    h = adaptive(h, tuple(int(r) for r in regions)).flatten(2)  # (B, D + 1, R)
    z = h[:, :D] / h[:, D:].clamp_min(1e-6)
    return z.transpose(1, 2).reshape(B, -1)


__all__ = ["Encoder", "EncoderConfig", "PRESETS", "pool", "region_pool", "torch"]
