"""Audio files: what the dataset and the data scan both read (no torch, nothing fitted).

The decoder (:func:`read_audio`: soundfile, only the kept window), the manifest's segment
bounds and the STFT sizes. :mod:`omnipatch.modalities.audio` (the dataset) and
:mod:`omnipatch.modalities.audio_scan` (the scan) import from here, never from each other.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np

from omnipatch.errors import BadSampleError
from omnipatch.modalities.sources import Entry

EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")


def _wav_declared_frames(path: str) -> int | None:
    """Frames the RIFF/WAVE header promises (``data`` size / block align), or None.

    libsndfile silently shortens a truncated WAV to what is on disk; comparing with the
    header's promise is how a truncated file is told from a short one.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            align = None
            while True:
                ck = f.read(8)
                if len(ck) < 8:
                    return None
                cid, size = ck[:4], struct.unpack("<I", ck[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size)
                    align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                    if size % 2:
                        f.seek(1, 1)
                elif cid == b"data":
                    if not align or size in (0, 0xFFFFFFFF):  # streaming writers leave it unset
                        return None
                    return size // align
                else:
                    f.seek(size + (size % 2), 1)
    except OSError:
        return None


def manifest_seconds(entry: Entry, key: str) -> float | None:
    """The manifest's ``start`` / ``end`` (``key``) of ``entry`` in seconds; None when unset.

    Raises:
        BadSampleError: not a number, negative or not finite.
    """
    v = entry.get(key)
    if v is None or str(v).strip().lower() in ("", "nan", "none"):
        return None
    try:
        s = float(v)
    except ValueError:
        raise BadSampleError(entry.path, f"manifest {key!r} must be seconds, got {v!r}") from None
    if s < 0 or not math.isfinite(s):
        raise BadSampleError(entry.path, f"manifest {key!r} must be >= 0 seconds, got {v!r}")
    return s


def read_audio(path: str, start: float | None = None, end: float | None = None,
               window: float | None = None, crop: str = "center") -> tuple[np.ndarray, int]:
    """Decode ``[start, end)`` seconds of one file without decoding the rest.

    Args:
        path: audio file (WAV, FLAC, OGG/Vorbis, ... anything libsndfile reads).
        start, end: optional segment in seconds; ``end`` past the file's end is clamped.
        window: if the segment is longer, only ``window`` seconds of it are decoded: its
            centre (``crop="center"``) or its beginning (``"start"``).
    Returns:
        ``(samples (N, C) float32 in [-1, 1], sample_rate)``.
    Raises:
        BadSampleError: missing, empty, unsupported, corrupt or truncated file, or a bad segment.
    """
    import soundfile as sf

    if not os.path.exists(path):
        raise BadSampleError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise BadSampleError(path, "empty file (0 bytes)")
    suffix = os.path.splitext(path)[1].lower()
    try:
        f = sf.SoundFile(path)
    except Exception as e:
        msg = str(e).split(": ", 1)[-1].strip() or type(e).__name__
        if suffix not in EXTENSIONS:
            raise BadSampleError(path, f"unsupported audio format {suffix or '(no extension)'!r} "
                                       f"(readable: {', '.join(EXTENSIONS)}; libsndfile: {msg})") from None
        raise BadSampleError(path, f"not a readable audio file (libsndfile: {msg})") from None
    with f:
        sr, n = f.samplerate, f.frames
        if f.format in ("WAV", "WAVEX", "RF64"):
            declared = _wav_declared_frames(path)
            if declared is not None and declared > n:
                raise BadSampleError(path, f"truncated: the WAV header declares {declared} samples, "
                                           f"the file holds {n}")
        if n == 0:
            raise BadSampleError(path, "empty: 0 audio samples")
        a = 0 if start is None else round(start * sr)
        b = n if end is None else min(n, round(end * sr))
        if a >= n:
            raise BadSampleError(path, f"segment start {start:g} s is past the end of the file ({n / sr:.3f} s)")
        if b <= a:
            raise BadSampleError(path, f"empty segment: end {end:g} s <= start {start or 0:g} s")
        w = math.ceil(window * sr) if window else 0
        if w and b - a > w:
            a += (b - a - w) // 2 if crop == "center" else 0
            b = a + w
        try:
            if a:
                f.seek(a)
            data = f.read(b - a, dtype="float32", always_2d=True)
        except Exception as e:
            raise BadSampleError(path, f"corrupt or truncated ({type(e).__name__}: "
                                       f"{str(e).split(': ', 1)[-1].strip()})") from None
    if data.shape[0] < b - a:
        raise BadSampleError(path, f"truncated: expected {b - a} samples, decoded {data.shape[0]}")
    if not np.isfinite(data).all():
        raise BadSampleError(path, "contains NaN or infinite samples")
    return data, sr


def stft_sizes(sample_rate: int, hop_ms: float = 10.0, win_ms: float = 25.0) -> tuple[int, int, int]:
    """``(hop, win, n_fft)`` in samples: the STFT of :class:`~omnipatch.modalities.audio.AudioDataset` at ``sample_rate``."""
    hop = max(1, round(sample_rate * hop_ms / 1000))
    win = max(2, round(sample_rate * win_ms / 1000))
    return hop, win, 1 << (win - 1).bit_length()
