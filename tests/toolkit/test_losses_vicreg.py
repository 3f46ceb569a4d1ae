"""VICReg: parity with lightly's VICRegLoss and with eq. 1-6 of Bardes et al. 2022."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnipatch.losses import VICRegLoss

lightly_loss = pytest.importorskip("lightly.loss")


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
@pytest.mark.parametrize("b,d", [(4, 3), (32, 64)])
def test_parity_with_lightly(weights, b, d):
    g = torch.Generator().manual_seed(b)
    za, zb = torch.randn(b, d, generator=g) * 0.5, torch.randn(b, d, generator=g)
    ours = VICRegLoss(*weights)(za, zb)
    ref = lightly_loss.VICRegLoss(*weights)(za, zb)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_equations_written_out():
    """s = mean (z - z')^2 (eq. 5); v = mean_j max(0, 1 - sqrt(Var z_j + eps)) (eq. 1);
    c = sum_{i != j} Cov_ij^2 / d (eq. 3-4); L = 25 s + 25 (v + v') / 2 + (c + c')."""
    rng = np.random.default_rng(1)
    n, d, eps = 10, 4, 1e-4
    za, zb = rng.normal(size=(n, d)) * 0.3, rng.normal(size=(n, d))

    def v(z):
        return np.mean([max(0.0, 1 - np.sqrt(z[:, j].var(ddof=1) + eps)) for j in range(d)])

    def c(z):
        cov = np.cov(z, rowvar=False)
        return sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d

    s = np.mean((za - zb) ** 2)
    expected = 25 * s + 25 * (v(za) + v(zb)) / 2 + (c(za) + c(zb))
    assert VICRegLoss()(torch.tensor(za), torch.tensor(zb)).item() == pytest.approx(expected, rel=1e-6)


def test_components_are_weighted_and_sum_to_loss():
    za, zb = torch.randn(16, 8), torch.randn(16, 8)
    loss = VICRegLoss(2.0, 3.0, 4.0)
    c = loss.components(za, zb)
    assert set(c) == {"invariance", "variance", "covariance"}
    torch.testing.assert_close(sum(c.values()), loss(za, zb))
    torch.testing.assert_close(c["invariance"], 2.0 * torch.nn.functional.mse_loss(za, zb))
