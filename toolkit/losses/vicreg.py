"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, 2022,
"VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
eq. 1-6).

For two views ``Z, Z' (N, D)``:

- invariance ``s(Z, Z') = mean_{n,d} (z_nd - z'_nd)^2`` (eq. 5),
- variance ``v(Z) = mean_d max(0, gamma - sqrt(Var(z_.d) + eps))`` with unbiased variance,
  ``gamma = 1`` (eq. 1),
- covariance ``c(Z) = sum_{i != j} C(Z)_ij^2 / D`` with ``C(Z)`` the ``(D, D)`` covariance
  (eq. 3-4),

``L = lambda s + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))`` with the paper's ``lambda = mu =
25, nu = 1``. (The paper writes ``mu [v(Z) + v(Z')]``; its official code and lightly average
the two variance terms, as done here.) Under data parallelism all terms use the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.losses.distributed import gather
from omnipatch.losses.shapes import check_batch, check_pair


def variance_term(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Hinge on the per-dimension standard deviation, ``z (N, D)`` -> scalar."""
    return F.relu(gamma - (z.var(0) + eps).sqrt()).mean()


def covariance_term(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances over ``D``, ``z (N, D)`` -> scalar."""
    n, d = z.shape
    zc = z - z.mean(0)
    cov = zc.T @ zc / (n - 1)  # (D, D)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


class VICRegLoss(nn.Module):
    """Args:
        lambda_param, mu_param, nu_param: weights of invariance, variance, covariance.
        gamma: target standard deviation per dimension.
        eps: added to the variance before the square root.
        gather_distributed: variance / covariance over every rank's embeddings.
    """

    def __init__(self, lambda_param: float = 25.0, mu_param: float = 25.0, nu_param: float = 1.0,
                 gamma: float = 1.0, eps: float = 1e-4, gather_distributed: bool = True):
        super().__init__()
        self.lambda_param, self.mu_param, self.nu_param = lambda_param, mu_param, nu_param
        self.gamma, self.eps, self.gather_distributed = gamma, eps, gather_distributed

    def components(self, za: Tensor, zb: Tensor) -> dict[str, Tensor]:
        """The three weighted terms ``{"invariance", "variance", "covariance"}``; they sum to the loss."""
        check_pair("VICRegLoss", za, zb)
        if self.gather_distributed:
            za, zb = gather(za), gather(zb)
        check_batch("VICRegLoss", za.shape[0])
        za, zb = za.float(), zb.float()
        inv = F.mse_loss(za, zb)
        var = 0.5 * (variance_term(za, self.gamma, self.eps) + variance_term(zb, self.gamma, self.eps))
        cov = covariance_term(za) + covariance_term(zb)
        return {"invariance": self.lambda_param * inv, "variance": self.mu_param * var,
                "covariance": self.nu_param * cov}

    def forward(self, za: Tensor, zb: Tensor) -> Tensor:
        """``za, zb (N, D)`` projections of two views -> scalar."""
        return sum(self.components(za, zb).values())
