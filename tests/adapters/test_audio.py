import pytest
import torch

from omnipatch.adapters import AudioAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.masking import MaskSpec, make_mask
from tests.adapters.contract import DIM, AdapterContract


def _spec(B, T, C=1, F=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, C, F, generator=g) * 10 - 30  # dB-like values


class TestAudioAdapter(AdapterContract):
    def make_adapter(self):
        return AudioAdapter(in_chans=1, patch_size=[4, 8], dim=DIM, mean=[-30.0], std=[10.0])

    def make_batch(self, B):
        return Batch(x=_spec(B, 12, seed=B), ids=[str(i) for i in range(B)])

    def odd_batch(self):  # ragged clips: T not a multiple of the time patch, padded frames
        mask = torch.zeros(2, 10, dtype=torch.bool)
        mask[1, 5:] = True
        return Batch(x=_spec(2, 10), ids=["a", "b"], x_mask=mask)


class TestStereoAudioAdapter(TestAudioAdapter):
    def make_adapter(self):
        return AudioAdapter(in_chans=2, patch_size=4, dim=DIM, mean=[-30.0, -20.0], std=[10.0, 5.0])

    def make_batch(self, B):
        return Batch(x=_spec(B, 8, C=2, seed=B), ids=[str(i) for i in range(B)])

    def odd_batch(self):
        return Batch(x=_spec(1, 6, C=2), ids=["a"])


def test_layout_time_major_and_matches_grid_reference():
    a = AudioAdapter(in_chans=1, patch_size=[4, 8], dim=DIM)
    x = _spec(2, 8, F=16)
    p = a.patchify(x)
    # (B, T, C, F) -> (B, C, T, F) -> MAE patchify with (pt, pf) patches, time-major order
    ref = torch.einsum("nchpwq->nhwpqc", x.transpose(1, 2).reshape(2, 1, 2, 4, 2, 8)).reshape(2, 4, 32)
    torch.testing.assert_close(p, ref, rtol=0, atol=0)
    torch.testing.assert_close(a.unpatchify(p, (2, 2)), x, rtol=0, atol=0)


def test_ragged_time_is_padded_and_masked():
    a = AudioAdapter(in_chans=1, patch_size=[4, 8], dim=DIM)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 3:] = True  # sample 1 has 3 real frames: only its first time patch holds data
    t = a.tokenize(Batch(x=_spec(2, 10), x_mask=mask))
    assert t.grid == (3, 2)  # 10 frames padded to 12
    assert not t.padding_mask[0].any()  # frames 8-9 are sound: the last patch is data
    assert t.padding_mask[1].tolist() == [False] * 2 + [True] * 4
    assert t.groups.tolist() == [0, 0, 1, 1, 2, 2]
    # padded frames are the normalised mean (0) in the targets, never raw padding values
    frames = a.unpatchify(t.targets, t.grid)
    assert frames[1, 3:].abs().max() == 0
    m = make_mask(t, MaskSpec("random", 0.5), torch.Generator().manual_seed(0))
    assert not (m.visible & t.padding_mask).any()
    assert (m.loss_mask * t.padding_mask).sum() == 0


def test_reconstruction_picture_is_frequency_by_time():
    a = AudioAdapter(in_chans=1, patch_size=[4, 8], dim=DIM)
    x = _spec(2, 8, F=16)
    t = a.tokenize(Batch(x=x))
    pics = a.reconstruct(t.targets, t, torch.zeros(2, t.tokens.shape[1]))
    assert pics["original"].shape == (2, 1, 16, 8)
    # low frequencies at the bottom row
    torch.testing.assert_close(pics["original"][0, 0, -1], a.normalize(x)[0, :, 0, 0])


def test_wrong_layout_is_a_clear_error():
    a = AudioAdapter(in_chans=1, patch_size=[4, 8], dim=DIM)
    with pytest.raises(OmnipatchError, match=r"expected a log-mel batch \(B, T, C=1, F\)"):
        a.tokenize(Batch(x=torch.zeros(2, 1, 8, 16)))
    with pytest.raises(OmnipatchError, match="not a multiple of the frequency patch 8"):
        a.tokenize(Batch(x=torch.zeros(2, 8, 1, 12)))
    with pytest.raises(OmnipatchError, match=r"\[time, frequency\]"):
        AudioAdapter(patch_size=[2, 2, 2], dim=DIM)


def test_utterance_norm_standardises_each_clip_over_its_real_frames():
    ad = AudioAdapter(in_chans=1, patch_size=[4, 8], dim=16, mean=[-40.0], std=[10.0], norm="utterance")
    x = torch.randn(2, 12, 1, 16) * 5 + torch.linspace(-60, -10, 16)  # per-band offsets (channel colour)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 8:] = True  # clip 1: 4 padded frames
    x[1, 8:] = 1e3  # padding must not count
    z = ad.normalize(x, mask)
    torch.testing.assert_close(z[0].mean(0), torch.zeros(1, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[1, :8].mean(0), torch.zeros(1, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[1, :8].std(0, unbiased=False), torch.ones(1, 16), atol=1e-4, rtol=0)
    same = ad.normalize(x + 7.0, mask)  # a louder recording of the same clip: the same input
    torch.testing.assert_close(same[:, :8], z[:, :8], atol=1e-4, rtol=0)
    assert ad.config()["norm"] == "utterance" and "norm" not in AudioAdapter(dim=16).config()
    with pytest.raises(OmnipatchError, match="norm must be one of"):
        AudioAdapter(dim=16, norm="loud")
