"""CLIP loss: the paper's pseudocode written out (Radford et al. 2021, Fig. 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnipatch.losses import CLIPLoss


def _clip_reference(a: np.ndarray, b: np.ndarray, t: float) -> float:
    """Fig. 3: logits = (I_e @ T_e.T) * exp(t); loss = (CE(logits, rows) + CE(logits, cols)) / 2."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = a @ b.T / t
    n = len(a)
    loss_i = -np.mean([logits[i, i] - np.log(np.exp(logits[i]).sum()) for i in range(n)])
    loss_t = -np.mean([logits[i, i] - np.log(np.exp(logits[:, i]).sum()) for i in range(n)])
    return (loss_i + loss_t) / 2


@pytest.mark.parametrize("t", [0.07, 0.5])
def test_parity_with_paper_formula(t):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(10, 8, generator=g, dtype=torch.float64), torch.randn(10, 8, generator=g, dtype=torch.float64)
    ours = CLIPLoss(init_temperature=t)(a, b).item()
    assert ours == pytest.approx(_clip_reference(a.numpy(), b.numpy(), t), rel=1e-5, abs=1e-5)


def test_temperature_is_learnt_and_clipped():
    loss = CLIPLoss(init_temperature=0.07)
    assert loss.temperature == pytest.approx(0.07)
    a = torch.randn(8, 4, requires_grad=True)
    loss(a, a + 0.01 * torch.randn(8, 4)).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs() > 0
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1e4))
    assert loss.temperature == pytest.approx(0.01)  # exp(logit_scale) clipped at 100
    fixed = CLIPLoss(learnable=False)
    assert not any(p is fixed.logit_scale for p in fixed.parameters())


def test_only_cross_modal_negatives():
    """Aligned orthogonal pairs: each row sees its partner and B-1 cross-modal negatives, so
    L = -log e^{1/t} / (e^{1/t} + (B - 1)) (NT-Xent would have 2B-2 negatives)."""
    b, t = 5, 0.5
    z = torch.eye(b, 8)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + b - 1))
    assert CLIPLoss(init_temperature=t)(z, z).item() == pytest.approx(expected, rel=1e-6)
