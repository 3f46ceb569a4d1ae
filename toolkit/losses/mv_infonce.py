"""Multi-view InfoNCE for V >= 2 views (Koromilas et al., 2025, "A Principled Framework for
Multi-View Contrastive Learning", arXiv:2507.06979, Sec. IV, MV-InfoNCE).

Pairwise aggregation of InfoNCE over view pairs gives each sample several conflicting terms.
MV-InfoNCE has *one* term per sample ``i`` that aligns all its views at once and contrasts
them with every view of every other sample. With unit vectors ``u_il`` (sample i, view l)
and ``s(u, v) = u.v / tau``:

``L = -1/B sum_i log [ sum_{l != l'} exp s(u_il, u_il')
                       / sum_l sum_{(j, m) != (i, l)} exp s(u_il, u_jm) ]``

(the positives are also in the denominator, as in InfoNCE). Computed in log space with
``logsumexp``. Under data parallelism all samples of all ranks are contrasted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.losses.distributed import gather
from omnipatch.losses.shapes import LossInputError, check_batch, check_views


class MVInfoNCELoss(nn.Module):
    """Args:
        temperature: ``tau``.
        gather_distributed: contrast against every rank's samples.
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = True):
        super().__init__()
        if temperature <= 0:
            raise LossInputError(f"MVInfoNCELoss temperature must be > 0, got {temperature}")
        self.temperature, self.gather_distributed = temperature, gather_distributed

    def forward(self, z: Tensor) -> Tensor:
        """``z (V, B, D)`` embeddings of V >= 2 views of B samples -> scalar."""
        check_views("MVInfoNCELoss", z)
        if self.gather_distributed:
            z = gather(z, dim=1)
        check_batch("MVInfoNCELoss", z.shape[1])
        V, B, _ = z.shape
        u = F.normalize(z.float(), dim=-1).reshape(V * B, -1)  # row l * B + i
        s = u @ u.T / self.temperature
        s.fill_diagonal_(float("-inf"))  # never a sample's own view
        s = s.reshape(V, B, V, B)  # [l, i, m, j]
        log_neg = torch.logsumexp(s.permute(1, 0, 2, 3).reshape(B, -1), dim=1)  # (B,)
        log_pos = torch.logsumexp(torch.diagonal(s, dim1=1, dim2=3).reshape(V * V, B), dim=0)  # j = i, l != m
        return (log_neg - log_pos).mean()
