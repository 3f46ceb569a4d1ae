"""The shared, light MAE decoder (He et al., 2022, "Masked Autoencoders Are Scalable
Vision Learners"): visible latents + mask tokens in full order -> per-token features.

Modality knowledge stays out: positions come from ``PatchTokens.pos`` (projected to the
decoder width), and the per-modality output projection lives in the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from omnipatch.layers import Block
from omnipatch.masking import MaskResult, unshuffle


@dataclass(frozen=True)
class DecoderConfig:
    """MAE uses a narrow, shallow decoder; 2 x 128 is enough for small inputs."""

    dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6


class MAEDecoder(nn.Module):
    def __init__(self, enc_dim: int, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(enc_dim, cfg.dim)
        self.pos_proj = nn.Linear(enc_dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.zeros(cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads, cfg.mlp_ratio, norm_eps=cfg.norm_eps)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, mask: MaskResult, pos: Tensor, padding_mask: Tensor | None,
                prefix: Tensor | None = None) -> Tensor:
        """``latent (B, K, De)`` for ``mask.idx_keep``; ``pos (1|B, L, De)`` -> ``(B, L, Dd)``.

        ``prefix (B, n, De)``: the encoder's class token output, decoded along (no position,
        as MAE's zero class position) and dropped from the result.
        """
        h = self.embed(latent)
        # scatter to full order, mask token elsewhere and + decoder positions in one write
        x = unshuffle(h, self.mask_token, mask, pos=self.pos_proj(pos.to(h.dtype)))
        n = 0
        if prefix is not None:
            n = prefix.shape[1]
            x = torch.cat([self.embed(prefix).to(x.dtype), x], dim=1)
            if padding_mask is not None:
                padding_mask = torch.cat([padding_mask.new_zeros(x.shape[0], n), padding_mask], dim=1)
        for blk in self.blocks:
            x = blk(x, padding_mask)
        return self.norm(x)[:, n:]

    def config(self) -> dict:
        return asdict(self.cfg)
