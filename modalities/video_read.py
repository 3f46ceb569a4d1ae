"""Video files: the readers the dataset and the data scan share (PyAV containers, frame folders).

:func:`open_video` opens a file or a folder of frames (:class:`VideoReader`,
:class:`FrameFolderReader`, both giving :class:`VideoInfo` and seeking ``clip`` reads),
:func:`resolve_videos` finds them in a source and :func:`manifest_seconds` reads a manifest's
segment bounds. :mod:`omnipatch.modalities.video` (the dataset) and
:mod:`omnipatch.modalities.video_scan` (the scan) import from here, never from each other.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.sources import Entry, resolve

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv", ".wmv")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class VideoInfo:
    """``frames`` in the video (declared or counted), ``fps`` (0 when unknown), native size,
    ``grey``: stored without colour (pixel format ``gray*``, grey frame images)."""

    frames: int
    fps: float
    width: int
    height: int
    grey: bool = False


def _why(e: Exception) -> str:
    """An FFmpeg error's reason without the path PyAV appends (the caller names the file)."""
    return f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"


def _target_size(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """Scaled ``(w, h)`` whose short side fits ``size`` (h, w) so a centre crop fills it."""
    s = max(size[0] / height, size[1] / width)
    return max(size[1], round(width * s)), max(size[0], round(height * s))


def _center_crop(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    top, left = (a.shape[0] - size[0]) // 2, (a.shape[1] - size[1]) // 2
    return a[top:top + size[0], left:left + size[1]]


class VideoReader:
    """One open video file (PyAV). Use as a context manager.

    Attributes:
        info: :class:`VideoInfo`.
        frames_decoded: frames the decoder produced so far (shows that seeking works).
    """

    def __init__(self, path: str):
        import av

        self.path, self.frames_decoded, self._used = path, 0, False
        if not os.path.exists(path):
            raise BadSampleError(path, "file not found")
        if os.path.getsize(path) == 0:
            raise BadSampleError(path, "empty file (0 bytes)")
        try:
            self.container = av.open(path)
        except Exception as e:
            raise BadSampleError(path, f"not a readable video container ({_why(e)})") from None
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams}) or ["none"]
            self.close()
            raise BadSampleError(path, f"no video stream (streams: {', '.join(kinds)})")
        self.stream = s = self.container.streams.video[0]
        s.thread_type = "AUTO"
        rate = s.average_rate or s.guessed_rate or s.base_rate
        self.fps = float(rate) if rate else 0.0
        self.tb = float(s.time_base) if s.time_base else 0.0
        self.t0 = s.start_time or 0
        n = s.frames
        if not n and self.fps:
            if s.duration and self.tb:
                n = round(s.duration * self.tb * self.fps)
            elif self.container.duration:
                n = round(self.container.duration / 1e6 * self.fps)
        if not n:  # no count and no duration: count packets (demux only, no decoding), reopen
            try:
                n = sum(1 for p in self.container.demux(s) if p.size)
            except Exception as e:
                self.close()
                raise BadSampleError(path, f"corrupt container ({_why(e)})") from None
            self.container.close()
            self.container = av.open(path)
            self.stream = s = self.container.streams.video[0]
            s.thread_type = "AUTO"
        pix = str(s.codec_context.pix_fmt or "")
        self.info = VideoInfo(int(n), self.fps, s.codec_context.width, s.codec_context.height,
                              pix.startswith(("gray", "ya", "mono")))

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def _index(self, frame, counter: int) -> int:
        if frame.pts is None or not (self.tb and self.fps):
            return counter
        return round((frame.pts - self.t0) * self.tb * self.fps)

    def clip(self, indices: list[int], size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
        """Frames at ``indices`` (0-based, any order, repeats allowed) -> ``(T, H, W, C)`` uint8.

        Seeks to the key frame before the first index and decodes up to the last one.
        """
        want = sorted(set(indices))
        fmt = "gray" if channels == 1 else "rgb24"
        w, h = _target_size(self.info.width, self.info.height, size) if size else (None, None)
        seek = bool(self.tb and self.fps) and (want[0] > 0 or self._used)
        if seek:
            self.container.seek(self.t0 + int(want[0] / (self.fps * self.tb)), stream=self.stream,
                                backward=True, any_frame=False)
        elif self._used:  # no time stamps to seek by: start over and count
            self.container.seek(0)
        self._used = True
        got, j, idx = {}, 0, -1
        try:
            for counter, frame in enumerate(self.container.decode(self.stream)):
                self.frames_decoded += 1
                if frame.pts is None and seek:  # no time stamps: frame numbers only from the start
                    return self._restart(indices, size, channels)
                idx = self._index(frame, counter)
                if idx < want[j]:
                    continue
                arr = frame.to_ndarray(format=fmt, width=w, height=h, interpolation="AREA")
                while j < len(want) and want[j] <= idx:
                    got[want[j]] = arr
                    j += 1
                if j == len(want):
                    break
        except BadSampleError:
            raise
        except Exception as e:
            raise BadSampleError(self.path, f"corrupt video data near frame {idx + 1} ({_why(e)})") from None
        if j < len(want):
            raise BadSampleError(self.path, f"truncated or corrupt: decoding stopped at frame {idx} but "
                                            f"the clip needs frame {want[-1]} (the file declares "
                                            f"{self.info.frames} frames)")
        out = np.stack([got[i] for i in indices])
        if out.ndim == 3:
            out = out[..., None]
        return np.ascontiguousarray(np.stack([_center_crop(f, size) for f in out])) if size else out

    def _restart(self, indices, size, channels) -> np.ndarray:
        self.tb = 0.0  # no time stamps: count frames from the start from now on
        return self.clip(indices, size, channels)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class FrameFolderReader:
    """A folder of frame images (sorted naturally: ``f2.png`` before ``f10.png``) as a video."""

    def __init__(self, path: str):
        self.path, self.frames_decoded = path, 0
        self.files = sorted((f for f in os.listdir(path) if f.lower().endswith(FRAME_EXTENSIONS)), key=_natural_key)
        if not self.files:
            raise BadSampleError(path, f"no video frames (no {', '.join(FRAME_EXTENSIONS)} files in the folder)")
        im = self._open(0)
        self.info = VideoInfo(len(self.files), 0.0, im.width, im.height, im.mode in GREY_MODES)

    def __enter__(self) -> FrameFolderReader:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _open(self, i: int):
        from PIL import Image

        f = os.path.join(self.path, self.files[i])
        try:
            im = Image.open(f)
            im.load()
            return im
        except Exception as e:
            raise BadSampleError(f, f"unreadable frame image ({type(e).__name__}: {e})") from None

    def clip(self, indices: list[int], size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
        from PIL import Image

        out = {}
        for i in sorted(set(indices)):
            im = self._open(i).convert("L" if channels == 1 else "RGB")
            self.frames_decoded += 1
            if size:
                im = im.resize(_target_size(im.width, im.height, size), Image.Resampling.BILINEAR)
            a = np.asarray(im)
            out[i] = _center_crop(a, size) if size else a
        shapes = {a.shape for a in out.values()}
        if len(shapes) > 1:
            raise BadSampleError(self.path, f"frames differ in size {sorted(shapes)}; set a size")
        arr = np.stack([out[i] for i in indices])
        return arr[..., None] if arr.ndim == 3 else arr


def open_video(path: str) -> VideoReader | FrameFolderReader:
    """A reader for a video file or a folder of frames."""
    return FrameFolderReader(path) if os.path.isdir(path) else VideoReader(path)


def _has_frames(d: Path) -> bool:
    return any(f.is_file() and f.suffix.lower() in FRAME_EXTENSIONS for f in d.iterdir())


def resolve_videos(source) -> list[Entry]:
    """Video files and frame folders of a folder (recursive), glob, list or manifest.

    A folder that directly holds frame images is one video; so is each sub-folder that does.
    Manifest paths may point at files or frame folders.
    """
    if isinstance(source, (list, tuple)):
        return [Entry(str(p), str(p)) for p in source]
    src = str(source)
    p = Path(src)
    if p.is_file():
        return resolve(source, VIDEO_EXTENSIONS)  # a manifest or one video file
    if p.is_dir():
        found = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]
        found += [d for d in [p, *p.rglob("*")] if d.is_dir() and _has_frames(d)]
        where = f"folder {src}"
    else:
        found = [Path(f) for f in glob.glob(src, recursive=True)]
        found = [f for f in found if (f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
                 or (f.is_dir() and _has_frames(f))]
        where = f"pattern {src}"
        if not found and not any(c in src for c in "*?["):
            raise OmnipatchError(f"{src}: no such file or folder")
    if not found:
        raise OmnipatchError(f"{where}: no videos ({', '.join(VIDEO_EXTENSIONS)}) and no folders of "
                             f"frames ({', '.join(FRAME_EXTENSIONS)})")
    return [Entry(str(f), str(f)) for f in sorted(found, key=lambda f: _natural_key(str(f)))]


def manifest_seconds(entry: Entry, key: str) -> float | None:
    """The manifest's ``start`` / ``end`` (``key``) of ``entry`` in seconds; None when unset.

    Raises:
        BadSampleError: not a number.
    """
    v = entry.get(key)
    if v is None or str(v).strip().lower() in ("", "nan", "none"):
        return None
    try:
        return float(v)
    except ValueError:
        raise BadSampleError(entry.path, f"manifest {key!r} must be seconds, got {v!r}") from None
