"""SIGReg and the LeJEPA objective (Balestriero & LeCun, 2025, "LeJEPA: Provable and
Scalable Self-Supervised Learning Without the Heuristics", arXiv:2511.08544, Sec. 4-5).

**SIGReg** (Sketched Isotropic Gaussian Regularisation) pushes the embedding distribution
towards an isotropic Gaussian, the distribution the paper proves minimises downstream
prediction risk. It draws ``M`` random unit directions ``a_m`` ("slices"), projects the
``N`` embeddings on each (``x_n = <z_n, a_m>``) and measures, with the Epps-Pulley test
statistic, how far the empirical characteristic function
``phi_N(t) = 1/N sum_n exp(i t x_n)`` is from the standard normal's ``exp(-t^2/2)``:

``EP_m = N * integral |phi_N(t) - exp(-t^2/2)|^2 w(t) dt``, ``w(t) = exp(-t^2/2)``

integrated with the trapezoidal rule on ``[-t_max, t_max]`` (as the authors' code: the
integrand is even, so ``[0, t_max]`` with doubled weights, 17 knots, ``t_max = 3``), and
``SIGReg = mean_m EP_m``. Cost is linear in N; under data parallelism the characteristic
function is taken over the global batch and the slices agree across ranks.

**LeJEPA** adds the predictive (invariance) term: every view's embedding predicts the mean
of the global views' embeddings of the same sample,

``L = lambda * mean_v SIGReg(z_v) + (1 - lambda) * mean_{v,n,d} (z_vnd - mean_{g<G} z_gnd)^2``

with one trade-off ``lambda`` (paper: 0.01-0.1; authors' default 0.05).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnipatch.losses.distributed import broadcast_, gather
from omnipatch.losses.shapes import LossInputError, check_batch, check_views


class SIGReg(nn.Module):
    """Sliced Epps-Pulley test statistic against N(0, I).

    Args:
        knots: quadrature points on ``[0, t_max]``.
        t_max: largest frequency ``t``.
        num_slices: random directions drawn per call (authors: 256 in their minimal code,
            1024 in the paper's experiments).
        gather_distributed: statistics over every rank's rows, slices from rank 0.
    """

    def __init__(self, knots: int = 17, t_max: float = 3.0, num_slices: int = 256, gather_distributed: bool = True):
        super().__init__()
        if knots < 2 or t_max <= 0 or num_slices < 1:
            raise LossInputError(f"SIGReg needs knots >= 2, t_max > 0, num_slices >= 1; got "
                                 f"{knots}, {t_max}, {num_slices}")
        t = torch.linspace(0, t_max, knots)
        dt = t_max / (knots - 1)
        w = torch.full((knots,), 2 * dt)  # trapezoid on [0, t_max], doubled for [-t_max, t_max]
        w[[0, -1]] = dt
        self.register_buffer("t", t, persistent=False)
        self.register_buffer("phi", torch.exp(-t.square() / 2), persistent=False)  # N(0,1) char. function
        self.register_buffer("weights", w * self.phi, persistent=False)  # quadrature x Gaussian window
        self.num_slices = num_slices
        self.gather_distributed = gather_distributed

    def directions(self, dim: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """``(dim, num_slices)`` unit columns, the same on every rank."""
        a = torch.randn(dim, self.num_slices, device=device, generator=generator)
        if self.gather_distributed:
            broadcast_(a)  # rank 0's draw everywhere: one loss, not one per rank
        return a / a.norm(dim=0)

    def forward(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z (..., N, D)`` embeddings (leading axes, e.g. views, are tested separately and
        averaged) -> scalar statistic: O(1) for samples from N(0, I), growing like N
        for any other distribution (N times a fixed distance between characteristic functions)."""
        if z.dim() < 2:
            raise LossInputError(f"SIGReg needs (..., N, D) embeddings, got {tuple(z.shape)}")
        if self.gather_distributed:
            z = gather(z, dim=-2)
        check_batch("SIGReg", z.shape[-2])
        return self.statistic(z, generator)

    def statistic(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The statistic of exactly these rows (no gathering), ``z (..., N, D)`` -> scalar."""
        z = z.float()
        n = z.shape[-2]
        x_t = (z @ self.directions(z.shape[-1], z.device, generator)).unsqueeze(-1) * self.t  # (..., N, M, T)
        err = (x_t.cos().mean(-3) - self.phi).square() + x_t.sin().mean(-3).square()  # (..., M, T)
        return ((err @ self.weights) * n).mean()


class LeJEPALoss(nn.Module):
    """SIGReg on every view + prediction of the global views' mean.

    Args:
        lambda_param: weight of SIGReg; the prediction term gets ``1 - lambda_param``.
        knots, t_max, num_slices, gather_distributed: passed to :class:`SIGReg`.
    """

    def __init__(self, lambda_param: float = 0.05, knots: int = 17, t_max: float = 3.0, num_slices: int = 256,
                 gather_distributed: bool = True):
        super().__init__()
        if not 0.0 <= lambda_param <= 1.0:
            raise LossInputError(f"LeJEPALoss lambda_param must be in [0, 1], got {lambda_param}")
        self.lambda_param = lambda_param
        self.sigreg = SIGReg(knots, t_max, num_slices, gather_distributed)

    def components(self, z: Tensor, n_global: int | None = None,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``{"sigreg": lambda * SIGReg, "prediction": (1 - lambda) * MSE to the global mean}``.

        Args:
            z: ``(V, N, D)`` embeddings of V views of N samples; the first ``n_global`` are
                the global views (all of them when None).
        """
        check_views("LeJEPALoss", z, min_views=1)
        g = z.shape[0] if n_global is None else n_global
        if not 1 <= g <= z.shape[0]:
            raise LossInputError(f"LeJEPALoss n_global must be in [1, {z.shape[0]}], got {n_global}")
        if self.sigreg.gather_distributed:
            z = gather(z, dim=1)
        check_batch("LeJEPALoss", z.shape[1])
        z = z.float()
        centers = z[:g].mean(0)  # (N, D)
        pred = (centers - z).square().mean()
        return {"sigreg": self.lambda_param * self.sigreg.statistic(z, generator),
                "prediction": (1 - self.lambda_param) * pred}

    def forward(self, z: Tensor, n_global: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``z (V, N, D)`` -> scalar; see :meth:`components`."""
        return sum(self.components(z, n_global, generator).values())
