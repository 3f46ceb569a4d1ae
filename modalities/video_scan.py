"""The video data scan: container metadata of up to 64 evenly spaced videos -> facts and fits.

Nothing is decoded: PyAV opens each container (frame count from the header, the duration or
a demux-only packet count) and a frame folder lists its images and opens the first one. The
rules are in :mod:`omnipatch.modalities.video`'s docstring. The scan opens files through
:mod:`omnipatch.modalities.video_read` and never imports the dataset module (which imports it).
"""

from __future__ import annotations

import math
import statistics

from omnipatch.modalities.video_read import manifest_seconds, open_video, resolve_videos
from omnipatch.train.plan import read_evenly

#: frames never fall below this (rounded up to a multiple of 2 x the tubelet length)
MIN_FRAMES = 8
#: videos whose metadata the scan reads


def patch_triple(p) -> list[int]:
    """``patch_size`` as ``[tubelet, height, width]``: a number ``p`` is ``[2, p, p]``, a pair
    ``[t, p]`` is ``[t, p, p]``."""
    if isinstance(p, (int, float)):
        return [2, int(p), int(p)]
    p = [int(v) for v in p]
    return [p[0], p[1], p[1]] if len(p) == 2 else p


def min_frames(tubelet: int) -> int:
    """The smallest clip length the scan fits: a multiple of ``2 * tubelet`` that is >= 8."""
    unit = 2 * tubelet
    return unit * math.ceil(MIN_FRAMES / unit)


def fit_clip(shortest: int, frames: int, stride: int, tubelet: int, explicit: set) -> tuple[int, int]:
    """``(frames, stride)`` whose span ``stride * (frames - 1) + 1`` fits ``shortest`` frames:
    the stride is lowered first, then the frames (multiples of ``2 * tubelet``, not below
    :func:`min_frames`); options in ``explicit`` are kept."""
    span = lambda f, s: s * (f - 1) + 1  # noqa: E731
    if span(frames, stride) <= shortest:
        return frames, stride
    if "stride" not in explicit:
        for s in range(stride - 1, 0, -1):
            if span(frames, s) <= shortest:
                return frames, s
        stride = 1
    if "frames" not in explicit:
        unit = 2 * tubelet
        room = (shortest - 1) // stride + 1  # the most frames the span allows at this stride
        frames = max(min_frames(tubelet), min(frames, room // unit * unit))
    return frames, stride


def _usable(entry, info) -> int:
    """Frames of the entry's segment (manifest ``start`` / ``end``), as the reader counts them."""
    lo, hi = 0, info.frames
    start, end = manifest_seconds(entry, "start"), manifest_seconds(entry, "end")
    if info.fps and (start is not None or end is not None):
        lo = 0 if start is None else round(start * info.fps)
        hi = hi if end is None else min(hi, round(end * info.fps))
    return max(0, hi - lo)


def scan(source, options: dict, explicit: set) -> tuple[dict, dict]:
    """Facts (videos, frames, fps, resolution, pixels grey or colour) and fits (frames, stride, size, channels).

    Args:
        source: what :func:`~omnipatch.modalities.video.resolve_videos` takes.
        options: the defaults updated by the user's options.
        explicit: the options the user set (never fitted).
    Returns:
        ``(facts, {option: (value, reason)})``.
    """
    def info(e):
        with open_video(e.path) as v:
            return v.info

    entries = resolve_videos(source)
    facts: dict = {"videos": len(entries)}
    infos = read_evenly(entries, info, facts)
    if not infos:
        return facts, {}
    lengths = [_usable(e, i) for e, i in infos]
    facts["frames"] = [min(lengths), round(statistics.median(lengths)), max(lengths)]
    rates = sorted({round(i.fps, 2) for _, i in infos if i.fps})
    if rates:
        facts["fps"] = rates if len(rates) <= 4 else [rates[0], rates[-1]]
    w, h = min(i.width for _, i in infos), min(i.height for _, i in infos)
    facts["smallest frame"] = f"{w}x{h}"
    grey = all(i.grey for _, i in infos)
    facts["pixels"] = "grey" if grey else "colour"

    fits: dict = {}
    patch = patch_triple(options["patch_size"])
    frames, stride = int(options["frames"]), int(options["stride"])
    shortest = min(lengths)
    f, s = fit_clip(max(shortest, 1), frames, stride, patch[0], explicit)
    n_short = sum(n < s * (f - 1) + 1 for n in lengths)
    why = f"the shortest clip has {shortest} frames"
    if n_short:
        rule = options["short_clips"]
        how = {"hold": "their last frame repeats", "loop": "they wrap around"}.get(rule, "they are refused")
        why += (f"; {n_short} of {len(lengths)} scanned clips are shorter than the {s * (f - 1) + 1}-frame "
                f"span (short_clips={rule!r}: {how})")
    if s != stride:
        fits["stride"] = (s, f"{why}: a clip of {f} frames at stride {s} spans {s * (f - 1) + 1}")
    if f != frames:
        fits["frames"] = (f, f"{why}: {f} frames at stride {s} (a multiple of 2 x the tubelet length "
                             f"{patch[0]}, at least {min_frames(patch[0])})")
    size = options.get("size")
    if isinstance(size, int) and "size" not in explicit:
        step = math.lcm(patch[1], patch[2])
        native = min(w, h)
        if native < size:
            fits["size"] = (max(step, native // step * step),
                            f"the smallest frames are {w}x{h}: the short side {native} rounded down to a "
                            f"multiple of the patch {step} (no upsampling)")
    if grey and int(options["channels"]) == 3 and "channels" not in explicit:
        fits["channels"] = (1, f"all {len(infos)} scanned videos are stored grey")
    return facts, fits
