"""Supervised contrastive loss, SupCon (Khosla et al., 2020, "Supervised Contrastive
Learning", eq. 2, L^sup_out).

Every embedding of a labelled sample is an anchor; its positives ``P(i)`` are all other
embeddings (any view) with the same label, ``A(i)`` all other embeddings:

``L = mean_i -1/|P(i)| sum_{p in P(i)} log [ exp(z_i.z_p / tau) / sum_{a in A(i)} exp(z_i.z_a / tau) ]``

on unit vectors. Without labels every sample is its own class and, for two views, SupCon is
exactly SimCLR's NT-Xent. Anchors without any positive (a single view of a singleton class)
are skipped. Under data parallelism embeddings and labels of all ranks are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.losses.distributed import gather, rank
from omnipatch.losses.shapes import LossInputError, check_batch, check_views


class SupConLoss(nn.Module):
    """Args:
        temperature: ``tau`` (paper: 0.1).
        gather_distributed: contrast against every rank's samples.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True):
        super().__init__()
        if temperature <= 0:
            raise LossInputError(f"SupConLoss temperature must be > 0, got {temperature}")
        self.temperature, self.gather_distributed = temperature, gather_distributed

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``z (V, B, D)`` embeddings of V views of B samples, ``labels (B,)`` -> scalar.

        With ``labels=None`` each sample is its own class (needs V >= 2).
        """
        check_views("SupConLoss", z, min_views=1)
        V, B, _ = z.shape
        if labels is None:
            if V < 2:
                raise LossInputError("SupConLoss without labels needs at least 2 views")
            labels = torch.arange(B, device=z.device) + (rank() << 32)  # distinct across ranks too
        elif labels.shape != (B,):
            raise LossInputError(f"SupConLoss labels must be ({B},), got {tuple(labels.shape)}")
        if self.gather_distributed:
            z, labels = gather(z, dim=1), gather(labels.to(z.device))
            B = z.shape[1]
        check_batch("SupConLoss", B)
        u = F.normalize(z.float(), dim=-1).reshape(V * B, -1)
        y = labels.to(u.device).repeat(V)  # (V*B,) label of row l * B + i
        s = u @ u.T / self.temperature
        self_mask = torch.eye(V * B, dtype=torch.bool, device=u.device)
        log_prob = s - torch.logsumexp(s.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
        pos = (y[:, None] == y[None, :]) & ~self_mask
        n_pos = pos.sum(1)
        has = n_pos > 0
        if not bool(has.any()):
            raise LossInputError("SupConLoss: no anchor has a positive (one view and all labels distinct)")
        per_anchor = -(log_prob * pos).sum(1)[has] / n_pos[has]
        return per_anchor.mean()
