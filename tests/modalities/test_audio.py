"""Audio reader, dataset and views on real WAV / FLAC / OGG files written by soundfile."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from omnipatch.batch import Sample, collate
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.audio import AudioDataset, augment, read_audio, spectrogram_stats
from omnipatch.modalities.base import Skipped


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_band(x: torch.Tensor, mask: torch.Tensor | None = None) -> int:
    """Mel band with the most energy over the non-padding frames of ``x (T, C, F)``."""
    if mask is not None:
        x = x[~mask]
    return int(x.mean((0, 1)).argmax())


@pytest.fixture
def wav_dir(tmp_path):
    """The same 1 kHz tone as WAV 16 kHz mono, FLAC 44.1 kHz stereo, OGG 22.05 kHz mono."""
    d = tmp_path / "snd"
    d.mkdir()
    sf.write(d / "a.wav", tone(1000, 1.2, 16000), 16000)
    st = tone(1000, 1.2, 44100)
    sf.write(d / "b.flac", np.stack([st, 0.5 * st], 1), 44100)
    sf.write(d / "c.ogg", tone(1000, 1.2, 22050), 22050)
    return d


def test_formats_rates_and_channels_give_the_same_spectrogram(wav_dir):
    ds = AudioDataset(wav_dir, sample_rate=16000, seconds=1.0, n_mels=32)
    assert [e.path.rsplit("/", 1)[1] for e in ds.entries] == ["a.wav", "b.flac", "c.ogg"]
    assert len(AudioDataset(str(wav_dir / "*.fl*"))) == 1  # a glob
    samples = [ds[i] for i in range(3)]
    for s in samples:
        assert s.x.shape == (100, 1, 32) and s.x_mask.shape == (100,) and not s.x_mask.any()
        assert torch.isfinite(s.x).all()
    bands = {peak_band(s.x) for s in samples}
    assert len(bands) == 1  # resampled to one rate: the tone lands in the same mel band
    # the band is where 1 kHz belongs on the HTK mel scale (0 .. 8 kHz in 32 bands)
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    assert abs(bands.pop() - mel(1000) / mel(8000) * 33 + 1) <= 1


def test_resampling_is_torchaudio_and_stereo_is_downmixed(wav_dir):
    import torchaudio.functional as AF

    ds = AudioDataset(wav_dir / "b.flac", sample_rate=16000, seconds=0)
    wave = ds.waveform(ds.entries[0])
    data, sr = sf.read(wav_dir / "b.flac", dtype="float32", always_2d=True)
    ref = AF.resample(torch.from_numpy(data.T.copy()).mean(0, keepdim=True), sr, 16000)
    torch.testing.assert_close(wave, ref)
    assert wave.shape == (1, round(1.2 * 16000))


def test_multichannel_kept_inferred_and_mismatch_named(wav_dir):
    ds = AudioDataset(wav_dir, channels=2, n_mels=16)
    assert [ds[i].x.shape[1] for i in range(3)] == [2, 2, 2]  # mono files repeated
    a, b = ds[1].x[:, 0], ds[1].x[:, 1]
    assert float(a.max() - b.max()) == pytest.approx(20 * np.log10(2), abs=0.1)  # right channel: -6 dB
    assert AudioDataset(wav_dir / "b.flac", channels=None).channels == 2
    three = wav_dir / "three.wav"
    sf.write(three, np.stack([tone(440, 0.5, 8000)] * 3, 1), 8000)
    with pytest.raises(BadSampleError, match=r"three.wav: has 3 channels, expected 2"):
        AudioDataset(three, channels=2)[0]


def test_window_crops_centre_or_start_and_pads_with_mask(tmp_path):
    sr = 16000
    three = np.concatenate([tone(300, 1, sr), tone(2000, 1, sr), tone(5000, 1, sr)])
    sf.write(tmp_path / "long.wav", three, sr)
    sf.write(tmp_path / "short.wav", tone(2000, 0.5, sr), sr)
    centre = AudioDataset(tmp_path / "long.wav", seconds=1.0, n_mels=40)[0]
    start = AudioDataset(tmp_path / "long.wav", seconds=1.0, n_mels=40, crop="start")[0]
    short = AudioDataset(tmp_path / "short.wav", seconds=1.0, n_mels=40)[0]
    assert peak_band(centre.x) == peak_band(short.x, short.x_mask) > peak_band(start.x)
    assert short.x.shape == (100, 1, 40)
    assert short.x_mask.tolist() == [False] * 51 + [True] * 49  # 8000 samples: 1 + 8000/160 frames


def test_variable_length_collates_with_padding(tmp_path):
    for i, sec in enumerate((0.3, 0.75, 1.5)):
        sf.write(tmp_path / f"{i}.wav", tone(500, sec, 16000), 16000)
    ds = AudioDataset(tmp_path, seconds=0, n_mels=16)
    lens = [ds[i].x.shape[0] for i in range(3)]
    assert lens == [31, 76, 151] and all(ds[i].x_mask is None for i in range(3))
    b = collate([ds[i] for i in range(3)])
    assert b.x.shape == (3, 151, 1, 16) and (~b.x_mask).sum(1).tolist() == lens
    capped = AudioDataset(tmp_path, seconds=0, max_seconds=0.5, n_mels=16)
    assert capped[2].x.shape[0] == 51


def test_manifest_labels_segments_and_ids(tmp_path):
    sr = 16000
    sf.write(tmp_path / "two.wav", np.concatenate([tone(300, 1, sr), tone(4000, 1, sr)]), sr)
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "start", "end"])
        w.writerow(["two.wav", "low", "0", "1"])
        w.writerow(["two.wav", "high", "1.0", ""])
        w.writerow(["two.wav", "high", "1.2", "9"])  # end past the file is clamped
    ds = AudioDataset(tmp_path / "m.csv", n_mels=32)
    assert [e.id for e in ds.entries] == ["two.wav#0-1", "two.wav#1.0-end", "two.wav#1.2-9"]
    s = [ds[i] for i in range(3)]
    assert [x.label for x in s] == [1, 0, 0]  # classes sorted: high=0, low=1
    assert peak_band(s[0].x) < peak_band(s[1].x) == peak_band(s[2].x, s[2].x_mask)
    assert s[2].x_mask.sum() == 100 - 81  # 0.8 s of sound in a 1 s window


def test_read_audio_seeks_a_segment_and_a_window(tmp_path):
    x = tone(440, 2.0, 8000)
    sf.write(tmp_path / "a.flac", x, 8000)
    seg, sr = read_audio(str(tmp_path / "a.flac"), 0.5, 0.75)
    assert sr == 8000 and seg.shape == (2000, 1)
    np.testing.assert_allclose(seg[:, 0], x[4000:6000], atol=1e-4)
    mid, _ = read_audio(str(tmp_path / "a.flac"), 0.5, None, window=0.5)  # centre of [0.5, 2.0)
    np.testing.assert_allclose(mid[:, 0], x[8000:12000], atol=1e-4)
    head, _ = read_audio(str(tmp_path / "a.flac"), window=0.25, crop="start")
    np.testing.assert_allclose(head[:, 0], x[:2000], atol=1e-4)


def test_window_read_matches_decoding_everything(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "n.wav", (0.1 * rng.standard_normal(3 * 22050)).astype(np.float32), 22050)
    ds = AudioDataset(tmp_path, seconds=1.0, n_mels=32)
    whole = AudioDataset(tmp_path, seconds=0, n_mels=32)  # decodes and resamples all 3 s
    full = whole.waveform(whole.entries[0])
    a = (full.shape[1] - 16000) // 2
    x, _ = ds.features(full[:, a:a + 16000])
    torch.testing.assert_close(ds[0].x[2:-2], x[2:-2], atol=0.05, rtol=0)  # resampler edges differ


def _bad_files(d):
    sr = 16000
    sf.write(d / "ok.wav", tone(440, 1.0, sr), sr)
    (d / "zero.wav").write_bytes(b"")
    sf.write(d / "nosamples.wav", np.zeros(0, np.float32), sr)
    (d / "garbage.flac").write_bytes(np.random.default_rng(0).bytes(2000))
    sf.write(d / "full.wav", tone(440, 1.0, sr), sr)
    raw = (d / "full.wav").read_bytes()
    (d / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    (d / "full.wav").unlink()
    sf.write(d / "full.flac", tone(440, 1.0, sr) + 0.01 * np.random.default_rng(1).standard_normal(sr).astype(np.float32), sr)
    raw = (d / "full.flac").read_bytes()
    (d / "trunc.flac").write_bytes(raw[: len(raw) // 2])
    (d / "full.flac").unlink()
    sf.write(d / "silent.wav", np.zeros(sr, np.float32), sr)
    sf.write(d / "short.wav", tone(440, 0.03, sr), sr)
    sf.write(d / "nan.wav", np.full(sr, np.nan, np.float32), sr, subtype="FLOAT")
    (d / "notes.txt").write_text("not audio")


BAD = [
    ("zero.wav", r"zero.wav: empty file \(0 bytes\)"),
    ("nosamples.wav", r"nosamples.wav: empty: 0 audio samples"),
    ("garbage.flac", r"garbage.flac: not a readable audio file \(libsndfile: "),
    ("trunc.wav", r"trunc.wav: truncated: the WAV header declares 16000 samples, the file holds \d+"),
    ("trunc.flac", r"trunc.flac: corrupt or truncated"),
    ("silent.wav", r"silent.wav: silent \(digital silence"),
    ("short.wav", r"short.wav: too short: 0.030 s, need at least 0.100 s"),
    ("nan.wav", r"nan.wav: contains NaN or infinite samples"),
    ("notes.txt", r"notes.txt: unsupported audio format '.txt' \(readable: .wav, .flac"),
    ("missing.wav", r"missing.wav: file not found"),
]


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_audio")
    _bad_files(d)
    return d


@pytest.mark.parametrize("name,message", BAD, ids=[b[0] for b in BAD])
def test_bad_files_raise_naming_file_and_reason(bad_dir, name, message):
    ds = AudioDataset([str(bad_dir / name)], channels=1)
    with pytest.raises(BadSampleError, match=message):
        ds[0]


def test_bad_segments_are_named(tmp_path):
    sf.write(tmp_path / "a.wav", tone(440, 1.0, 16000), 16000)
    (tmp_path / "m.csv").write_text("path,start,end\na.wav,2,3\na.wav,0.5,0.5\na.wav,x,\n")
    ds = AudioDataset(tmp_path / "m.csv")
    for i, msg in enumerate(["segment start 2 s is past the end of the file (1.000 s)",
                             "empty segment: end 0.5 s <= start 0.5 s", "manifest 'start' must be seconds, got 'x'"]):
        with pytest.raises(BadSampleError, match="a.wav: " + re.escape(msg)):
            ds[i]


def test_skip_reports_bad_files_and_keeps_good_ones(bad_dir):
    ds = AudioDataset(bad_dir, on_bad_sample="skip")
    out = [ds[i] for i in range(len(ds))]
    good = [s for s in out if isinstance(s, Sample)]
    bad = {s.source.rsplit("/", 1)[1]: s.reason for s in out if isinstance(s, Skipped)}
    assert [s.id.rsplit("/", 1)[1] for s in good] == ["ok.wav"]
    assert set(bad) == {"zero.wav", "nosamples.wav", "garbage.flac", "trunc.wav", "trunc.flac",
                        "silent.wav", "short.wav", "nan.wav"}  # folders list audio suffixes only
    assert bad["silent.wav"].startswith("silent")


def test_options_are_checked():
    with pytest.raises(OmnipatchError, match="crop must be 'center' or 'start'"):
        AudioDataset([], crop="middle")


def test_stats_ignore_padding(tmp_path):
    sf.write(tmp_path / "a.wav", tone(500, 0.4, 16000), 16000)
    ds = AudioDataset(tmp_path, seconds=2.0, n_mels=16)
    s = ds[0]
    mean, std = spectrogram_stats(ds)
    valid = s.x[~s.x_mask]
    assert mean[0] == pytest.approx(float(valid.mean()), rel=1e-5)
    assert std[0] == pytest.approx(float(valid.double().std()), rel=1e-5)


def test_augment_is_batched_seeded_and_keeps_sound():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 40, 1, 16, generator=g) * 10 - 30
    mask = torch.zeros(6, 40, dtype=torch.bool)
    mask[0, 2:] = True  # almost only padding: the crop must still see its sound
    mask[1, 20:] = True
    from omnipatch.batch import Batch

    b = Batch(x=x, ids=list("abcdef"), x_mask=mask)
    v1 = augment(b, torch.Generator().manual_seed(1))
    v2 = augment(b, torch.Generator().manual_seed(1))
    v3 = augment(b, torch.Generator().manual_seed(2))
    torch.testing.assert_close(v1.x, v2.x)
    assert not torch.allclose(v1.x, v3.x)
    assert v1.x.shape == x.shape and v1.x_mask.shape == mask.shape
    assert (~v1.x_mask).sum(1).min() >= 1
    assert v1.x_mask[2:].sum() == 0  # clips without padding gain none
    assert torch.isfinite(v1.x).all()
    nomask = augment(Batch(x=x), torch.Generator().manual_seed(1))
    assert nomask.x_mask is None


@pytest.mark.slow  # ~10 s of fixed CLI start-up (torch._dynamo, matplotlib) on 2 cores
@pytest.mark.integration
def test_cli_pretrain_embed_eval(tmp_path, capsys):
    from omnipatch.cli import main

    d = tmp_path / "data"
    d.mkdir()
    rows = []
    for i in range(10):
        f = 300 if i % 2 else 3000
        sf.write(d / f"{i}.wav", tone(f * (1 + i / 20), 0.5 + i / 10, 16000), 16000)
        rows.append(f"{i}.wav,{i},{'low' if i % 2 else 'high'}")
    (d / "bad.wav").write_bytes(b"RIFF")
    (d / "m.csv").write_text("path,id,label\n" + "\n".join(rows) + "\nbad.wav,bad,low\n")
    (d / "labels.csv").write_text("id,label\n" + "\n".join(r.split(",", 1)[1] for r in rows) + "\n")
    run = tmp_path / "run"
    assert main(["pretrain", "--modality", "audio", "--data", str(d / "m.csv"), "--out", str(run),
                 "--steps", "2", "--batch-size", "4", "--preset", "micro", "--on-bad-sample", "skip",
                 "--set", "data.options.n_mels=32", "--set", "data.options.patch_size=[10,8]",
                 "--set", "train.log_every=1", "--quiet"]) == 0
    skipped = [json.loads(line) for line in (run / "skipped.jsonl").read_text().splitlines()]
    assert skipped and all(s["source"].endswith("bad.wav") for s in skipped)
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())
    assert cfg["model"]["adapters"]["audio"]["kwargs"]["patch_size"] == [10, 8]
    assert len(cfg["model"]["adapters"]["audio"]["kwargs"]["mean"]) == 1  # stats in the checkpoint
    emb = tmp_path / "e.parquet"
    assert main(["embed", "--checkpoint", str(run), "--data", str(d / "m.csv"), "--out", str(emb),
                 "--on-bad-sample", "skip"]) == 0
    assert main(["eval", "knn", "--embeddings", str(emb), "--labels", str(d / "labels.csv"), "--k", "3",
                 "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any("wrote 10 embeddings" in line for line in out[:-1])  # the bad file is skipped, and said so
    assert "skipped 1 sample(s)" in out[-2] and 0.0 <= json.loads(out[-1])["accuracy"] <= 1.0


def test_readout_keeps_band_groups_apart_and_ignores_padded_frames():
    from types import SimpleNamespace

    from omnipatch.modalities.audio import readout

    torch.manual_seed(0)
    z = torch.randn(2, 5 * 4, 8)  # 5 time patches x 4 band groups, time-major
    pad = torch.zeros(2, 20, dtype=torch.bool)
    pad[0, 12:] = True  # clip 0 is 3 time patches long
    out = readout(SimpleNamespace(grid=(5, 4), padding_mask=pad), z)
    assert out.shape == (2, 4 * 8)
    g = z.reshape(2, 5, 4, 8)
    torch.testing.assert_close(out[0].reshape(4, 8), g[0, :3].mean(0))  # time mean of the valid patches, per group
    torch.testing.assert_close(out[1].reshape(4, 8), g[1].mean(0))
    many = readout(SimpleNamespace(grid=(5, 8), padding_mask=None), torch.randn(2, 40, 8))
    assert many.shape == (2, 4 * 8)  # at most 4 groups: 8 band groups pooled in pairs
    one = readout(SimpleNamespace(grid=(5, 1), padding_mask=None), z[:, :5])
    torch.testing.assert_close(one, z[:, :5].mean(1))  # one band group: the plain mean
