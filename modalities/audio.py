"""Audio: WAV / FLAC / OGG (anything libsndfile decodes) -> log-mel spectrograms.

A sample is ``x (T, C, F)``: T time frames first (so clips of different lengths collate by
padding the first axis, marked in ``x_mask``), C channels (1 after the default down-mix),
F mel bands; values are decibels (``10 log10`` of mel power, floored 80 dB below the clip's
peak). ``x_mask (T,)`` is True on frames that are padding, not sound.

Per file: soundfile decodes only the window that is kept -- a manifest's ``start`` / ``end``
segment (seconds), cropped to ``seconds`` (its centre by default) or, with ``seconds=0``
(variable length), to its first ``max_seconds`` -- seeking past the rest; channels are
down-mixed (or checked), torchaudio resamples to ``sample_rate``, clips shorter than the
window are padded with the padding masked, then torchaudio's ``MelSpectrogram`` (25 ms Hann
window, 10 ms hop). The silence check looks at the decoded window.

Fitted to the data (``omnipatch inspect`` / ``pretrain``, :mod:`omnipatch.modalities.audio_scan`;
the headers of up to 64 evenly spaced files via ``soundfile.info``, nothing decoded), unless set:

- ``sample_rate``: the highest native rate when every scanned file is below the default
  16 kHz (8 kHz telephone audio stays 8 kHz: upsampling adds no information);
- ``n_mels``: at that rate, the largest multiple of the frequency patch (<= 64) whose mel
  filterbank has no empty band (64 bands stay valid down to 8 kHz; at 4 kHz the lowest one
  would hold no FFT bin, so 48);
- ``seconds``: the median clip length rounded to 0.25 s and clamped to [0.5, 10] s; shorter
  clips are padded (the padding marked in ``x_mask``, so neither the loss nor the
  embedding sees it; the adapter pads T to whole patches the same way), longer ones cropped;
- ``min_seconds``: lowered to the shortest clip (>= 0.01 s) when it is below 0.1 s (the STFT
  still needs half an FFT window).

Bad input -- missing, empty (0 bytes or 0 samples), corrupt or truncated, unsupported format,
silent, shorter than ``min_seconds``, NaN samples -- raises :class:`BadSampleError` naming
the file and the reason (or is skipped and reported with ``on_bad_sample="skip"``).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from omnipatch.batch import Batch, Sample
from omnipatch.encoder import region_pool
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities import examples
from omnipatch.modalities.audio_read import EXTENSIONS, manifest_seconds, read_audio, stft_sizes
from omnipatch.modalities.audio_scan import patch_pair, scan
from omnipatch.modalities.base import FileDataset, stream_reader
from omnipatch.modalities.sources import Entry, resolve
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

SILENCE_DBFS = -80.0  # a clip whose peak is below this is "silent" (16-bit dither is ~-96)
TOP_DB = 80.0  # dynamic range kept below each clip's loudest mel bin


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch ops on one thread: a clip's resampling and STFT are tiny, and on a busy
    machine intra-op threads cost more than they save (15-20x per clip measured on a shared
    2-core box)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class AudioDataset(FileDataset):
    """Log-mel spectrograms ``(T, C, F)`` from a folder, glob or manifest.

    Args:
        source: folder / glob / manifest (``path``, optional ``id``, ``label``, ``start``,
            ``end`` in seconds). Several segments of one file need distinct ids; without an
            ``id`` column, ``#start-end`` is appended to the path.
        sample_rate: every file is resampled to this rate (Hz).
        seconds: window length; longer clips are cropped (``crop``), shorter ones padded
            with the padding marked in ``x_mask``. ``0`` / None keeps each clip's length.
        n_mels: mel bands F.
        hop_ms, win_ms: STFT hop and window (10 ms / 25 ms, the speech standard).
        channels: 1 down-mixes to mono; k keeps k channels (mono files are repeated, any
            other mismatch is an error); None infers k from the first readable file.
        min_seconds: shorter clips are bad samples ("too short").
        max_seconds: variable-length clips are cut to this many seconds (memory bound).
        crop: ``"center"`` or ``"start"``: which window of a longer clip is kept (random
            crops are the augmentation's job, so cached samples stay deterministic).
        on_bad_sample: ``raise`` or ``skip`` (see :class:`FileDataset`).
    """

    def __init__(self, source, sample_rate: int = 16000, seconds: float | None = 1.0, n_mels: int = 64,
                 hop_ms: float = 10.0, win_ms: float = 25.0, channels: int | None = 1,
                 min_seconds: float = 0.1, max_seconds: float = 30.0, crop: str = "center",
                 on_bad_sample: str = "raise"):
        super().__init__(resolve(source, EXTENSIONS), on_bad_sample)
        if crop not in ("center", "start"):
            raise OmnipatchError(f"audio option crop must be 'center' or 'start', got {crop!r}")
        if int(sample_rate) <= 0 or int(n_mels) <= 0 or hop_ms <= 0 or win_ms <= 0:
            raise OmnipatchError("audio options sample_rate, n_mels, hop_ms, win_ms must be positive")
        self.sample_rate, self.n_mels = int(sample_rate), int(n_mels)
        self.seconds = float(seconds) if seconds else None
        self.hop, self.win, self.n_fft = stft_sizes(self.sample_rate, hop_ms, win_ms)
        self.min_samples = max(int(min_seconds * self.sample_rate), self.n_fft // 2 + 1)
        self.max_seconds, self.crop = float(max_seconds), crop
        self.frames = round(self.seconds * self.sample_rate / self.hop) if self.seconds else None
        self._mel, self._resamplers = None, {}
        self.channels = channels if channels is not None else self._infer_channels()
        self.entries = [self._unique_id(e) for e in self.entries]

    @staticmethod
    def _unique_id(e: Entry) -> Entry:
        s, t = e.get("start"), e.get("end")
        if (s or t) and os.path.basename(e.id) == os.path.basename(e.path):
            return Entry(e.path, f"{e.id}#{s or 0}-{t or 'end'}", e.label, e.extra)
        return e

    def _infer_channels(self) -> int:
        for e in self.entries[:16]:
            try:
                return read_audio(e.path, 0.0, 0.01)[0].shape[1]
            except BadSampleError:
                continue
        raise OmnipatchError(f"none of the first {min(16, len(self.entries))} audio files could be read "
                             f"(first: {self.entries[0].path})")

    @property
    def mel(self):
        if self._mel is None:
            from torchaudio.transforms import MelSpectrogram

            self._mel = MelSpectrogram(sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win,
                                       hop_length=self.hop, n_mels=self.n_mels, power=2.0, center=True)
        return self._mel

    def resampler(self, sr: int):
        """torchaudio ``Resample`` from ``sr`` to ``sample_rate``, its sinc kernel built once per
        source rate (building it costs more than resampling a few seconds of sound)."""
        if sr not in self._resamplers:
            from torchaudio.transforms import Resample

            self._resamplers[sr] = Resample(sr, self.sample_rate)
        return self._resamplers[sr]

    def waveform(self, entry: Entry) -> Tensor:
        """Decoded, channel-matched, resampled samples ``(C, N)`` at ``sample_rate``: only the
        window that :meth:`features` keeps is decoded and resampled."""
        data, sr = read_audio(entry.path, manifest_seconds(entry, "start"), manifest_seconds(entry, "end"),
                              window=self.seconds or self.max_seconds, crop=self.crop if self.seconds else "start")
        peak = float(np.abs(data).max())
        if peak <= 10 ** (SILENCE_DBFS / 20):
            level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.0f} dBFS"
            raise BadSampleError(entry.path, f"silent ({level}, below {SILENCE_DBFS:.0f} dBFS)")
        wave = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, N)
        c = wave.shape[0]
        if self.channels == 1 and c > 1:
            wave = wave.mean(0, keepdim=True)
        elif c != self.channels:
            if c != 1:
                raise BadSampleError(entry.path, f"has {c} channels, expected {self.channels} "
                                                 f"(set channels=1 to down-mix)")
            wave = wave.expand(self.channels, -1)
        if sr != self.sample_rate:
            wave = self.resampler(sr)(wave.contiguous())
        if wave.shape[1] < self.min_samples:
            raise BadSampleError(entry.path, f"too short: {data.shape[0] / sr:.3f} s, need at least "
                                             f"{self.min_samples / self.sample_rate:.3f} s")
        return wave

    def features(self, wave: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(C, N)`` samples -> ``(x (T, C, F) dB, x_mask (T,) or None)`` with the window applied."""
        n = wave.shape[1]
        limit = round((self.seconds or self.max_seconds) * self.sample_rate)
        if n > limit:
            a = (n - limit) // 2 if (self.crop == "center" and self.seconds) else 0
            wave = wave[:, a:a + limit]
        with torch.no_grad():
            power = self.mel(wave.float())  # (C, F, T')
        db = 10.0 * torch.log10(power.clamp_min(1e-10))
        db = torch.maximum(db, db.amax() - TOP_DB).permute(2, 0, 1).contiguous()  # (T', C, F)
        if self.frames is None:
            return db, None
        T, valid = self.frames, min(self.frames, db.shape[0])
        x = db.new_full((T, *db.shape[1:]), float(db.amin()))
        x[:valid] = db[:valid]
        mask = torch.zeros(T, dtype=torch.bool)
        mask[valid:] = True
        return x, mask

    def read(self, entry: Entry) -> Sample:
        with one_thread():
            x, mask = self.features(self.waveform(entry))
        return Sample(x=x, id=entry.id, label=self.label_of(entry), x_mask=mask)


def spectrogram_stats(dataset, max_samples: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean / std of the dB values over the non-padding frames of up to
    ``max_samples`` evenly spaced readable samples (computed once; the adapter's config
    carries them into the checkpoint)."""
    n = len(dataset)
    idx = np.linspace(0, n - 1, num=min(n, max_samples)).round().astype(int)
    chunks = []
    for s in (dataset[int(i)] for i in idx):
        if isinstance(s, Sample):
            x = s.x if s.x_mask is None else s.x[~s.x_mask]
            chunks.append(x.transpose(0, 1).reshape(x.shape[1], -1).double())  # (C, T*F)
    if not chunks:
        raise OmnipatchError("no readable audio to compute normalisation statistics")
    x = torch.cat(chunks, 1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-6).tolist()


def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0) -> Batch:
    """One random view per clip, batched, of ``x (B, T, C, F)`` dB spectrograms:

    1. random time crop of 60-100 % of the window, resampled back to T frames (crop + time
       stretch; the crop always overlaps the clip's sound, never only its padding);
    2. a frequency warp by a factor in [1/1.15, 1.15] (vocal tract length perturbation,
       Jaitly & Hinton, 2013, applied to the mel axis): other speakers, same words;
    3. SpecAugment (Park et al., 2019): two time masks (up to 10 % of T each) and two
       frequency masks (up to 15 % of F), filled with the clip's mean;
    4. gain of +-6 dB;
    5. additive white noise 20-60 dB below the clip's peak (added in the power domain).
    ``x_mask`` follows the crop. All magnitudes scale with ``strength``.
    """
    x = batch.x.float()
    B, T, C, F = x.shape
    g, dev = generator, x.device
    r = lambda *s: torch.rand(*s, generator=g, device=g.device).to(dev)
    mask = batch.x_mask if batch.x_mask is not None else torch.zeros(B, T, dtype=torch.bool, device=dev)
    n_valid = (~mask).sum(1).float()
    # 1. crop of c frames starting at s, sampled back to T frames
    c = T * (1.0 - 0.4 * strength * r(B))
    s = r(B) * torch.minimum(T - c, n_valid - c / 2).clamp_min(0)
    pos = s[:, None] + torch.arange(T, device=dev)[None] * (c / T)[:, None]  # (B, T) source frame
    i0 = pos.floor().long().clamp(0, T - 1)
    i1 = (i0 + 1).clamp(max=T - 1)
    w = (pos - i0).clamp(0, 1)[:, :, None, None]
    take = lambda i: x.gather(1, i[:, :, None, None].expand(B, T, C, F))
    x = take(i0) * (1 - w) + take(i1) * w
    mask = mask.gather(1, pos.round().long().clamp(0, T - 1))
    # 2. frequency warp (VTLP-like): band f takes band f / alpha, alpha in [0.87, 1.15]
    alpha = torch.exp((r(B) * 2 - 1) * math.log(1.15) * strength)
    fpos = (torch.arange(F, device=dev)[None] / alpha[:, None]).clamp(max=F - 1)  # (B, F)
    f0 = fpos.floor().long()
    f1 = (f0 + 1).clamp(max=F - 1)
    fw = (fpos - f0)[:, None, None, :]
    along_f = lambda i: x.gather(3, i[:, None, None, :].expand(B, T, C, F))
    x = along_f(f0) * (1 - fw) + along_f(f1) * fw
    # 3. SpecAugment with the per-clip, per-channel mean as fill
    keep = (~mask).float()[:, :, None, None]
    fill = (x * keep).sum((1, 3), keepdim=True) / (keep.sum(1, keepdim=True) * F).clamp_min(1)
    hide = torch.zeros(B, T, 1, F, dtype=torch.bool, device=dev)
    for size, max_w, view in ((T, 0.10, (B, T, 1, 1)), (F, 0.15, (B, 1, 1, F))):
        ar = torch.arange(size, device=dev)[None]
        for _ in range(2):
            width = r(B, 1) * max_w * size * strength
            start = r(B, 1) * (size - width)
            hide |= ((ar >= start) & (ar < start + width)).view(view)
    x = torch.where(hide, fill, x)
    # 4. gain, 5. noise (power domain: 10 log10(10^(x/10) + 10^(n/10)))
    x = x + ((r(B) * 2 - 1) * 6.0 * strength)[:, None, None, None]
    peak = x.masked_fill(~keep.bool(), -1e4).amax((1, 2, 3), keepdim=True)
    snr = 60.0 - 40.0 * strength * r(B, 1, 1, 1)
    noise = peak - snr + 2.0 * torch.randn(x.shape, generator=g, device=g.device).to(dev)
    k = math.log(10) / 10
    x = torch.logaddexp(x * k, noise * k) / k
    return batch.replace(x=x, x_mask=mask if batch.x_mask is not None or mask.any() else None)


def readout(tokens, z: Tensor) -> Tensor:
    """The sample embedding of a clip: its tokens averaged over time, kept apart by frequency
    band group (at most 4: low ... high; ``(B, G * D)``), as speech embeddings pool over time
    only. The mean of all tokens also averages the band groups into one another, losing the
    spectral envelope. Measured on examples/audio_digits.py, leave-one-speaker-out with the
    default checkpoints (README, Results): linear probe kal 0.450 -> 0.453, awb 0.827 -> 0.880,
    rms 0.600 -> 0.660, slt 0.347 -> 0.380 against the mean of the tokens."""
    valid = None if tokens.padding_mask is None else ~tokens.padding_mask
    return region_pool(z, tokens.grid, (min(4, tokens.grid[1]),), mean_axes=(0,), valid=valid)


@dataclass(frozen=True)
class DataOptions:
    """How sound files become log-mel spectrograms."""

    sample_rate: int = option(16000, "16 kHz, speech models' rate (the scan keeps a lower native rate: no "
                              "upsampling)", what="rate in Hz the sound is resampled to")
    seconds: float | None = option(1.0, "1 s windows (the scan fits the median clip length, 0.5-10 s); 0 or "
                                   "None: variable length", what="window length in seconds")
    n_mels: int = option(64, "64 mel bands: half the 128 of AudioMAE / AST, a CPU budget; valid down to 8 kHz",
                         what="mel bands")
    hop_ms: float = option(10.0, "10 ms hop, the speech standard", what="STFT hop in ms")
    win_ms: float = option(25.0, "25 ms Hann window, the speech standard", what="STFT window in ms")
    channels: int | None = option(1, "down-mix to mono: most sound is one source", what="channel count (None: "
                                  "as stored)")
    min_seconds: float = option(0.1, "shorter clips give no stable STFT frame (the scan lowers it to the "
                                "shortest clip)", what="shortest clip accepted")
    max_seconds: float = option(30.0, "variable-length windows stop at 30 s (memory)", what="longest window read")
    crop: str = option("center", "the centre of a long clip holds the event more often than its start",
                       what="which window of a long clip is kept (center or start)")


@dataclass(frozen=True)
class AdapterOptions:
    """How the audio adapter patches spectrograms."""

    patch_size: int | list[int] = option([4, 16], "40 ms x 16 bands: 4 frequency patches at 64 mels",
                                         what="patch [time frames, mel bands]")
    norm: str = option("global", "one mean/std over the data set keeps loudness differences ('utterance': per-clip CMVN)",
                       what="spectrogram normalisation")


def _patch(options: dict) -> list[int]:
    return patch_pair(pick(AdapterOptions, options).patch_size)


def _adapter_kwargs(dataset: AudioDataset, options: dict) -> dict:
    patch = _patch(options)
    if len(patch) != 2:
        raise OmnipatchError(f"audio patch_size is [time, frequency], got {options.get('patch_size')}")
    if dataset.n_mels % patch[1]:
        raise OmnipatchError(f"audio n_mels={dataset.n_mels} is not a multiple of the frequency patch "
                             f"{patch[1]} (patch_size={patch})")
    mean, std = spectrogram_stats(dataset)
    return {"in_chans": dataset.channels, "patch_size": patch, "mean": mean, "std": std,
            "norm": str(pick(AdapterOptions, options).norm or AdapterOptions.norm)}


def _open(source, on_bad_sample: str = "raise", **options) -> AudioDataset:
    o = pick(DataOptions, options)
    return AudioDataset(source, sample_rate=o.sample_rate, seconds=o.seconds, n_mels=o.n_mels, hop_ms=o.hop_ms,
                        win_ms=o.win_ms, channels=o.channels, min_seconds=o.min_seconds, max_seconds=o.max_seconds,
                        crop=o.crop, on_bad_sample=on_bad_sample)


def thumbnail(sample: Sample):
    """``x (T, C, F)`` -> the first channel's spectrogram, frequency up, ``(F, T)``."""
    return sample.x[:, 0, :].float().T.flip(0).cpu().numpy()


def raw_features(sample: Sample) -> np.ndarray:
    """The raw-feature baseline: per-channel, per-mel-band mean and std of the dB values over
    the clip's sound frames (padding, marked in ``x_mask``, left out): ``2 * C * F`` values."""
    x = sample.x.float()
    if sample.x_mask is not None and bool((~sample.x_mask).any()):
        x = x[~sample.x_mask]
    std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.zeros_like(x[0])
    return torch.cat([x.mean(0).flatten(), std.flatten()]).numpy()


SPEC = ModalitySpec(
    name="audio",
    description="sound (WAV, FLAC, OGG, ...) -> log-mel spectrogram, fixed window or variable length",
    open_dataset=_open,
    adapter="audio",
    adapter_kwargs=_adapter_kwargs,
    augment=augment,
    default_mask="random",
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    thumbnail=thumbnail,
    scan=scan,
    # examples/audio_digits.py, README "Results": MAE + MV-DHEL at half strength
    recipe={"objectives": "mae+dhel", "data.augment_strength": 0.5},
    raw_features=raw_features,
    raw_name="log-mel mean+std",
    readout=readout,
    # what a mel band means (its frequencies: the rate and the band count), the channel count
    # and the patch embedding; hop / window / seconds / crop change the time axis only
    model_options=("sample_rate", "n_mels", "channels", "patch_size", "norm"),
    example=examples.audio,
    example_options={"sample_rate": 8000, "seconds": 0.25, "n_mels": 16, "patch_size": [5, 4]},
    stream_reader=stream_reader,
)
MODALITIES.add(SPEC.name, SPEC, SPEC.description)
