"""A stranger's small video data set: 12 grey 8-frame clips through pretrain / embed / eval
with no data options, the scan's fits, the short-clip rule and the raw-feature baseline."""

from __future__ import annotations

import re

import av
import numpy as np
import pytest
import torch

from omnipatch.batch import Sample
from omnipatch.errors import BadSampleError
from omnipatch.modalities.video import SPEC, VideoDataset
from omnipatch.train.plan import scan
from tests.modalities.cli_flow import assert_model_option_refused, embed_and_eval, pretrain_defaults
from tests.modalities.test_video import frame_numbers, write_video

pytestmark = pytest.mark.integration


def write_grey(path, n=8, w=24, h=20, moving_right=True, seed=0):
    """An FFV1 / MKV clip stored grey (pixel format ``gray``): a bright bar moving sideways."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "gray"
        for i in range(n):
            a = (rng.random((h, w)) * 40).astype(np.uint8)
            col = (2 + 2 * i) if moving_right else (w - 4 - 2 * i)
            a[:, col:col + 3] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="gray")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def grey_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    for i in range(12):
        write_grey(d / f"clip{i:02d}.mkv", moving_right=i % 2 == 0, seed=i)
    return d


def test_scan_fits_stride_then_frames_to_the_shortest_clip(tmp_path):
    for n in (8, 12, 30):
        write_video(tmp_path / f"v{n}.mp4", n=n, w=64, h=48)
    plan = scan(SPEC, tmp_path, {})
    assert plan.facts["frames"] == [8, 12, 30] and plan.facts["videos"] == 3
    assert plan.facts["smallest frame"] == "64x48" and plan.facts["pixels"] == "colour"
    assert plan.fits["stride"]["value"] == 1 and plan.fits["frames"]["value"] == 8
    assert "shortest clip has 8 frames" in plan.fits["frames"]["reason"]
    assert set(plan.fits) == {"frames", "stride"}  # 48 px >= size 32, colour: nothing else
    fixed = scan(SPEC, tmp_path, {"frames": 16})  # the user's frames stay; the stride still fits
    assert "frames" not in fixed.fits and fixed.fits["stride"]["value"] == 1
    assert "2 of 3 scanned clips are shorter than the 16-frame span" in fixed.fits["stride"]["reason"]


def test_scan_of_long_clips_fits_nothing(tmp_path):
    write_video(tmp_path / "long.mp4", n=40, w=64, h=48)
    assert scan(SPEC, tmp_path, {}).fits == {}


def test_scan_fits_size_and_grey_channels(tmp_path):
    write_grey(tmp_path / "a.mkv", w=24, h=20)
    write_grey(tmp_path / "b.mkv", w=40, h=36)
    plan = scan(SPEC, tmp_path, {})
    assert plan.fits["size"]["value"] == 16 and "24x20" in plan.fits["size"]["reason"]
    assert plan.fits["channels"]["value"] == 1 and plan.facts["pixels"] == "grey"
    assert "size" not in scan(SPEC, tmp_path, {"size": 32}).fits


def test_five_frame_clips_hold_or_loop_instead_of_refusing(tmp_path):
    path = write_video(tmp_path / "five.mp4", n=5, w=32, h=32)
    plan = scan(SPEC, tmp_path, {})
    assert (plan.fits["frames"]["value"], plan.fits["stride"]["value"]) == (8, 1)
    assert "last frame repeats" in plan.fits["frames"]["reason"]
    held = SPEC.open_dataset(str(path), **{**SPEC.options, **plan.options()})[0]  # the modality default
    assert held.x.shape == (3, 8, 32, 32)
    assert frame_numbers(held.x) == [0, 1, 2, 3, 4, 4, 4, 4]
    looped = VideoDataset(path, frames=8, stride=1, size=16, short_clips="loop")[0]
    assert frame_numbers(looped.x) == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(BadSampleError, match="five.mp4: too short: 5 frames"):
        VideoDataset(path, frames=8, stride=1, size=16, short_clips="error")[0]


def test_zero_frame_video_still_raises_with_hold(tmp_path):
    with av.open(str(tmp_path / "nothing.avi"), "w") as c:
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuvj420p"
        c.start_encoding()
    with pytest.raises(BadSampleError, match="nothing.avi: no video frames"):
        VideoDataset(tmp_path / "nothing.avi", frames=8, stride=1, size=16, short_clips="hold")[0]


def test_raw_features_are_the_mean_frame():
    x = torch.stack([torch.full((3, 4, 4), float(t)) for t in range(6)], 1)  # (C, T, H, W), frame t = t
    f = SPEC.raw_features(Sample(x=x, id="a"))
    assert f.shape == (3 * 4 * 4,) and np.allclose(f, 2.5)
    assert SPEC.raw_name == "mean frame"


def test_cli_twelve_grey_8_frame_clips_pretrain_embed_eval(grey_clips, tmp_path, capsys):
    run = tmp_path / "run"
    fits = pretrain_defaults("video", grey_clips, run)
    assert fits["frames"]["value"] == 8 and fits["stride"]["value"] == 1
    assert fits["size"]["value"] == 16 and fits["channels"]["value"] == 1
    assert fits["train.batch_size"]["value"] == 12
    ids = embed_and_eval(run, grey_clips, tmp_path,
                         lambda i: "right" if int(re.search(r"clip(\d+)", i).group(1)) % 2 == 0 else "left")
    assert len(ids) == 12
    assert_model_option_refused(run, grey_clips, tmp_path, capsys, "channels", 3)
