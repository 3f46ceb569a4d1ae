"""The signal modality: ``.npy`` arrays ``(C, T)`` (or ``(T,)``), cropped / padded to ``length``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError
from omnipatch.modalities.base import FileDataset, stream_reader
from omnipatch.modalities.sources import Entry, resolve
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

EXTENSIONS = (".npy",)


class SignalDataset(FileDataset):
    """Signals from a folder / glob / manifest of ``.npy`` files."""

    def __init__(self, source, length: int = 64, channels: int | None = None, on_bad_sample: str = "raise"):
        super().__init__(resolve(source, EXTENSIONS), on_bad_sample)
        self.length = int(length)
        self.channels = channels or self._array(self.entries[0].path).shape[0]

    @staticmethod
    def _array(path: str) -> np.ndarray:
        if Path(path).stat().st_size == 0:
            raise BadSampleError(path, "empty file")
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as e:
            raise BadSampleError(path, f"not a readable .npy array ({type(e).__name__})") from None
        a = a[None] if a.ndim == 1 else a
        if a.ndim != 2 or not np.isfinite(a).all():
            raise BadSampleError(path, f"expected a finite (C, T) array, got shape {a.shape}")
        return a.astype(np.float32)

    def read(self, entry: Entry) -> Sample:
        a = self._array(entry.path)
        if a.shape[0] != self.channels:
            raise BadSampleError(entry.path, f"has {a.shape[0]} channels, expected {self.channels}")
        x = np.zeros((self.channels, self.length), np.float32)
        n = min(self.length, a.shape[1])
        x[:, :n] = a[:, :n]
        return Sample(x=torch.from_numpy(x), id=entry.id, label=self.label_of(entry))


def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0) -> Batch:
    """Random gain and additive noise per sample."""
    B = batch.x.shape[0]
    gain = 1 + 0.2 * strength * (torch.rand(B, 1, 1, generator=generator) - 0.5)
    noise = 0.05 * strength * torch.randn(batch.x.shape, generator=generator)
    return batch.replace(x=batch.x * gain.to(batch.x) + noise.to(batch.x))


@dataclass(frozen=True)
class DataOptions:
    """How signal files are read."""

    length: int = option(64, "64 samples: 8 tokens of 8, a test-sized budget", what="samples per signal "
                         "(cropped or zero-padded)", flag=True)
    channels: int | None = option(None, "None: the first readable file's channel count", what="channel count")


@dataclass(frozen=True)
class AdapterOptions:
    """How the signal adapter patches."""

    patch_size: int = option(8, "8 samples per token", what="samples per patch")


def adapter_kwargs(dataset: SignalDataset, options: dict) -> dict:
    xs = torch.stack([dataset[i].x for i in range(min(len(dataset), 64))])
    return {"in_chans": dataset.channels, "patch_size": pick(AdapterOptions, options).patch_size,
            "mean": xs.mean((0, 2)).tolist(), "std": xs.std((0, 2)).clamp_min(1e-3).tolist()}


def example(folder) -> str:
    """Eight 2-channel sine / square signals of 64 samples, labelled by shape (numpy)."""
    folder, t = Path(folder), np.linspace(0, 1, 64, dtype=np.float32)
    rows = ["path,id,label"]
    for i in range(8):
        wave = np.sin(2 * np.pi * (2 + i) * t)
        wave = np.sign(wave) if i % 2 else wave
        np.save(folder / f"sig{i}.npy", np.stack([wave, 0.5 * wave[::-1]]).astype(np.float32))
        rows.append(f"sig{i}.npy,sig{i},{'square' if i % 2 else 'sine'}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return str(folder / "manifest.csv")


def _open(source, on_bad_sample: str = "raise", **options):
    o = pick(DataOptions, options)
    return SignalDataset(source, length=o.length, channels=o.channels, on_bad_sample=on_bad_sample)


SPEC = ModalitySpec(
    name="signal",
    description="1-D multichannel signals (.npy, C x T), cropped / zero-padded to a length (test plugin)",
    open_dataset=_open,
    adapter="signal",
    adapter_kwargs=adapter_kwargs,
    augment=augment,
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    recipe={"objectives": "mae"},
    model_options=("channels", "patch_size"),
    stream_reader=stream_reader,
    example=example,
    example_options={"length": 32, "patch_size": 8},
)
if "signal" not in MODALITIES:
    MODALITIES.add(SPEC.name, SPEC, SPEC.description)
