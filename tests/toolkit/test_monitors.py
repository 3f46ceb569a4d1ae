"""Embedding-health monitors: values on embeddings whose answer is known, and the collapse flag."""

from __future__ import annotations

import math

import pytest
import torch

from omnipatch.errors import OmnipatchError
from omnipatch.train.monitors import alignment, collapsed, describe, health, rankme, uniformity


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rankme_known_values():
    """k equal singular values -> exp(entropy of k equal probabilities) = k (Garrido et al. eq. 1)."""
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=_g()))
    for k in (1, 5, 20):
        assert rankme(q[:, :k] * 3.0) == pytest.approx(k, rel=1e-4)
    z = torch.randn(256, 32, generator=_g())
    s = torch.linalg.svdvals(z)
    p = s / s.sum()
    assert rankme(z) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-5)


def test_alignment_and_uniformity_formulas():
    """Wang & Isola eq. 4-5 (alpha = 2, t = 2) written out with loops."""
    z1, z2 = torch.randn(10, 4, generator=_g(1)), torch.randn(10, 4, generator=_g(2))
    u, v = [x / x.norm(dim=1, keepdim=True) for x in (z1, z2)]
    align = sum(float((u[i] - v[i]).pow(2).sum()) for i in range(10)) / 10
    pairs = [(i, j) for i in range(10) for j in range(i + 1, 10)]
    unif = math.log(sum(math.exp(-2 * float((u[i] - u[j]).pow(2).sum())) for i, j in pairs) / len(pairs))
    assert alignment(z1, z2) == pytest.approx(align, rel=1e-5)
    assert uniformity(z1) == pytest.approx(unif, rel=1e-5)
    assert alignment(z1, z1) == pytest.approx(0.0, abs=1e-6)


def test_health_keys_and_types():
    z1 = torch.randn(32, 16, generator=_g())
    h = health(z1, z1 + 0.1 * torch.randn(32, 16, generator=_g(1)))
    assert set(h) == {"rankme", "rankme_centered", "std", "std_min", "rel_std", "uniformity", "alignment"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in h.values())
    assert "alignment" not in health(z1)


@pytest.mark.parametrize("name,z", [
    ("constant", torch.full((64, 32), 3.0)),
    ("zeros", torch.zeros(64, 32)),
    ("constant + float noise", torch.randn(1, 32, generator=_g()) + 1e-6 * torch.randn(64, 32, generator=_g(1))),
    ("one direction", torch.randn(1, 32, generator=_g()) + torch.randn(64, 1, generator=_g(1))
     * torch.randn(1, 32, generator=_g(2))),
])
def test_collapse_flagged(name, z):
    h = health(z)
    assert collapsed(h), (name, h)
    assert describe(h).endswith("COLLAPSE")


@pytest.mark.parametrize("name,z", [
    ("isotropic Gaussian", torch.randn(64, 32, generator=_g())),
    ("large common offset + spread", 10 * torch.randn(1, 32, generator=_g()) + 0.2 * torch.randn(64, 32, generator=_g(1))),
])
def test_healthy_not_flagged(name, z):
    h = health(z)
    assert not collapsed(h), (name, h)
    assert "COLLAPSE" not in describe(h)


def test_random_encoder_is_healthy_and_a_dead_one_is_not():
    """A real (randomly initialised) encoder on random images is not flagged; the same encoder
    with its output projection zeroed (every sample -> the same vector) is."""
    from omnipatch.encoder import Encoder, EncoderConfig, pool

    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(32, 2, 2)).eval()
    tokens = torch.randn(48, 10, 32, generator=_g())
    with torch.no_grad():
        z = pool(enc(tokens, None))
        assert not collapsed(health(z))
        for p in enc.parameters():
            p.zero_()
        assert collapsed(health(pool(enc(tokens, None)) + 1.0))


def test_bad_input_errors():
    with pytest.raises(OmnipatchError, match=r"B >= 2"):
        health(torch.randn(1, 8))
    with pytest.raises(OmnipatchError, match=r"B >= 2"):
        health(torch.randn(8))
    with pytest.raises(OmnipatchError, match="second view"):
        health(torch.randn(4, 8), torch.randn(4, 9))


def test_single_modality_monitor_on_a_model(png_folder):
    """The engine-facing callable: two augmented views of a real image batch through a tiny
    model's encoder -> the health metrics with alignment; no gradients recorded."""
    from omnipatch.batch import collate
    from omnipatch.modalities.image import SPEC, augment
    from omnipatch.train.monitors import single_modality_monitor
    from tests.toolkit.test_objectives import _tiny_model

    model = _tiny_model({"mae": {"weight": 1.0}})
    ds = SPEC.open_dataset(str(png_folder / "manifest.csv"), image_size=16, channels=1)
    batch = collate([ds[i] for i in range(12)])
    h = single_modality_monitor(model, "image", augment)(batch, _g())
    assert "alignment" in h and h["rankme"] >= 1 and not collapsed(h)
    assert all(p.grad is None for p in model.parameters())
