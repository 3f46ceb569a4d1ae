"""NT-Xent: parity with lightly's NTXentLoss (SimCLR, Chen et al. 2020, eq. 1)."""

from __future__ import annotations

import math

import pytest
import torch

lightly_loss = pytest.importorskip("lightly.loss")

from omnipatch.losses import NTXentLoss  # noqa: E402


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("b,d", [(2, 4), (16, 32)])
def test_parity_with_lightly(temperature, b, d):
    g = torch.Generator().manual_seed(b)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    ours = NTXentLoss(temperature)(z1, z2)
    ref = lightly_loss.NTXentLoss(temperature=temperature)(z1, z2)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_perfect_alignment_with_orthogonal_negatives():
    """Identical views, mutually orthogonal samples: l = -log e^{1/t} / (e^{1/t} + (2B-2) e^0)."""
    b, t = 4, 0.5
    z = torch.eye(b, 8)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * b - 2))
    assert NTXentLoss(t)(z, z).item() == pytest.approx(expected, rel=1e-6)
