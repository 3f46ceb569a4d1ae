"""Video reader, dataset and views on real MP4 / AVI / MKV / WebM files written by PyAV."""

from __future__ import annotations

import json
import re

import av
import numpy as np
import pytest
import torch
from PIL import Image

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.base import Skipped
from omnipatch.modalities.video import VideoDataset, augment, open_video, resolve_videos

# (suffix, codec, pixel format): the four containers the issue names, two MP4 codecs
FORMATS = [(".mp4", "libx264", "yuv420p"), (".mp4", "mpeg4", "yuv420p"), (".avi", "mjpeg", "yuvj420p"),
           (".mkv", "ffv1", "yuv420p"), (".webm", "libvpx", "yuv420p")]


def write_video(path, n=40, w=64, h=48, codec="libx264", pix_fmt="yuv420p", rate=25, gop=None):
    """Frame i is a flat grey of value 5*i (mod 250) with a white bar on the left third, so
    the frame index can be read back from the pixels and crops from the bar."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.options = {"g": str(gop)} if gop else {}
        if codec == "mpeg4":
            s.options = {**s.options, "qmin": "1", "qmax": "2"}  # near-lossless: frames stay countable
        for i in range(n):
            a = np.full((h, w, 3), (5 * i) % 250, np.uint8)
            a[:, : w // 3, 0] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def frame_numbers(x: torch.Tensor) -> list[int]:
    """Frame indices encoded by :func:`write_video`, from the right half of a clip (C, T, H, W)."""
    right = x[-1, :, :, x.shape[-1] // 2:]  # last channel: grey or blue, away from the bar
    return [round(float(v) * 255 / 5) for v in right.mean((1, 2))]


@pytest.mark.parametrize("suffix,codec,fmt", FORMATS, ids=[f"{s[1:]}-{c}" for s, c, _ in FORMATS])
def test_containers_give_the_right_frames(tmp_path, suffix, codec, fmt):
    path = write_video(tmp_path / f"v{suffix}", codec=codec, pix_fmt=fmt)
    ds = VideoDataset(path, frames=8, stride=3, size=16, channels=1)
    s = ds[0]
    assert s.x.shape == (1, 8, 16, 16) and s.x.dtype == torch.float32
    # 40 frames, a clip spans 3*7+1 = 22: centred, it starts at frame 9
    assert frame_numbers(s.x) == list(range(9, 31, 3))


def test_rgb_grey_resize_and_centre_crop(tmp_path):
    path = write_video(tmp_path / "v.mp4", w=96, h=48)
    rgb = VideoDataset(path, frames=4, stride=1, size=16)[0].x
    assert rgb.shape == (3, 4, 16, 16)
    # 96x48 -> 32x16, centre crop keeps columns 8..23: the left-third bar (cols 0..10) shows in 0..2
    assert rgb[0, 0, :, :2].min() > 0.9 and rgb[0, 0, :, 4:].max() < 0.5
    grey = VideoDataset(path, frames=4, stride=1, size=(8, 12), channels=1)[0].x
    assert grey.shape == (1, 4, 8, 12)


def test_seek_decodes_only_near_the_clip(tmp_path):
    path = write_video(tmp_path / "long.mp4", n=300, gop=12)
    with open_video(str(path)) as v:
        assert v.info.frames == 300 and v.info.fps == 25
        clip = v.clip([280, 285, 290], size=(8, 8), channels=1)
        assert v.frames_decoded < 30  # from the key frame at 276, not from 0
        again = v.clip([3, 4], size=(8, 8), channels=1)  # seeking backwards works too
    x = torch.from_numpy(np.concatenate([clip, again])).permute(3, 0, 1, 2).float() / 255
    assert frame_numbers(x) == [280 % 50, 285 % 50, 290 % 50, 3, 4]


def test_clips_per_video_and_manifest_segments(tmp_path):
    write_video(tmp_path / "a.mkv", n=60, codec="ffv1")
    ds = VideoDataset(tmp_path / "a.mkv", frames=4, stride=2, size=8, channels=1, clips_per_video=3)
    assert [e.id.rsplit("/", 1)[1] for e in ds.entries] == ["a.mkv#0", "a.mkv#1", "a.mkv#2"]
    assert [frame_numbers(ds[i].x)[0] for i in range(3)] == [0, 26, 53 % 50]  # span 7, room 53
    (tmp_path / "m.csv").write_text("path,label,start,end\na.mkv,early,0,0.8\na.mkv,late,1.6,\n")
    ds = VideoDataset(tmp_path / "m.csv", frames=4, stride=2, size=8, channels=1)
    early, late = ds[0], ds[1]
    assert frame_numbers(early.x) == [6, 8, 10, 12]  # frames 0..19 centred
    assert frame_numbers(late.x) == [46, 48, 50 % 50, 52 % 50]  # frames 40..59 centred
    assert (early.label, late.label) == (0, 1)


def _frames(d, n, start=0, size=(12, 16)):
    d.mkdir(parents=True)
    for i in range(start, start + n):
        Image.fromarray(np.full(size, 5 * i, np.uint8)).save(d / f"frame{i}.png")
    return d


def test_frame_folders_natural_order_and_nesting(tmp_path):
    _frames(tmp_path / "clips" / "a", 12)
    _frames(tmp_path / "clips" / "b", 12, start=20)
    write_video(tmp_path / "clips" / "c.webm", codec="libvpx")
    entries = resolve_videos(tmp_path / "clips")
    assert [e.path.rsplit("/", 1)[1] for e in entries] == ["a", "b", "c.webm"]
    assert [e.path.rsplit("/", 1)[1] for e in resolve_videos(str(tmp_path / "clips" / "*"))] == ["a", "b", "c.webm"]
    ds = VideoDataset(tmp_path / "clips" / "a", frames=6, stride=2, size=8, channels=1)
    assert len(ds) == 1 and frame_numbers(ds[0].x) == [0, 2, 4, 6, 8, 10]  # frame10 after frame9
    both = VideoDataset(tmp_path / "clips", frames=4, stride=1, size=8)
    assert frame_numbers(both[1].x) == [24, 25, 26, 27] and both[1].x.shape == (3, 4, 8, 8)


def _bad(tmp_path):
    d = tmp_path
    (d / "zero.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    raw = write_video(d / "full.mp4", n=60).read_bytes()
    (d / "trunc.mp4").write_bytes(raw[: len(raw) // 2])
    raw = write_video(d / "full.mkv", n=60, codec="ffv1").read_bytes()
    (d / "trunc.mkv").write_bytes(raw[: len(raw) // 2])
    with av.open(str(d / "nothing.avi"), "w") as c:  # a video stream with zero frames
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuvj420p"
        c.start_encoding()
    with av.open(str(d / "sound.mkv"), "w") as c:  # audio only
        s = c.add_stream("pcm_s16le", rate=8000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate = 8000
        for p in [*s.encode(f), *s.encode()]:
            c.mux(p)
    write_video(d / "short.mp4", n=10)
    (d / "noframes").mkdir()
    _frames(d / "badframe", 20)
    (d / "badframe" / "frame4.png").write_bytes(b"\x89PNG broken")  # inside the centred clip


BAD = [
    ("zero.mp4", "zero.mp4: empty file (0 bytes)"),
    ("garbage.mp4", "garbage.mp4: not a readable video container (InvalidDataError"),
    ("trunc.mp4", "trunc.mp4: not a readable video container"),  # index (moov) was at the end
    ("trunc.mkv", "trunc.mkv: truncated or corrupt: decoding stopped at frame"),
    ("nothing.avi", "nothing.avi: no video frames (zero-length video)"),
    ("sound.mkv", "sound.mkv: no video stream (streams: audio)"),
    ("short.mp4", "short.mp4: too short: 10 frames, a clip of 8 frames at stride 2 needs 15"),
    ("noframes", "noframes: no video frames (no .png"),
    ("badframe", "frame4.png: unreadable frame image"),
    ("missing.webm", "missing.webm: file not found"),
]


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_videos")
    _bad(d)
    return d


@pytest.mark.parametrize("name,message", BAD, ids=[b[0] for b in BAD])
def test_bad_videos_raise_naming_file_and_reason(bad_dir, name, message):
    with pytest.raises(BadSampleError, match=re.escape(message)):
        VideoDataset([str(bad_dir / name)], frames=8, stride=2, size=8)[0]


def test_skip_reports_bad_videos(bad_dir):
    ds = VideoDataset(bad_dir, frames=8, stride=2, size=8, on_bad_sample="skip")
    out = {e.path.rsplit("/", 1)[1]: s for e, s in zip(ds.entries, (ds[i] for i in range(len(ds))))}
    assert {k for k, v in out.items() if isinstance(v, Sample)} == {"full.mp4", "full.mkv"}
    assert isinstance(out["trunc.mkv"], Skipped) and "truncated" in out["trunc.mkv"].reason
    assert "badframe" in out  # a frame folder is a video; "noframes" holds no frames: not listed


def test_options_and_sources_are_checked(tmp_path):
    write_video(tmp_path / "v.mp4")
    with pytest.raises(OmnipatchError, match="channels must be 1 .grey. or 3"):
        VideoDataset(tmp_path, channels=2)
    with pytest.raises(OmnipatchError, match="no videos"):
        VideoDataset(tmp_path / "nothing*.mp4")


def test_augment_takes_half_clips_at_different_times():
    x = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(4, 3, 16, 8, 8).contiguous()
    b = Batch(x=x, ids=list("abcd"))
    v1 = augment(b, torch.Generator().manual_seed(0), strength=0.0)
    assert v1.x.shape == (4, 3, 8, 8, 8)
    starts = v1.x[:, 0, 0, 4, 4].round()
    assert all(torch.allclose(v1.x[i, 0, :, 4, 4], starts[i] + torch.arange(8.0), atol=1e-3) for i in range(4))
    g = torch.Generator().manual_seed(1)
    first, second = augment(b, g), augment(b, g)  # the two views of one step
    assert not torch.allclose(first.x, second.x)
    torch.testing.assert_close(augment(b, torch.Generator().manual_seed(1)).x, first.x)


@pytest.mark.slow  # ~10 s of fixed CLI start-up (torch._dynamo, matplotlib) on 2 cores
@pytest.mark.integration
def test_cli_pretrain_embed_eval(tmp_path, capsys):
    from omnipatch.cli import main

    rows = []
    for i in range(10):
        write_video(tmp_path / f"{i}.mp4", n=20 + i, w=32, h=32)
        rows.append((f"{i}.mp4", f"v{i}", "even" if i % 2 == 0 else "odd"))
    (tmp_path / "m.csv").write_text("path,id,label\n" + "".join(",".join(r) + "\n" for r in rows))
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{r[1]},{r[2]}\n" for r in rows))
    run = tmp_path / "run"
    assert main(["pretrain", "--modality", "video", "--data", str(tmp_path / "m.csv"), "--out", str(run),
                 "--steps", "2", "--batch-size", "4", "--preset", "micro", "--set", "data.options.frames=4",
                 "--set", "data.options.size=16", "--set", "data.options.patch_size=[2,8,8]", "--quiet"]) == 0
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())
    assert cfg["model"]["masks"]["video"]["strategy"] == "tube"
    assert len(cfg["model"]["adapters"]["video"]["kwargs"]["mean"]) == 3
    emb = tmp_path / "e.parquet"
    assert main(["embed", "--checkpoint", str(run), "--data", str(tmp_path / "m.csv"), "--out", str(emb)]) == 0
    assert main(["eval", "linear", "--embeddings", str(emb), "--labels", str(tmp_path / "labels.csv"), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "wrote 10 embeddings" in out[-2] and 0.0 <= json.loads(out[-1])["accuracy"] <= 1.0
