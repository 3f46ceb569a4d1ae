import pytest
import torch

from omnipatch.adapters import VideoAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.masking import MaskSpec, make_mask
from tests.adapters.contract import DIM, AdapterContract


class TestVideoAdapterTube(AdapterContract):
    mask = MaskSpec("tube", 0.75)

    def make_adapter(self):
        return VideoAdapter(in_chans=3, patch_size=[2, 4, 4], dim=DIM, mean=[0.4, 0.5, 0.6], std=[0.2] * 3)

    def make_batch(self, B):
        g = torch.Generator().manual_seed(B)
        return Batch(x=torch.rand(B, 3, 4, 8, 8, generator=g), ids=[str(i) for i in range(B)])

    def odd_batch(self):  # 3 x 3 x 5 tubelet grid, grey
        a = VideoAdapter(in_chans=3, patch_size=[2, 4, 4], dim=DIM)
        return Batch(x=torch.rand(2, a.in_chans, 6, 12, 20), ids=["a", "b"])


class TestVideoAdapterRandom(TestVideoAdapterTube):
    mask = MaskSpec("random", 0.9)

    def make_adapter(self):
        return VideoAdapter(in_chans=1, patch_size=4, dim=DIM)

    def make_batch(self, B):
        g = torch.Generator().manual_seed(B)
        return Batch(x=torch.rand(B, 1, 2, 8, 12, generator=g), ids=[str(i) for i in range(B)])

    def odd_batch(self):
        return Batch(x=torch.rand(1, 1, 6, 4, 20), ids=["a"])


def test_tubelet_layout_matches_videomae_reference():
    a = VideoAdapter(in_chans=3, patch_size=[2, 4, 4], dim=DIM)
    x = torch.randn(2, 3, 4, 8, 12)
    # VideoMAE: (B, C, T*t, H*p, W*p) -> (B, T*H*W, t*p*p*C), time-major
    ref = x.reshape(2, 3, 2, 2, 2, 4, 3, 4).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(2, 12, 2 * 4 * 4 * 3)
    torch.testing.assert_close(a.patchify(x), ref, rtol=0, atol=0)
    torch.testing.assert_close(a.unpatchify(a.patchify(x), (2, 2, 3)), x, rtol=0, atol=0)


def test_tube_mask_hides_the_same_positions_at_every_time_step():
    a = VideoAdapter(in_chans=1, patch_size=[2, 4, 4], dim=DIM)
    t = a.tokenize(Batch(x=torch.rand(3, 1, 8, 16, 16)))
    assert t.grid == (4, 4, 4) and t.groups.tolist() == [i for i in range(4) for _ in range(16)]
    m = make_mask(t, MaskSpec("tube", 0.75), torch.Generator().manual_seed(0))
    vis = m.visible.view(3, 4, 16)
    assert (vis == vis[:, :1]).all()  # same spatial mask over time
    assert vis[:, 0].sum(1).tolist() == [4, 4, 4]


def test_wrong_shape_is_a_clear_error():
    a = VideoAdapter(in_chans=3, patch_size=[2, 4, 4], dim=DIM)
    with pytest.raises(OmnipatchError, match=r"expected clips \(B, C=3, T, H, W\)"):
        a.tokenize(Batch(x=torch.rand(2, 3, 8, 8)))
    with pytest.raises(OmnipatchError, match="not a multiple of patch"):
        a.tokenize(Batch(x=torch.rand(2, 3, 3, 8, 8)))
