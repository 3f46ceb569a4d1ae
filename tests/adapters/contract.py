"""The adapter contract every adapter test subclasses (DESIGN §5).

Subclass :class:`AdapterContract`, implement ``make_adapter()`` and ``make_batch(B)`` (and
optionally ``odd_batch()`` for a batch with an odd/non-square grid or ragged sizes), and
pytest runs every check below against your adapter.
"""

from __future__ import annotations

import math

import torch

from omnipatch.adapter import ModalityAdapter
from omnipatch.batch import Batch
from omnipatch.encoder import Encoder, EncoderConfig
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MaskSpec
from omnipatch.model import OmniModel
from omnipatch.tokens import PatchTokens

DIM = 32


class AdapterContract:
    """Shape, round-trip, gradient, NaN, batch-size-1 and determinism checks."""

    mask = MaskSpec("random", 0.5)
    #: set False for adapters whose targets are not a pure re-arrangement of the input
    exact_roundtrip = True

    def make_adapter(self) -> ModalityAdapter:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_batch(self, B: int) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def odd_batch(self) -> Batch | None:
        return None

    def roundtrip_input(self, batch: Batch, adapter: ModalityAdapter) -> torch.Tensor:
        """What ``patchify`` consumes; by default the normalised batch input."""
        return adapter.normalize(batch.x) if hasattr(adapter, "normalize") else batch.x

    # -- checks ---------------------------------------------------------------------------
    def _tokens(self, B: int = 3) -> tuple[ModalityAdapter, PatchTokens]:
        torch.manual_seed(0)
        a = self.make_adapter()
        return a, a.tokenize(self.make_batch(B))

    def test_shapes(self):
        a, t = self._tokens(3)
        B, L, D = t.tokens.shape
        assert (B, D) == (3, a.dim) and L >= 1
        assert t.modality == a.modality
        assert t.targets is not None and t.targets.shape == (B, L, a.target_dim)
        assert t.pos is not None and t.pos.shape[1:] == (L, D) and t.pos.shape[0] in (1, B)
        if t.grid is not None:
            assert math.prod(t.grid) == L
        if t.padding_mask is not None:
            assert t.padding_mask.shape == (B, L) and t.padding_mask.dtype == torch.bool

    def test_patchify_roundtrip(self):
        if not self.exact_roundtrip:
            return
        a = self.make_adapter()
        b = self.make_batch(2)
        x = self.roundtrip_input(b, a)
        t = a.tokenize(b)
        p = a.patchify(x)
        back = a.unpatchify(p, t.grid) if t.grid is not None else a.unpatchify(p)
        torch.testing.assert_close(back, x, rtol=0, atol=0)

    def test_no_nan(self):
        _, t = self._tokens(3)
        assert torch.isfinite(t.tokens).all()
        assert torch.isfinite(t.targets).all()

    def test_batch_size_one(self):
        _, t = self._tokens(1)
        assert t.tokens.shape[0] == 1

    def test_deterministic_under_seed(self):
        _, t1 = self._tokens(2)
        _, t2 = self._tokens(2)
        torch.testing.assert_close(t1.tokens, t2.tokens)

    def test_odd_batch(self):
        b = self.odd_batch()
        if b is None:
            return
        a = self.make_adapter()
        t = a.tokenize(b)
        assert t.tokens.shape[0] == len(b) and torch.isfinite(t.tokens).all()

    def test_every_parameter_gets_gradient(self):
        torch.manual_seed(0)
        a = self.make_adapter()
        model = OmniModel({a.modality: a}, EncoderConfig(DIM, 1, 2), DecoderConfig(16, 1, 2),
                          {"mae": {"weight": 1.0}}, {a.modality: self.mask})
        assert isinstance(model.encoder, Encoder)
        out = model([self.make_batch(4)], a.modality, torch.Generator().manual_seed(0))
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        missing = [n for n, p in a.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
        assert not missing, f"parameters without gradient: {missing}"

    def test_reconstruction_loss_zero_for_perfect_prediction(self):
        a, t = self._tokens(2)
        mask = torch.ones(t.tokens.shape[:2])
        loss = a.reconstruction_loss(t.targets, t.targets, mask)
        assert float(loss) < 1e-6
