"""The audio data scan: ``soundfile.info`` of up to 64 evenly spaced files -> facts and fits.

Only headers are read (rate, frames, channels, format); nothing is decoded. The rules are
in :mod:`omnipatch.modalities.audio`'s docstring. The scan reads files through
:mod:`omnipatch.modalities.audio_read` and never imports the dataset module (which imports it).
"""

from __future__ import annotations

import math
import statistics
import warnings
from functools import lru_cache

from omnipatch.errors import BadSampleError
from omnipatch.modalities.audio_read import EXTENSIONS, manifest_seconds, stft_sizes
from omnipatch.modalities.sources import resolve
from omnipatch.train.plan import read_evenly

#: files whose header the scan reads
#: the fitted window: the median duration, rounded to this step and clamped to this range
SECONDS_STEP, SECONDS_RANGE = 0.25, (0.5, 10.0)


def patch_pair(p) -> list[int]:
    """``patch_size`` as a list: a number ``p`` is the square ``[p, p]`` (time frames, mel bands)."""
    return [int(p), int(p)] if isinstance(p, (int, float)) else [int(v) for v in p]


@lru_cache(maxsize=64)
def empty_mel_bands(sample_rate: int, n_mels: int, hop_ms: float = 10.0, win_ms: float = 25.0) -> int:
    """How many of ``n_mels`` mel filters of the dataset's STFT at ``sample_rate`` hold no
    FFT bin (such a band is constant, -100 dB, whatever the sound)."""
    import torch
    from torchaudio.functional import melscale_fbanks

    _, _, n_fft = stft_sizes(sample_rate, hop_ms, win_ms)
    with warnings.catch_warnings():  # torchaudio warns about the very empty bands counted here
        warnings.simplefilter("ignore")
        fb = melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
    return int((fb.amax(0) <= 0).sum()) if isinstance(fb, torch.Tensor) else 0


def fit_n_mels(sample_rate: int, n_mels: int, step: int, hop_ms: float = 10.0, win_ms: float = 25.0) -> int:
    """The largest multiple of ``step`` (the frequency patch), at most ``n_mels``, with no
    empty mel band at ``sample_rate``; at least ``step``."""
    for m in range(n_mels // step * step, step - 1, -step):
        if not empty_mel_bands(sample_rate, m, hop_ms, win_ms):
            return m
    return step


def scan(source, options: dict, explicit: set) -> tuple[dict, dict]:
    """Facts (files, durations, rates, channels, formats) and fits (sample_rate, n_mels,
    seconds, min_seconds).

    Args:
        source: folder / glob / manifest / list, as :class:`~omnipatch.modalities.audio.AudioDataset`.
        options: the defaults updated by the user's options.
        explicit: the options the user set (never fitted).
    Returns:
        ``(facts, {option: (value, reason)})``.
    """
    import soundfile as sf

    def header(e):
        try:
            info = sf.info(e.path)
        except Exception as err:  # libsndfile: unreadable header (its message repeats the path)
            raise BadSampleError(e.path, f"{type(err).__name__}: {str(err).split(': ', 1)[-1].strip()}") from None
        if not info.frames or not info.samplerate:
            raise BadSampleError(e.path, "empty: 0 audio samples")
        return info, manifest_seconds(e, "start"), manifest_seconds(e, "end")

    entries = resolve(source, EXTENSIONS)
    facts: dict = {"files": len(entries)}
    durations, rates, channels, formats = [], set(), set(), set()
    for _, (info, start, end) in read_evenly(entries, header, facts):
        total = info.frames / info.samplerate
        durations.append(max(0.0, min(total, end if end is not None else total) - (start or 0.0)))
        rates.add(int(info.samplerate))
        channels.add(int(info.channels))
        formats.add(str(info.format))
    if not durations:
        return facts, {}
    med = statistics.median(durations)
    facts["seconds"] = [round(min(durations), 3), round(med, 3), round(max(durations), 3)]
    facts["sample rates"] = sorted(rates)
    facts["channels"] = sorted(channels)
    facts["formats"] = sorted(formats)

    fits: dict = {}
    rate = int(options["sample_rate"])
    if "sample_rate" not in explicit and max(rates) < rate:
        rate = max(rates)
        same = "all at" if len(rates) == 1 else "all at most"
        fits["sample_rate"] = (rate, f"the {len(durations)} scanned files are {same} {rate} Hz: "
                                     f"no upsampling to {int(options['sample_rate'])} Hz")
    hop_ms, win_ms = float(options["hop_ms"]), float(options["win_ms"])
    patch = patch_pair(options["patch_size"])
    step = patch[1] if len(patch) == 2 else 16
    n_mels = int(options["n_mels"])
    if "n_mels" not in explicit:
        m = fit_n_mels(rate, n_mels, step, hop_ms, win_ms)
        if m != n_mels:
            fits["n_mels"] = (m, f"at {rate} Hz, {empty_mel_bands(rate, n_mels, hop_ms, win_ms)} of {n_mels} mel "
                                 f"bands would hold no FFT bin: {m} bands (a multiple of the frequency patch {step})")
    if "seconds" not in explicit and options.get("seconds"):
        lo, hi = SECONDS_RANGE
        s = min(hi, max(lo, round(med / SECONDS_STEP) * SECONDS_STEP))
        n_short = sum(d < s for d in durations)
        fits["seconds"] = (s, f"the median clip lasts {med:.3f} s ({min(durations):.3f}-{max(durations):.3f} s): "
                              f"a {s:g} s window; {n_short} of {len(durations)} scanned clips are shorter and "
                              f"padded (masked), {sum(d > s for d in durations)} longer and cropped")
    shortest = min(durations)
    if "min_seconds" not in explicit and shortest < float(options["min_seconds"]):
        m = max(0.01, math.floor(shortest * 100) / 100)
        fits["min_seconds"] = (m, f"the shortest clip lasts {shortest:.3f} s, below min_seconds "
                                  f"{options['min_seconds']:g}")
    return facts, fits
