"""Multi-view decoupled hyperspherical energy loss, MV-DHEL (Koromilas et al., 2025, "A
Principled Framework for Multi-View Contrastive Learning", arXiv:2507.06979, Sec. IV;
two-view DHEL: Koromilas et al., ICML 2024, "Bridging Mini-Batch and Asymptotic Analysis in
Contrastive Learning: From InfoNCE to Kernel-Based Losses").

Alignment and uniformity are decoupled: the positives never appear in a denominator, and
uniformity is measured *within* each view (the hyperspherical energy of view l), so the cost
grows linearly with the number of views. With unit vectors ``u_il`` and ``s = u.v / tau``:

``L = -1/B sum_i log [ sum_{l < l'} exp s(u_il, u_il')
                       / prod_l sum_{j != i} exp s(u_il, u_jl) ]``

Computed in log space. The authors report that 5+ views avoid dimensional collapse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.losses.distributed import gather
from omnipatch.losses.shapes import LossInputError, check_batch, check_views


class MVDHELLoss(nn.Module):
    """Args:
        temperature: ``tau`` (authors' default 0.2).
        gather_distributed: uniformity over every rank's samples.
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = True):
        super().__init__()
        if temperature <= 0:
            raise LossInputError(f"MVDHELLoss temperature must be > 0, got {temperature}")
        self.temperature, self.gather_distributed = temperature, gather_distributed

    def forward(self, z: Tensor) -> Tensor:
        """``z (V, B, D)`` embeddings of V >= 2 views of B samples -> scalar."""
        check_views("MVDHELLoss", z)
        if self.gather_distributed:
            z = gather(z, dim=1)
        check_batch("MVDHELLoss", z.shape[1])
        V, B, _ = z.shape
        u = F.normalize(z.float(), dim=-1)
        within = u @ u.transpose(1, 2) / self.temperature  # (V, B, B) same-view similarities
        eye = torch.eye(B, dtype=torch.bool, device=u.device)
        log_energy = torch.logsumexp(within.masked_fill(eye, float("-inf")), dim=2).sum(0)  # (B,)
        across = torch.einsum("lid,mid->lmi", u, u) / self.temperature  # (V, V, B)
        pairs = torch.triu(torch.ones(V, V, dtype=torch.bool, device=u.device), diagonal=1)
        log_pos = torch.logsumexp(across[pairs], dim=0)  # (B,) over l < l'
        return (log_energy - log_pos).mean()
