"""Video: MP4 / AVI / MKV / WebM / MOV (PyAV) and folders of frames -> clips ``(C, T, H, W)``.

A sample is one clip of ``frames`` frames taken every ``stride`` source frames, resized so
its short side fits ``size`` then centre-cropped, RGB (``channels=3``) or grey (1), values in
[0, 1]. A video gives ``clips_per_video`` evenly spaced clips (one, centred, by default); a
manifest's ``start`` / ``end`` seconds restrict where they are taken.

Reading seeks: the container jumps to the key frame before the clip and decodes from there
to the clip's last frame, never the whole file. Frame indices come from presentation time
stamps (``pts * time_base * fps``), so B-frames and containers that do not store a frame
count (MKV, WebM) are handled; a missing frame is filled with the next decoded one.

Views (contrastive learning): the dataset returns the whole clip; :func:`augment` cuts a
sub-clip of half its length at a random time and applies one spatial augmentation to all
its frames, so the two views of a sample are two shorter clips from (usually) different
times of the same video. MAE-only training and embedding see the whole clip. Hence
``frames`` must be a multiple of twice the tubelet length.

Fitted to the data (``omnipatch inspect`` / ``pretrain``, :mod:`omnipatch.modalities.video_scan`;
the container metadata of up to 64 evenly spaced videos, nothing decoded), unless set:

- ``stride``, then ``frames``: the clip span ``stride * (frames - 1) + 1`` fits the
  shortest clip: the stride is lowered first (16 frames at stride 2 -> stride 1), then the
  frames, to the largest multiple of 2 x the tubelet length that fits, never below 8 (the
  smallest multiple of 2 x tubelet >= 8): 8-frame clips train as 8 frames at stride 1;
  shorter clips still give 8 frames, by the short-clip rule below.
- ``size``: the smallest native short side, rounded down to a multiple of the patch, when
  it is below the default 32 (no upsampling; never above the default unless set).
- ``channels``: 1 when every scanned video is stored grey (pixel format ``gray*``, or ``L`` /
  ``I;16`` frame images).

Short clips (``short_clips``): a video (or manifest segment) with fewer frames than the clip
span is not refused: ``"hold"`` (the modality's default) takes the clip's frames while they
exist and repeats the last frame after them, as the VideoMAE / SlowFast samplers pad, so no
motion is invented; ``"loop"`` wraps the indices around (frame ``i mod n``); ``"error"`` (the
default of the :class:`VideoDataset` class itself) refuses it as "too short". A video with
zero frames, an empty segment or an unreadable file still raises :class:`BadSampleError`.

Bad input -- unreadable containers, no video stream, zero frames, truncated files, clips
longer than the video (with ``short_clips="error"``), unreadable frame images -- raises
:class:`BadSampleError` naming the file and the reason (or is skipped and reported with
``on_bad_sample="skip"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities import examples
from omnipatch.modalities.base import FileDataset, stream_reader
from omnipatch.modalities.sources import Entry
from omnipatch.modalities.video_read import VideoInfo, manifest_seconds, open_video, resolve_videos
from omnipatch.modalities.video_scan import patch_triple, scan
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

SHORT_CLIPS = ("hold", "loop", "error")


class VideoDataset(FileDataset):
    """Clips ``(C, T, H, W)`` in [0, 1] from videos and frame folders.

    Args:
        source: folder / glob / manifest (``path``, optional ``id``, ``label``, ``start``,
            ``end`` seconds) of video files or frame folders.
        frames: T, frames per clip.
        stride: take every ``stride``-th source frame (a clip spans ``stride*(T-1)+1`` frames).
        size: output ``(H, W)`` or an int for square (short-side resize, centre crop).
        channels: 3 for RGB, 1 for grey.
        clips_per_video: evenly spaced clips per video, each its own sample (id ``path#k``).
        short_clips: a video shorter than the clip span: ``"hold"`` repeats its last frame,
            ``"loop"`` wraps around, ``"error"`` refuses it (module docstring).
        on_bad_sample: ``raise`` or ``skip`` (see :class:`FileDataset`).
    """

    def __init__(self, source, frames: int = 16, stride: int = 2, size: int | tuple[int, int] = 32,
                 channels: int = 3, clips_per_video: int = 1, short_clips: str = "error",
                 on_bad_sample: str = "raise"):
        entries = resolve_videos(source)
        if channels not in (1, 3):
            raise OmnipatchError(f"video option channels must be 1 (grey) or 3 (RGB), got {channels}")
        if short_clips not in SHORT_CLIPS:
            raise OmnipatchError(f"video option short_clips must be one of {', '.join(SHORT_CLIPS)}, "
                                 f"got {short_clips!r}")
        self.short_clips = short_clips
        if int(frames) < 1 or int(stride) < 1 or int(clips_per_video) < 1:
            raise OmnipatchError("video options frames, stride and clips_per_video must be >= 1")
        self.clips_per_video = int(clips_per_video)
        if self.clips_per_video > 1:
            entries = [Entry(e.path, f"{e.id}#{k}", e.label, e.extra + (("_clip", str(k)),))
                       for e in entries for k in range(self.clips_per_video)]
        super().__init__(entries, on_bad_sample)
        self.frames, self.stride, self.channels = int(frames), int(stride), int(channels)
        self.size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        self.span = self.stride * (self.frames - 1) + 1

    def clip_indices(self, entry: Entry, info: VideoInfo) -> list[int]:
        """Source frame indices of this entry's clip (validated against the video's length)."""
        lo, hi = 0, info.frames
        start, end = manifest_seconds(entry, "start"), manifest_seconds(entry, "end")
        if start is not None or end is not None:
            if not info.fps:
                raise BadSampleError(entry.path, "start/end seconds need a frame rate; a frame folder has none")
            lo = 0 if start is None else round(start * info.fps)
            hi = hi if end is None else min(hi, round(end * info.fps))
        if info.frames == 0:
            raise BadSampleError(entry.path, "no video frames (zero-length video)")
        if hi - lo < self.span:
            if self.short_clips == "error":
                raise BadSampleError(entry.path, f"too short: {max(hi - lo, 0)} frames, a clip of {self.frames} "
                                                 f"frames at stride {self.stride} needs {self.span} "
                                                 f"(short_clips='hold' repeats the last frame)")
            if hi <= lo:
                raise BadSampleError(entry.path, f"no frames in the segment (frames {lo}-{hi} of {info.frames})")
            n = hi - lo
            if self.short_clips == "loop":
                return [lo + (i * self.stride) % n for i in range(self.frames)]
            return [lo + min(i * self.stride, n - 1) for i in range(self.frames)]
        k = int(entry.get("_clip", "0"))
        room = hi - lo - self.span
        first = lo + (round(k * room / (self.clips_per_video - 1)) if self.clips_per_video > 1 else room // 2)
        return [first + i * self.stride for i in range(self.frames)]

    def read(self, entry: Entry) -> Sample:
        with open_video(entry.path) as v:
            arr = v.clip(self.clip_indices(entry, v.info), self.size, self.channels)  # (T, H, W, C)
        x = torch.from_numpy(arr).permute(3, 0, 1, 2).float().div_(255.0)
        return Sample(x=x.contiguous(), id=entry.id, label=self.label_of(entry))


def clip_stats(dataset, max_samples: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean / std over up to ``max_samples`` evenly spaced readable clips."""
    n = len(dataset)
    idx = np.linspace(0, n - 1, num=min(n, max_samples)).round().astype(int)
    xs = [s.x.flatten(1).double() for s in (dataset[int(i)] for i in idx) if isinstance(s, Sample)]
    if not xs:
        raise OmnipatchError("no readable clips to compute normalisation statistics")
    x = torch.cat(xs, 1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-6).tolist()


def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0) -> Batch:
    """One random view per clip, batched, of ``x (B, C, T, H, W)``:

    1. a sub-clip of ``T // 2`` consecutive frames at a random time (two calls give two
       clips from different times of the same video, as in Feichtenhofer et al., 2021);
    2. one random resized crop (area 50-100 %, aspect 3/4-4/3) applied to every frame;
    3. brightness / contrast jitter per clip and light Gaussian noise.
    No flips: motion direction and handedness are often what a label means.
    """
    x = batch.x.float()
    B, C, T, H, W = x.shape
    g, dev = generator, x.device
    r = lambda *s: torch.rand(*s, generator=g, device=g.device).to(dev)
    Tv = max(1, T // 2)
    first = (r(B) * (T - Tv + 1)).floor().long().clamp(max=T - Tv)
    idx = first[:, None] + torch.arange(Tv, device=dev)[None]  # (B, Tv)
    x = x.gather(2, idx[:, None, :, None, None].expand(B, C, Tv, H, W))
    scale = 1.0 - strength * 0.5 * r(B)
    logr = (r(B) * 2 - 1) * math.log(4 / 3) * strength
    sx, sy = (scale * logr.exp()).sqrt().clamp(max=1), (scale / logr.exp()).sqrt().clamp(max=1)
    tx, ty = (r(B) * 2 - 1) * (1 - sx), (r(B) * 2 - 1) * (1 - sy)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
    frames = x.reshape(B, C * Tv, H, W)  # same crop for every frame of a clip
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    x = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x.reshape(B, C, Tv, H, W)
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    sd = x.std(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-3)
    contrast = 1 + (r(B, 1, 1, 1, 1) * 2 - 1) * 0.4 * strength
    bright = (r(B, 1, 1, 1, 1) * 2 - 1) * 0.2 * strength * sd
    x = (x - mean) * contrast + mean + bright
    x = x + torch.randn(x.shape, generator=g, device=g.device).to(dev) * 0.02 * strength * sd
    return batch.replace(x=x)


@dataclass(frozen=True)
class DataOptions:
    """How clips are cut from video files."""

    frames: int = option(16, "16 frames = two 8-frame views of 2-frame tubelets (the scan lowers it, never "
                         "below 8, to fit the shortest clip)", what="frames per clip")
    stride: int = option(2, "every 2nd frame: a 16-frame clip spans about 1 s at 30 fps (the scan lowers it "
                         "first to fit short clips)", what="source frames between clip frames")
    size: int | list[int] = option(32, "32 px in 8-px patches: 4 x 4 tokens per tubelet, a CPU budget (never "
                                   "upsampled: the scan lowers it to the smallest native short side)",
                                   what="short side of the resized frames ([h, w] for a crop)")
    channels: int = option(3, "RGB; the scan gives 1 when every video is stored grey", what="channel count")
    clips_per_video: int = option(1, "one centred clip per video, as in VideoMAE's linear probe",
                                  what="evenly spaced clips per video")
    short_clips: str = option("hold", "'hold' repeats the last frame (VideoMAE / SlowFast padding: no motion "
                              "invented); 'loop' wraps around, 'error' refuses", what="rule for videos shorter "
                              "than a clip")


@dataclass(frozen=True)
class AdapterOptions:
    """How the video adapter cuts tubelets."""

    patch_size: int | list[int] = option([2, 8, 8], "2-frame x 8 x 8 px tubelets, VideoMAE's shape at a CPU "
                                         "budget", what="tubelet [t, p, p] (an int: [2, p, p])")


def _patch(options: dict) -> list[int]:
    return patch_triple(pick(AdapterOptions, options).patch_size)


def _adapter_kwargs(dataset: VideoDataset, options: dict) -> dict:
    patch = _patch(options)
    if len(patch) != 3:
        raise OmnipatchError(f"video patch_size is [t, p, p] (tubelet), got {options.get('patch_size')}")
    t = patch[0]
    if dataset.frames % (2 * t):
        raise OmnipatchError(f"video frames={dataset.frames} must be a multiple of 2 x the tubelet length "
                             f"{t} (contrastive views are half-clips)")
    bad = [(s, p) for s, p in zip(dataset.size, patch[1:]) if s % p]
    if bad:
        raise OmnipatchError(f"video size {dataset.size} is not a multiple of the patch {patch[1:]}")
    mean, std = clip_stats(dataset)
    return {"in_chans": dataset.channels, "patch_size": patch, "mean": mean, "std": std}


def _open(source, on_bad_sample: str = "raise", **options) -> VideoDataset:
    o = pick(DataOptions, options)
    size = o.size if isinstance(o.size, int) else tuple(o.size)
    return VideoDataset(source, frames=o.frames, stride=o.stride, size=size, channels=o.channels,
                        clips_per_video=o.clips_per_video, short_clips=o.short_clips, on_bad_sample=on_bad_sample)


def raw_features(sample: Sample) -> np.ndarray:
    """The raw-feature baseline: the clip's mean frame over time, ``(C, H, W)`` flattened."""
    return sample.x.float().mean(1).flatten().numpy()


SPEC = ModalitySpec(
    name="video",
    description="video (MP4, AVI, MKV, WebM, MOV via PyAV; frame folders) -> clips of T frames",
    open_dataset=_open,
    adapter="video",
    adapter_kwargs=_adapter_kwargs,
    augment=augment,
    default_mask="tube",
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    scan=scan,
    # examples/video_moving_digits.py, README "Results": MAE + MV-DHEL at half strength
    recipe={"objectives": "mae+dhel", "data.augment_strength": 0.5, "model.mask_ratio": 0.5},
    raw_features=raw_features,
    raw_name="mean frame",
    # the adapter's patch embedding is sized C x tubelet; any frames / size give a valid token
    # grid (sin-cos positions are computed per grid), so those stay free like stride
    model_options=("channels", "patch_size"),
    example=examples.video,
    example_options={"frames": 4, "stride": 1, "size": 16, "patch_size": [2, 8, 8]},
    stream_reader=stream_reader,
)
MODALITIES.add(SPEC.name, SPEC, SPEC.description)
