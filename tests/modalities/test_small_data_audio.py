"""A stranger's small audio data set: 12 short 8 kHz WAV clips (0.3-0.6 s) through pretrain /
embed / eval with no data options, the scan's fits, padding and the raw-feature baseline."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from omnipatch.batch import Sample
from omnipatch.modalities.audio import SPEC, AudioDataset
from omnipatch.modalities.audio_scan import empty_mel_bands, fit_n_mels
from omnipatch.train.plan import scan
from tests.modalities.cli_flow import assert_model_option_refused, embed_and_eval, pretrain_defaults

pytestmark = pytest.mark.integration


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    """12 telephone-rate clips, low (400 Hz) or high (2000 Hz) tones, 0.30-0.60 s long."""
    d = tmp_path_factory.mktemp("calls")
    for i in range(12):
        sf.write(d / f"call{i:02d}.wav", tone(400 if i % 2 else 2000, 0.30 + 0.3 * i / 11, 8000), 8000,
                 subtype="PCM_16")
    return d


def test_scan_fits_rate_window_and_keeps_valid_bands(calls):
    plan = scan(SPEC, calls, {})
    assert plan.facts["sample rates"] == [8000] and plan.facts["files"] == 12
    assert plan.facts["seconds"][0] == pytest.approx(0.3, abs=1e-3) and plan.facts["seconds"][2] == pytest.approx(0.6)
    assert plan.fits["sample_rate"]["value"] == 8000 and "8000 Hz" in plan.fits["sample_rate"]["reason"]
    assert plan.fits["seconds"]["value"] == 0.5  # median 0.45 s -> 0.5 s
    assert "padded" in plan.fits["seconds"]["reason"]
    assert "n_mels" not in plan.fits  # 64 bands are all non-empty at 8 kHz
    fixed = scan(SPEC, calls, {"sample_rate": 16000, "seconds": 1.0})
    assert "sample_rate" not in fixed.fits and "seconds" not in fixed.fits


def test_n_mels_fit_keeps_every_band_filled():
    assert empty_mel_bands(4000, 64) > 0 and fit_n_mels(4000, 64, 16) == 48
    assert empty_mel_bands(4000, 48) == 0 and fit_n_mels(16000, 64, 16) == 64


def test_scan_clamps_long_and_tiny_clips(tmp_path):
    for i, s in enumerate((0.05, 30.0, 40.0)):
        sf.write(tmp_path / f"a{i}.flac", tone(440, s, 16000), 16000)
    plan = scan(SPEC, tmp_path, {})
    assert plan.fits["seconds"]["value"] == 10.0 and "sample_rate" not in plan.fits
    assert plan.fits["min_seconds"]["value"] == 0.05
    ds = SPEC.open_dataset(str(tmp_path / "a0.flac"), **{**SPEC.options, **plan.options()})
    assert ds[0].x_mask.sum() > 0  # the 50 ms clip is read, padded to 10 s


def test_short_clips_are_padded_and_masked(calls):
    ds = AudioDataset(calls / "call00.wav", sample_rate=8000, seconds=0.5)  # a 0.30 s clip
    s = ds[0]
    assert s.x.shape == (50, 1, 64)  # 0.5 s at a 10 ms hop
    assert int((~s.x_mask).sum()) in (30, 31) and s.x_mask[-1]


def test_raw_features_are_band_mean_and_std_without_padding():
    x = torch.zeros(6, 1, 4)
    x[:4, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None]  # sound frames 1..4 in every band
    x[4:] = -100.0  # padding
    mask = torch.tensor([False] * 4 + [True] * 2)
    f = SPEC.raw_features(Sample(x=x, id="a", x_mask=mask))
    assert f.shape == (2 * 4,)
    assert np.allclose(f[:4], 2.5) and np.allclose(f[4:], np.std([1, 2, 3, 4]))
    assert SPEC.raw_features(Sample(x=x, id="b")).shape == (8,)
    assert SPEC.raw_name == "log-mel mean+std"


def test_cli_twelve_8khz_clips_pretrain_embed_eval(calls, tmp_path, capsys):
    run = tmp_path / "run"
    fits = pretrain_defaults("audio", calls, run)
    assert fits["sample_rate"]["value"] == 8000 and fits["seconds"]["value"] == 0.5
    assert fits["train.batch_size"]["value"] == 12
    ids = embed_and_eval(run, calls, tmp_path, lambda i: "low" if int(i[-6:-4]) % 2 else "high")
    assert len(ids) == 12
    assert_model_option_refused(run, calls, tmp_path, capsys, "sample_rate", 16000)
