"""SupCon: eq. 2 of Khosla et al. 2020 (L^sup_out) written out; reduces to NT-Xent without labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnipatch.losses import NTXentLoss, SupConLoss


def _supcon_reference(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """L = mean_i -1/|P(i)| sum_{p in P(i)} log e^{z_i.z_p/t} / sum_{a != i} e^{z_i.z_a/t}."""
    V, B, _ = z.shape
    u = (z / np.linalg.norm(z, axis=-1, keepdims=True)).reshape(V * B, -1)
    lab = np.tile(y, V)
    losses = []
    for i in range(V * B):
        pos = [p for p in range(V * B) if p != i and lab[p] == lab[i]]
        if not pos:
            continue
        denom = sum(math.exp(u[i] @ u[a] / t) for a in range(V * B) if a != i)
        losses.append(-np.mean([math.log(math.exp(u[i] @ u[p] / t) / denom) for p in pos]))
    return float(np.mean(losses))


@pytest.mark.parametrize("v", [1, 2, 3])
def test_parity_with_equation_2(v):
    rng = np.random.default_rng(v)
    z, y = rng.normal(size=(v, 10, 4)), rng.integers(0, 3, size=10)
    ours = SupConLoss(0.3)(torch.tensor(z), torch.tensor(y)).item()
    assert ours == pytest.approx(_supcon_reference(z, y, 0.3), rel=1e-5)


def test_without_labels_is_ntxent():
    z = torch.randn(2, 9, 5)
    torch.testing.assert_close(SupConLoss(0.2)(z), NTXentLoss(0.2)(z[0], z[1]))


def test_label_errors():
    with pytest.raises(ValueError, match=r"labels must be \(4,\)"):
        SupConLoss()(torch.randn(2, 4, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="no anchor has a positive"):
        SupConLoss()(torch.randn(1, 4, 3), torch.arange(4))
    with pytest.raises(ValueError, match="without labels needs at least 2 views"):
        SupConLoss()(torch.randn(1, 4, 3))
