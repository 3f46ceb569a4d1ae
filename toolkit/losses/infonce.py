"""InfoNCE / NT-Xent over two views (Chen et al., 2020, "A Simple Framework for
Contrastive Learning of Visual Representations", eq. 1; van den Oord et al., 2018, "CPC").

For 2B embeddings, each one's positive is its other view and the 2B-2 others are negatives:
``l(i, j) = -log exp(sim(z_i, z_j)/t) / sum_{k != i} exp(sim(z_i, z_k)/t)``, averaged over
all 2B anchors; ``sim`` is cosine similarity. Under data parallelism the negatives come from
the global batch (:func:`omnipatch.losses.distributed.gather`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.losses.distributed import gather
from omnipatch.losses.shapes import LossInputError, check_batch, check_pair


class NTXentLoss(nn.Module):
    """SimCLR's normalised-temperature cross entropy.

    Args:
        temperature: ``t``; SimCLR uses 0.1-0.5.
        gather_distributed: use every rank's embeddings as negatives when a process group
            is initialised.
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = True):
        super().__init__()
        if temperature <= 0:
            raise LossInputError(f"NTXentLoss temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """``z1, z2 (B, D)`` embeddings of two views of the same B samples -> scalar."""
        check_pair("NTXentLoss", z1, z2)
        if self.gather_distributed:
            z1, z2 = gather(z1), gather(z2)
        check_batch("NTXentLoss", z1.shape[0])
        B = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        sim = z @ z.T / self.temperature
        sim.fill_diagonal_(float("-inf"))
        target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)
        return F.cross_entropy(sim, target)
