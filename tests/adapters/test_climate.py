from __future__ import annotations

import math

import pytest
import torch

from omnipatch.adapters.climate import ClimateAdapter, save_maps
from omnipatch.batch import Batch
from omnipatch.encoder import EncoderConfig
from omnipatch.errors import OmnipatchError
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MaskSpec, make_mask
from omnipatch.model import OmniModel
from tests.adapters.contract import DIM, AdapterContract

VARS = ["tas", "z500", "sst"]


def climate_batch(B: int, T: int = 1, H: int = 8, W: int = 12, V: int = 3, seed: int = 0) -> Batch:
    """``(B, V + 2, T, H, W)``: random fields around 280, then lat / lon channels (degrees)."""
    g = torch.Generator().manual_seed(seed)
    v = 280 + 5 * torch.randn(B, V, T, H, W, generator=g)
    lat = torch.linspace(-60, 60, H).view(1, 1, 1, H, 1).expand(B, 1, T, H, W)
    lon = torch.linspace(0, 330, W).view(1, 1, 1, 1, W).expand(B, 1, T, H, W)
    return Batch(x=torch.cat([v, lat, lon], 1), ids=[str(i) for i in range(B)])


class TestClimateAdapter(AdapterContract):
    mask = MaskSpec("group", 0.5)

    def make_adapter(self):
        return ClimateAdapter(VARS, patch_size=4, dim=DIM, mean=[280.0] * 3, std=[5.0] * 3)

    def make_batch(self, B):
        return climate_batch(B, seed=B)

    def odd_batch(self):  # 7 x 10 grid (not multiples of 4), a window of 2, NaN land
        b = climate_batch(2, T=2, H=7, W=10)
        b.x[:, 0, :, :3, :3] = float("nan")
        return b


def _adapter(**kw):
    torch.manual_seed(0)
    return ClimateAdapter(VARS, patch_size=4, dim=DIM, mean=[280.0] * 3, std=[5.0] * 3, **kw)


def test_tokens_per_variable_groups_and_coords():
    a = _adapter()
    t = a.tokenize(climate_batch(2, T=2))
    assert t.grid == (3, 2, 2, 3) and t.tokens.shape == (2, 36, DIM)
    assert t.groups.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert t.coords.shape == (2, 36, 3)
    # the first token's centre: mean latitude of rows 0..3, mean longitude of columns 0..3
    lat = torch.linspace(-60, 60, 8)[:4].mean()
    lon = torch.linspace(0, 330, 12)[:4].mean()
    torch.testing.assert_close(t.coords[0, 0], torch.stack([lat, lon, torch.tensor(0.0)]))
    assert float(t.coords[0, 6, 2]) == 1.0  # second time step
    assert t.targets.shape == (2, 36, 2 * 16) and a.target_dim == 32


def test_nan_cells_become_padding_and_zero_weight():
    a = _adapter()
    b = climate_batch(1)
    b.x[0, 0, 0, :4, :4] = float("nan")  # one whole patch of tas
    b.x[0, 1, 0, 0, 5] = float("nan")  # one cell of z500
    t = a.tokenize(b)
    assert t.padding_mask is not None and t.padding_mask[0].nonzero().flatten().tolist() == [0]
    assert torch.isfinite(t.tokens).all() and torch.isfinite(t.targets).all()
    w = t.targets[0, 6 + 1, 16:]  # z500's token (0, 1): cell (0, 1) of the patch missing
    assert float(w[1]) == 0.0 and bool((w[[0, 2, 3]] > 0).all())
    back = a.unpatchify(t.targets, t.grid)
    assert torch.isnan(back[0, 0, 0, :4, :4]).all() and torch.isnan(back[0, 1, 0, 0, 5])
    assert int(torch.isnan(back).sum()) == 17


def test_all_nan_sample_never_gives_nan_loss():
    torch.manual_seed(0)
    a = _adapter()
    model = OmniModel({"climate": a}, EncoderConfig(DIM, 1, 2), DecoderConfig(16, 1, 2), {"mae": {"weight": 1.0}},
                      {"climate": MaskSpec("random", 0.5)})
    b = climate_batch(2, H=6, W=10)  # ragged edge: padded cells are missing data
    b.x[0, :3] = float("nan")  # sample 0 is entirely missing
    out = model([b], "climate", torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and float(out["loss"].detach()) > 0
    out["loss"].backward()


def test_loss_is_latitude_weighted():
    a = _adapter()
    t = a.tokenize(climate_batch(1))
    P = a.values_per_patch
    w = t.targets[..., P:]
    lat = torch.linspace(-60, 60, 8)
    cosw = torch.cos(torch.deg2rad(lat))
    assert float(w[0, 0, 0] / w[0, 0, 4]) == pytest.approx(float(cosw[0] / cosw[1]), rel=1e-5)
    pred = t.targets.clone()
    err = torch.zeros(8, 12)
    err[0] = 1.0  # unit error on the southernmost row (60 S) only
    pred[..., :P] += a.patchify(err.view(1, 1, 1, 8, 12).expand(1, 3, 1, 8, 12))
    mask = torch.ones(1, t.tokens.shape[1])
    expected = float(cosw[0] / cosw.mean() * 12 * 3 / (8 * 12 * 3))
    assert float(a.reconstruction_loss(pred, t.targets, mask)) == pytest.approx(expected, rel=1e-5)
    plain = _adapter(lat_weighted=False)
    assert float(plain.reconstruction_loss(pred, plain.tokenize(climate_batch(1)).targets, mask)) == pytest.approx(1 / 8)


def test_group_mask_hides_whole_variables():
    a = _adapter()
    t = a.tokenize(climate_batch(4))
    res = make_mask(t, MaskSpec("group", 0.6), torch.Generator().manual_seed(0))
    hidden = res.loss_mask.view(4, 3, 6)
    per_var = hidden.mean(-1)
    assert bool(((per_var == 0) | (per_var == 1)).all()) and (per_var.sum(1) == 2).all()


def test_new_variable_set_keeps_known_embeddings_and_checkpoint_config():
    a = _adapter()
    tas = a.var_embed["v_tas"].detach().clone()
    a.set_variables(["tas", "u850"], mean=[280.0, 0.0], std=[5.0, 10.0])
    assert a.variables == ["tas", "u850"] and set(a.var_embed) == {"v_tas", "v_u850"}
    torch.testing.assert_close(a.var_embed["v_tas"].detach(), tas)
    t = a.tokenize(climate_batch(2, V=2))
    assert t.grid[0] == 2
    b = ClimateAdapter(**{k: v for k, v in a.config().items()})
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.tokenize(climate_batch(2, V=2)).tokens, t.tokens)
    with pytest.raises(OmnipatchError, match="expected input"):
        a.tokenize(climate_batch(2, V=3))
    with pytest.raises(OmnipatchError, match="duplicate"):
        a.set_variables(["tas", "tas"])


def test_random_crop_views_keep_geography():
    a = _adapter()
    full = climate_batch(1, H=8, W=12)
    crop = full.replace(x=full.x[..., 4:8, 4:12])
    tf, tc = a.tokenize(full), a.tokenize(crop)
    # the crop's first patch sits where the full field's token (row 1, col 1) is: same position
    torch.testing.assert_close(tc.pos[0, 0], tf.pos[0, 1 * 3 + 1])


def test_maps_physical_units_and_picture(tmp_path):
    a = _adapter()
    b = climate_batch(2)
    b.x[:, 2, :, :2, :2] = float("nan")
    t = a.tokenize(b)
    mask = torch.zeros(2, t.tokens.shape[1])
    mask[:, 6:12] = 1  # hide z500
    P = a.values_per_patch
    maps = a.maps(t.targets[..., :P] * 0, t, mask, physical=True)
    torch.testing.assert_close(maps["original"][:, :2], b.x[:, :2], equal_nan=True)
    assert torch.isnan(maps["masked"][:, 1]).all() and torch.isfinite(maps["masked"][:, 0]).all()
    torch.testing.assert_close(maps["reconstruction"][:, 1], torch.full_like(b.x[:, 1], 280.0))
    pics = a.reconstruct(t.targets[..., :P], t, mask)
    assert all(torch.isfinite(v).all() for v in pics.values())
    out = save_maps(maps, tmp_path / "maps.png", VARS)
    assert out.is_file() and out.stat().st_size > 1000


def test_pos_embedding_width_and_time_patch():
    a = ClimateAdapter(["x"], patch_size=[2, 3], dim=30, time_patch=2)
    t = a.tokenize(climate_batch(1, T=4, H=4, W=6, V=1))
    assert t.grid == (1, 2, 2, 2) and t.tokens.shape == (1, 8, 30) and a.values_per_patch == 12
    with pytest.raises(OmnipatchError, match="time_patch"):
        a.tokenize(climate_batch(1, T=3, H=4, W=6, V=1))
    assert math.prod(t.grid) == t.tokens.shape[1]
