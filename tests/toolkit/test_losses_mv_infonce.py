"""MV-InfoNCE: the formula written out (Koromilas et al. 2025, arXiv:2507.06979, Sec. IV)
and checked against the authors' formulation in the reference repository."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnipatch.losses import MVInfoNCELoss


def _mv_infonce_reference(z: np.ndarray, t: float) -> float:
    """L = -1/B sum_i log[ sum_{l != l'} e^{u_il.u_il'/t} / sum_l sum_{(j,m) != (i,l)} e^{u_il.u_jm/t} ]."""
    V, B, _ = z.shape
    u = z / np.linalg.norm(z, axis=-1, keepdims=True)
    total = 0.0
    for i in range(B):
        pos = sum(math.exp(u[v, i] @ u[m, i] / t) for v in range(V) for m in range(V) if m != v)
        neg = sum(math.exp(u[v, i] @ u[m, j] / t) for v in range(V) for m in range(V) for j in range(B)
                  if (j, m) != (i, v))
        total += -math.log(pos / neg)
    return total / B


@pytest.mark.parametrize("v", [2, 3, 5])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_parity_with_formula(v, t):
    z = np.random.default_rng(v).normal(size=(v, 6, 4))
    ours = MVInfoNCELoss(t)(torch.tensor(z)).item()
    assert ours == pytest.approx(_mv_infonce_reference(z, t), rel=1e-5, abs=1e-5)


def test_stable_at_low_temperature():
    """Log-space computation: no overflow where a plain exp would give inf."""
    z = torch.randn(4, 8, 16)
    assert torch.isfinite(MVInfoNCELoss(1e-3)(z))
