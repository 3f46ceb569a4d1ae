"""InfoNCE / NT-Xent over two views (Chen et al., 2020, "A Simple Framework for
Contrastive Learning of Visual Representations", eq. 1).

For 2B embeddings, each one's positive is its other view and the 2B-2 others are negatives:
``l(i, j) = -log exp(sim(z_i, z_j)/t) / sum_{k != i} exp(sim(z_i, z_k)/t)``, averaged over
all 2B anchors; ``sim`` is cosine similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NTXentLoss(nn.Module):
    """Args: temperature ``t`` (SimCLR uses 0.1-0.5)."""

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """``z1, z2 (B, D)`` embeddings of two views of the same B samples -> scalar."""
        if z1.shape != z2.shape or z1.dim() != 2:
            raise ValueError(f"NTXentLoss needs two (B, D) tensors of one shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
        B = z1.shape[0]
        if B < 2:
            raise ValueError("NTXentLoss needs a batch of at least 2 (negatives come from the batch)")
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        sim = z @ z.T / self.temperature
        sim.fill_diagonal_(float("-inf"))
        target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)
        return F.cross_entropy(sim, target)
