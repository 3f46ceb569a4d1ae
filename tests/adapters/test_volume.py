from __future__ import annotations

import pytest
import torch

from omnipatch.adapters.volume import VolumeAdapter, embed_volume, orthogonal_slices, save_orthogonal_slices
from omnipatch.batch import Batch
from omnipatch.encoder import EncoderConfig
from omnipatch.errors import OmnipatchError
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MaskSpec, make_mask
from omnipatch.model import OmniModel
from tests.adapters.contract import DIM, AdapterContract


class TestVolumeAdapter(AdapterContract):
    mask = MaskSpec("block", 0.5, 2)

    def make_adapter(self):
        return VolumeAdapter(in_chans=2, patch_size=4, dim=DIM, mean=[0.5, 0.2], std=[0.25, 0.1])

    def make_batch(self, B):
        g = torch.Generator().manual_seed(B)
        return Batch(x=torch.rand(B, 2, 8, 12, 16, generator=g), ids=[str(i) for i in range(B)])

    def odd_batch(self):  # 1 x 3 x 5 grid of anisotropic patches
        a = VolumeAdapter(in_chans=2, patch_size=[4, 2, 2], dim=DIM)
        assert a.tokenize(Batch(x=torch.rand(1, 2, 4, 6, 10))).grid == (1, 3, 5)
        return Batch(x=torch.rand(2, 2, 4, 12, 20), ids=["a", "b"])


def test_cube_patch_layout_and_grid():
    a = VolumeAdapter(in_chans=1, patch_size=2, dim=DIM)
    x = torch.arange(4 * 4 * 4, dtype=torch.float32).view(1, 1, 4, 4, 4)
    p = a.patchify(x)
    assert p.shape == (1, 8, 8)
    # first patch = voxels x,y,z in {0,1}^3, ordered (px, py, pz)
    torch.testing.assert_close(p[0, 0], x[0, 0, :2, :2, :2].reshape(-1))
    t = a.tokenize(Batch(x=x))
    assert t.grid == (2, 2, 2)


def test_block_mask_hides_3d_cubes():
    a = VolumeAdapter(in_chans=1, patch_size=2, dim=DIM)
    t = a.tokenize(Batch(x=torch.rand(4, 1, 16, 16, 16)))
    res = make_mask(t, MaskSpec("block", 0.5, 2), torch.Generator().manual_seed(0))
    hidden = res.loss_mask.view(4, 8, 8, 8)
    assert float(hidden.mean()) == pytest.approx(0.5, abs=0.01)
    # blocks: most hidden patches have a hidden neighbour along every axis
    for d in (1, 2, 3):
        both = (hidden * hidden.roll(1, d)).sum() + (hidden * hidden.roll(-1, d)).sum()
        assert both / hidden.sum() > 0.9


def test_wrong_layout_is_a_clear_error():
    a = VolumeAdapter(in_chans=1, patch_size=4, dim=DIM)
    with pytest.raises(OmnipatchError, match="expected input"):
        a.tokenize(Batch(x=torch.rand(2, 1, 8, 8)))
    with pytest.raises(OmnipatchError, match="not a multiple of patch"):
        a.tokenize(Batch(x=torch.rand(2, 1, 8, 8, 6)))
    with pytest.raises(OmnipatchError, match="3 values"):
        VolumeAdapter(in_chans=1, patch_size=[4, 4], dim=DIM)


def _pretrained(in_chans=1, roi=8, patch=4):
    from omnipatch.api import Pretrained

    torch.manual_seed(0)
    a = VolumeAdapter(in_chans=in_chans, patch_size=patch, dim=DIM)
    model = OmniModel({"volume": a}, EncoderConfig(DIM, 1, 2), DecoderConfig(16, 1, 2), {"mae": {"weight": 1.0}},
                      {"volume": MaskSpec("block", 0.75, 2)})
    return Pretrained(model.eval(), {"run": {"data": {"options": {"roi_size": [roi] * 3}}}}, ["volume"])


def test_sliding_window_embedding_of_a_larger_volume():
    pytest.importorskip("monai")
    pre = _pretrained()
    vol = torch.rand(1, 20, 16, 12)
    vol[:, 16:] = 0  # background slab
    res = embed_volume(pre, vol, overlap=0.5, mode="constant")
    assert res.feature_map.shape == (DIM, 5, 4, 3) and res.embedding.shape == (DIM,)
    assert res.windows >= 2 * 2 * 2 and torch.isfinite(res.feature_map).all()
    # a window-aligned cell equals the encoder output of that window alone
    _, h = pre.model.forward_tokens(Batch(x=vol[None, :, :8, :8, :8]), "volume")
    first = h[0].T.reshape(DIM, 2, 2, 2)
    torch.testing.assert_close(res.feature_map[:, 0, 0, 0], first[:, 0, 0, 0], atol=1e-4, rtol=1e-4)
    # the volume embedding averages foreground cells only (the slab x >= 16 is empty)
    torch.testing.assert_close(res.embedding, res.feature_map[:, :4].flatten(1).mean(1), atol=1e-5, rtol=1e-5)
    with pytest.raises(OmnipatchError, match="expects"):
        embed_volume(pre, torch.rand(2, 8, 8, 8))


def test_orthogonal_slices_picture(tmp_path):
    vol = torch.zeros(6, 8, 10)
    vol[3, :, :] = 1
    s = orthogonal_slices(vol)
    assert s["axial"].shape == (8, 6) and s["coronal"].shape == (10, 6) and s["sagittal"].shape == (10, 8)
    assert float(s["sagittal"].min()) == 1.0  # the x = 3 plane
    pre = _pretrained()
    pics = pre.model.reconstruct(Batch(x=torch.rand(2, 1, 8, 8, 8)), "volume", torch.Generator().manual_seed(0))
    assert set(pics) == {"original", "masked", "reconstruction"} and pics["original"].shape == (2, 1, 8, 8, 8)
    out = save_orthogonal_slices(pics, tmp_path / "slices.png")
    assert out.is_file() and out.stat().st_size > 1000
