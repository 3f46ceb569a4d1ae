"""The cross-modal head learns: regression test for a CLIP term stuck at ln(B).

With a single linear projection per modality, pooled embeddings of a freshly initialised
encoder (cosine ~0.999 between samples) kept the CLIP loss at exactly ln(B); the
projection heads' batch norm removes the shared component so the loss falls at once.
"""

import math

import pytest
import torch

from omnipatch.adapters.image import ImageAdapter
from omnipatch.batch import Batch
from omnipatch.encoder import EncoderConfig
from omnipatch.errors import OmnipatchError
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MaskSpec
from omnipatch.model import CrossModalHead, OmniModel
from omnipatch.train.paired import PairedBatch, paired_step


def _model(views: str) -> OmniModel:
    ad = {m: ImageAdapter(1, 4, 64, modality=m) for m in ("a", "b")}
    return OmniModel(ad, EncoderConfig(64, 2, 4), DecoderConfig(32, 1, 2), {"mae": {"weight": 0.0}},
                     {m: MaskSpec("random", 0.5) for m in ad}, cross={"proj_dim": 32, "views": views})


@pytest.mark.parametrize("views", ["full", "masked"])
def test_clip_term_learns_instance_pairs(views):
    torch.manual_seed(0)
    B = 32
    x = torch.rand(B, 1, 16, 16)
    pb = PairedBatch({"a": Batch(x), "b": Batch(x.transpose(-1, -2).flip(-1))},
                     {"a": torch.arange(B), "b": torch.arange(B)}, [str(i) for i in range(B)])
    model = _model(views)
    step = paired_step(model, {})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        loss = step(pb, g)["cross"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * math.log(B) < losses[0], losses[::5]  # chance is ln(B)
    model.eval()
    with torch.no_grad():  # the trained shared space pairs each a with its own b
        za = torch.nn.functional.normalize(model.embed(pb.batches["a"], "a", space="cross"), dim=1)
        zb = torch.nn.functional.normalize(model.embed(pb.batches["b"], "b", space="cross"), dim=1)
    assert (za @ zb.T).argmax(1).eq(torch.arange(B)).float().mean() > 0.5


def test_cross_head_rejects_unknown_views():
    with pytest.raises(OmnipatchError, match="views must be 'full' or 'masked'"):
        CrossModalHead(["a", "b"], 64, views="both")


def test_separate_encoders_learn_and_round_trip(tmp_path):
    torch.manual_seed(0)
    ad = {m: ImageAdapter(1, 4, 64, modality=m) for m in ("a", "b")}
    model = OmniModel(ad, EncoderConfig(64, 2, 4), DecoderConfig(32, 1, 2), {"mae": {"weight": 1.0}},
                      {m: MaskSpec("random", 0.5) for m in ad}, cross={"proj_dim": 32}, separate_encoders=True)
    assert model.encoder is None and model.encoder_for("a") is not model.encoder_for("b")
    B = 16
    x = torch.rand(B, 1, 16, 16)
    pb = PairedBatch({"a": Batch(x), "b": Batch(x.flip(-1))}, {"a": torch.arange(B), "b": torch.arange(B)},
                     [str(i) for i in range(B)])
    terms = paired_step(model, {})(pb, torch.Generator().manual_seed(0))
    terms["loss"].backward()
    for m in ("a", "b"):  # each encoder gets gradients from its own modality
        assert model.encoders[m].blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    again = OmniModel.from_config(model.config())
    assert again.separate_encoders and set(again.encoders) == {"a", "b"}
    again.load_state_dict(model.state_dict())
    model.eval(), again.eval()
    torch.testing.assert_close(again.embed(pb.batches["b"], "b", space="cross"), model.embed(pb.batches["b"], "b", space="cross"))


def test_common_rows_and_clip_on_complete_pairs_only():
    from omnipatch.train.paired import common_rows

    torch.manual_seed(0)
    x = torch.rand(5, 1, 16, 16)
    # pair rows 0..4; modality a has rows 0, 1, 3, 4; modality b has rows 1, 2, 3, 4
    pb = PairedBatch({"a": Batch(x[[0, 1, 3, 4]], ["0", "1", "3", "4"]), "b": Batch(x[[1, 2, 3, 4]].flip(-1))},
                     {"a": torch.tensor([0, 1, 3, 4]), "b": torch.tensor([1, 2, 3, 4])}, [str(i) for i in range(5)])
    common = common_rows(pb)
    assert common["a"].tolist() == [1, 2, 3] and common["b"].tolist() == [0, 2, 3]  # pair rows 1, 3, 4
    sub = pb.batches["a"].select(common["a"])
    assert sub.ids == ["1", "3", "4"] and torch.equal(sub.x, x[[1, 3, 4]])
    model = _model("full").eval()
    terms = paired_step(model, {})(pb, torch.Generator().manual_seed(0))
    za = model.embed(sub, "a")
    zb = model.embed(pb.batches["b"].select(common["b"]), "b")
    torch.testing.assert_close(terms["cross"], model.cross({"a": za, "b": zb}))
    one = PairedBatch({"a": Batch(x[:2]), "b": Batch(x[2:4])}, {"a": torch.tensor([0, 1]), "b": torch.tensor([1, 2])},
                      ["0", "1", "2"])
    assert "cross" not in paired_step(model, {})(one, torch.Generator().manual_seed(0))  # one pair: no CLIP term
