"""Barlow Twins: redundancy reduction (Zbontar et al., 2021, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", eq. 1 and Algorithm 1).

Standardise each dimension over the batch, take the ``(D, D)`` cross-correlation
``C = za_n.T @ zb_n / N`` and push it to the identity:

``L = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2``

The first sum makes the two views agree (invariance), the second decorrelates dimensions
(redundancy reduction), which prevents collapse without negatives. The paper's ``lambda =
5e-3`` is for D = 8192; about ``1 / D`` is a good rule for other widths. Under data
parallelism the batch statistics are global.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnipatch.losses.distributed import gather
from omnipatch.losses.shapes import LossInputError, check_batch, check_pair


def _standardize(z: Tensor, eps: float) -> Tensor:
    """Per-dimension zero mean, unit (biased) variance over the batch, ``(N, D)``."""
    return (z - z.mean(0)) / (z.var(0, unbiased=False) + eps).sqrt()


class BarlowTwinsLoss(nn.Module):
    """Args:
        lambda_param: weight of the off-diagonal (redundancy) term.
        eps: added to the variance when standardising (BatchNorm's 1e-5).
        gather_distributed: batch statistics over every rank's embeddings.
    """

    def __init__(self, lambda_param: float = 5e-3, eps: float = 1e-5, gather_distributed: bool = True):
        super().__init__()
        if lambda_param < 0:
            raise LossInputError(f"BarlowTwinsLoss lambda_param must be >= 0, got {lambda_param}")
        self.lambda_param, self.eps, self.gather_distributed = lambda_param, eps, gather_distributed

    def components(self, za: Tensor, zb: Tensor) -> dict[str, Tensor]:
        """``{"invariance": sum (1 - C_ii)^2, "redundancy": lambda * sum_{i!=j} C_ij^2}``."""
        check_pair("BarlowTwinsLoss", za, zb)
        if self.gather_distributed:
            za, zb = gather(za), gather(zb)
        check_batch("BarlowTwinsLoss", za.shape[0])
        n = za.shape[0]
        c = _standardize(za.float(), self.eps).T @ _standardize(zb.float(), self.eps) / n  # (D, D)
        diag = torch.diagonal(c)
        off = c.pow(2).sum() - diag.pow(2).sum()
        return {"invariance": (1 - diag).pow(2).sum(), "redundancy": self.lambda_param * off}

    def forward(self, za: Tensor, zb: Tensor) -> Tensor:
        """``za, zb (N, D)`` projections of two views -> scalar."""
        return sum(self.components(za, zb).values())
