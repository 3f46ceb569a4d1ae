"""Objectives: every registered one builds from its name, declares its views, returns named
finite terms whose gradients reach its heads; compositions train end to end."""

from __future__ import annotations

import json

import pytest
import torch

from omnipatch.errors import OmnipatchError
from omnipatch.objectives import OBJECTIVES, View

ENC = 32
JOINT = {  # name -> term names it logs
    "contrastive": {"contrastive"},
    "clip": {"clip"},
    "barlow": {"barlow_inv", "barlow_red"},
    "vicreg": {"vicreg_inv", "vicreg_var", "vicreg_cov"},
    "sigreg": {"sigreg", "lejepa_pred"},
    "mv_infonce": {"mv_infonce"},
    "dhel": {"dhel"},
    "supcon": {"supcon"},
}


def _views(n: int, b: int = 8, labels: bool = True) -> list[View]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(b, ENC, generator=g)
    y = torch.arange(b) % 3 if labels else None
    return [View(None, None, None, (base + 0.3 * torch.randn(b, ENC, generator=g)).requires_grad_(True), y)
            for _ in range(n)]


def test_registry_lists_every_objective_with_a_description():
    desc = OBJECTIVES.describe()
    assert set(JOINT) | {"mae"} <= set(desc)
    assert all(len(d) > 20 for d in desc.values())


@pytest.mark.parametrize("name", JOINT)
def test_joint_objective_terms_and_gradients(name):
    obj = OBJECTIVES.get(name)(ENC)
    views = _views(obj.n_views)
    terms = obj(None, views)
    assert set(terms) == JOINT[name]
    total = sum(terms.values())
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in obj.parameters() if p.requires_grad)
    assert views[0].pooled.grad is not None and views[0].pooled.grad.abs().sum() > 0


def test_multiview_objectives_declare_their_views():
    assert OBJECTIVES.get("dhel")(ENC).n_views == 4 and OBJECTIVES.get("mv_infonce")(ENC).n_views == 4
    assert OBJECTIVES.get("dhel")(ENC, n_views=6).n_views == 6
    assert OBJECTIVES.get("sigreg")(ENC, n_views=3).n_views == 3
    with pytest.raises(OmnipatchError, match="n_views >= 2"):
        OBJECTIVES.get("dhel")(ENC, n_views=1)
    with pytest.raises(OmnipatchError, match="needs 4 views per batch, got 2"):
        OBJECTIVES.get("dhel")(ENC)(None, _views(2))


def test_supcon_needs_labels():
    obj = OBJECTIVES.get("supcon")(ENC)
    with pytest.raises(OmnipatchError, match="'supcon' needs labels"):
        obj(None, _views(2, labels=False))


def test_objective_uses_only_its_own_views():
    """With more views than it needs (another objective asked for them), a two-view
    objective scores the first two."""
    torch.manual_seed(0)
    obj = OBJECTIVES.get("barlow")(ENC).eval()  # eval: BatchNorm statistics do not move
    views = _views(4)
    a = obj(None, views)
    b = obj(None, views[:2])
    torch.testing.assert_close(a["barlow_inv"], b["barlow_inv"])


def _tiny_model(objectives: dict):
    from omnipatch.adapters.image import ImageAdapter
    from omnipatch.encoder import EncoderConfig
    from omnipatch.heads import DecoderConfig
    from omnipatch.masking import MaskSpec
    from omnipatch.model import OmniModel

    torch.manual_seed(0)
    adapter = ImageAdapter(in_chans=1, patch_size=4, dim=32)
    return OmniModel({"image": adapter}, EncoderConfig(32, 1, 2), DecoderConfig(16, 1, 2), objectives,
                     {"image": MaskSpec("random", 0.5)})


def test_composition_weights_and_logs_every_term():
    """`mae+sigreg:0.5` with a 3-view SIGReg: the model asks for 3 views, returns every term,
    and the loss is the weighted sum (the engine logs each term)."""
    from omnipatch.batch import Batch
    from omnipatch.config import parse_objectives

    objectives = parse_objectives("mae+sigreg:0.5")
    objectives["sigreg"]["n_views"] = 3
    model = _tiny_model(objectives)
    assert model.n_views == 3
    g = torch.Generator().manual_seed(0)
    views = [Batch(x=torch.rand(6, 1, 16, 16, generator=g)) for _ in range(model.n_views)]
    terms = model(views, "image", torch.Generator().manual_seed(1))
    assert set(terms) == {"mae", "sigreg", "lejepa_pred", "loss"}
    torch.testing.assert_close(terms["loss"], terms["mae"] + 0.5 * (terms["sigreg"] + terms["lejepa_pred"]))
    terms["loss"].backward()
    assert model.objectives["sigreg"].projector.net[0].weight.grad is not None


def _cfg(src, objectives: dict, steps: int = 2):
    from omnipatch.config import Config

    c = Config()
    c.data.source = str(src)
    c.data.options = {"image_size": 16, "patch_size": 4, "channels": 1}
    c.model.preset = "micro"
    c.model.decoder_dim, c.model.decoder_depth = 32, 1
    c.objectives = objectives
    c.train.steps, c.train.batch_size, c.train.log_every, c.train.warmup_steps = steps, 8, 1, 1
    return c


@pytest.mark.slow
def test_composition_trains_and_logs_every_term(png_folder, tmp_path):
    """Through the engine: `mae+sigreg:0.5` with a 3-view SIGReg; every term is in the
    metrics log and the loss is the weighted sum."""
    from omnipatch.config import parse_objectives
    from omnipatch.train.pretrain import pretrain

    objectives = parse_objectives("mae+sigreg:0.5")
    objectives["sigreg"]["n_views"] = 3
    run = tmp_path / "run"
    pretrain(_cfg(png_folder / "manifest.csv", objectives), run, quiet=True)
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rec) == 2
    for r in rec:
        assert {"mae", "sigreg", "lejepa_pred", "loss"} <= set(r)
        assert r["loss"] == pytest.approx(r["mae"] + 0.5 * (r["sigreg"] + r["lejepa_pred"]), rel=1e-4)
