"""The batch that flows from a modality's dataset to its adapter."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class Sample:
    """One decoded sample.

    Attributes:
        x: the sample tensor, layout fixed by its modality (images: ``(C, H, W)``).
        id: identifier (file path, row index, time stamp).
        label: optional label (int class or float target), None when unlabelled.
        x_mask: optional bool tensor, True where ``x`` is padding / missing, same leading
            layout the modality documents (e.g. ``(N,)`` for points of a cloud).
    """

    x: Tensor
    id: str
    label: float | int | None = None
    x_mask: Tensor | None = None


@dataclass(frozen=True)
class Skipped:
    """Returned instead of a Sample when a sample is bad and ``on_bad_sample="skip"``."""

    source: str
    reason: str


@dataclass
class Batch:
    """A collated batch: ``x (B, ...)``, ``ids`` (B,), ``labels (B,)`` or None, ``x_mask``."""

    x: Tensor
    ids: list[str] = field(default_factory=list)
    labels: Tensor | None = None
    x_mask: Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        mv = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, x=mv(self.x), labels=mv(self.labels), x_mask=mv(self.x_mask))

    def replace(self, **changes) -> "Batch":
        return replace(self, **changes)

    def select(self, idx: Tensor) -> "Batch":
        """The samples at positions ``idx`` (1-D long), in that order."""
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return Batch(self.x[idx], [self.ids[i] for i in idx.tolist()] if self.ids else [], pick(self.labels),
                     pick(self.x_mask))


def collate(samples: list[Sample]) -> Batch:
    """Stack equally shaped samples; pad ragged first axes and mark the padding in x_mask."""
    xs = [s.x for s in samples]
    if all(x.shape == xs[0].shape for x in xs) and all(s.x_mask is None for s in samples):
        x, x_mask = torch.stack(xs), None
    else:
        n = max(x.shape[0] for x in xs)
        x = xs[0].new_zeros((len(xs), n, *xs[0].shape[1:]))
        x_mask = torch.ones(len(xs), n, dtype=torch.bool)
        for i, s in enumerate(samples):
            x[i, : s.x.shape[0]] = s.x
            x_mask[i, : s.x.shape[0]] = False if s.x_mask is None else s.x_mask
    labels = None
    if all(s.label is not None for s in samples):
        labels = torch.tensor([s.label for s in samples])
    return Batch(x=x, ids=[s.id for s in samples], labels=labels, x_mask=x_mask)
