"""Barlow Twins: parity with lightly's BarlowTwinsLoss and with eq. 1 of Zbontar et al. 2021."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnipatch.losses import BarlowTwinsLoss

lightly_loss = pytest.importorskip("lightly.loss")


@pytest.mark.parametrize("lam", [5e-3, 0.1])
@pytest.mark.parametrize("b,d", [(8, 4), (32, 64)])
def test_parity_with_lightly(lam, b, d):
    g = torch.Generator().manual_seed(d)
    za, zb = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g) + 2
    ours = BarlowTwinsLoss(lam)(za, zb)
    ref = lightly_loss.BarlowTwinsLoss(lambda_param=lam)(za, zb)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)


def test_equation_1_written_out():
    """C_ij = sum_b za_bi zb_bj / (sqrt(sum_b za_bi^2) sqrt(sum_b zb_bj^2)) on batch-centred
    inputs; L = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2."""
    rng = np.random.default_rng(0)
    za, zb, lam = rng.normal(size=(20, 6)), rng.normal(size=(20, 6)), 0.05
    a, b = za - za.mean(0), zb - zb.mean(0)
    c = (a.T @ b) / np.outer(np.sqrt((a**2).sum(0)), np.sqrt((b**2).sum(0)))
    expected = sum((1 - c[i, i]) ** 2 for i in range(6)) + lam * sum(
        c[i, j] ** 2 for i in range(6) for j in range(6) if i != j)
    ours = BarlowTwinsLoss(lam, eps=0.0)(torch.tensor(za), torch.tensor(zb)).item()
    assert ours == pytest.approx(expected, rel=1e-5)


def test_components_sum_to_loss_and_identical_whitened_views_score_zero():
    loss = BarlowTwinsLoss(0.01, eps=0.0)
    x = torch.randn(64, 8, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))  # orthonormal, centred columns
    z = q * 8  # (batch-)standardised, decorrelated: C = I for identical views
    c = loss.components(z, z)
    assert float(sum(c.values())) == pytest.approx(float(loss(z, z)))
    assert float(c["invariance"]) < 1e-6
