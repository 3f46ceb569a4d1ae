"""MV-DHEL: the formula written out (Koromilas et al. 2025, arXiv:2507.06979, Sec. IV)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnipatch.losses import MVDHELLoss


def _mv_dhel_reference(z: np.ndarray, t: float) -> float:
    """L = -1/B sum_i log[ sum_{l < l'} e^{u_il.u_il'/t} / prod_l sum_{j != i} e^{u_il.u_jl/t} ]."""
    V, B, _ = z.shape
    u = z / np.linalg.norm(z, axis=-1, keepdims=True)
    total = 0.0
    for i in range(B):
        pos = sum(math.exp(u[v, i] @ u[m, i] / t) for v in range(V) for m in range(v + 1, V))
        energy = 1.0
        for v in range(V):
            energy *= sum(math.exp(u[v, i] @ u[v, j] / t) for j in range(B) if j != i)
        total += -math.log(pos / energy)
    return total / B


@pytest.mark.parametrize("v", [2, 3, 5])
@pytest.mark.parametrize("t", [0.2, 0.7])
def test_parity_with_formula(v, t):
    z = np.random.default_rng(v).normal(size=(v, 7, 5))
    ours = MVDHELLoss(t)(torch.tensor(z)).item()
    assert ours == pytest.approx(_mv_dhel_reference(z, t), rel=1e-5, abs=1e-5)


def test_positives_are_not_in_the_denominator():
    """Decoupling: moving one view onto its partner changes the alignment term only, so the
    loss drops by exactly the change of the positive log-sum (the within-view energy of
    view 0 is untouched when only view 1 moves)."""
    z = torch.randn(2, 6, 4, dtype=torch.float64)
    loss = MVDHELLoss(0.5)
    moved = z.clone()
    moved[1] = z[0]  # view 1 := view 0; view 1's energy becomes view 0's
    u = torch.nn.functional.normalize(z, dim=-1)
    pos_before = (u[0] * u[1]).sum(-1) / 0.5
    pos_after = torch.full_like(pos_before, 1 / 0.5)
    within = u @ u.transpose(1, 2) / 0.5
    eye = torch.eye(6, dtype=torch.bool)
    e = torch.logsumexp(within.masked_fill(eye, float("-inf")), dim=2)
    expected_delta = ((e[0] - e[1]) - (pos_after - pos_before)).mean()
    torch.testing.assert_close(loss(moved) - loss(z), expected_delta.float(), rtol=1e-5, atol=1e-5)
