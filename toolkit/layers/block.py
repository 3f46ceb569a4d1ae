"""Pre-norm transformer block (ViT), with timm's parameter names.

``norm1``, ``attn.qkv``, ``attn.proj``, ``ls1.gamma`` (only with layer scale), ``norm2``,
``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``: the keys of ``timm.models.vision_transformer.Block``,
so a timm ViT block's state dict loads with no renaming.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnipatch.layers.attention import Attention


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scale (CaiT; DINOv2): ``x * gamma`` (timm's ``LayerScale``)."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``; ``(B, N, D)`` in and out.

    Args:
        dim, num_heads, mlp_ratio: width, heads, MLP hidden = ``int(dim * mlp_ratio)``.
        qkv_bias: bias on the fused qkv projection.
        init_values: layer-scale initial value, or None for no layer scale (no parameters).
        norm_eps: LayerNorm epsilon (timm 1e-6, Hugging Face ViT / ViTMAE 1e-12).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 init_values: float | None = None, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), key_padding_mask))
        return x + self.ls2(self.mlp(self.norm2(x)))
