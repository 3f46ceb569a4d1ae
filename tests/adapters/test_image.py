import torch

from omnipatch.adapters import ImageAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from tests.adapters.contract import DIM, AdapterContract


class TestImageAdapter(AdapterContract):
    def make_adapter(self):
        return ImageAdapter(in_chans=3, patch_size=4, dim=DIM, mean=[0.5] * 3, std=[0.25] * 3)

    def make_batch(self, B):
        g = torch.Generator().manual_seed(B)
        return Batch(x=torch.rand(B, 3, 16, 16, generator=g), ids=[str(i) for i in range(B)])

    def odd_batch(self):  # non-square 3 x 5 grid
        return Batch(x=torch.rand(2, 3, 12, 20), ids=["a", "b"])


def test_non_square_roundtrip_and_grid():
    a = ImageAdapter(in_chans=13, patch_size=[2, 4], dim=DIM)
    x = torch.randn(2, 13, 6, 20)
    t = a.tokenize(Batch(x=x))
    assert t.grid == (3, 5) and t.targets.shape == (2, 15, 13 * 8)
    torch.testing.assert_close(a.unpatchify(a.patchify(x), (3, 5)), x, rtol=0, atol=0)


def test_patch_layout_matches_mae_reference():
    # MAE's patchify: 'nchpwq->nhwpqc' on (N, C, h*p, w*p)
    a = ImageAdapter(in_chans=3, patch_size=4, dim=DIM)
    x = torch.randn(2, 3, 8, 12)
    p, h, w = 4, 2, 3
    ref = torch.einsum("nchpwq->nhwpqc", x.reshape(2, 3, h, p, w, p)).reshape(2, h * w, p * p * 3)
    torch.testing.assert_close(a.patchify(x), ref, rtol=0, atol=0)


def test_wrong_shape_is_a_clear_error():
    a = ImageAdapter(in_chans=3, patch_size=4, dim=DIM)
    import pytest

    with pytest.raises(OmnipatchError, match="expected input"):
        a.tokenize(Batch(x=torch.rand(2, 1, 16, 16)))
    with pytest.raises(OmnipatchError, match="not a multiple of patch"):
        a.tokenize(Batch(x=torch.rand(2, 3, 15, 16)))
