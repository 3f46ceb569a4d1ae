"""How a modality plugs in: a frozen spec in the ``MODALITIES`` registry and an adapter class
in the ``ADAPTERS`` registry. Concrete ones live in ``omnipatch.modalities`` and
``omnipatch.adapters``; third-party packages add theirs through the entry-point groups of
the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from omnipatch.batch import Batch
from omnipatch.registry import Registry


@dataclass(frozen=True)
class ModalitySpec:
    """Everything the core needs to know about a modality, and nothing more.

    Attributes:
        name: registry name (``image``, ``audio``, ...).
        description: one line for ``omnipatch list``.
        open_dataset: ``(source, **options) -> Dataset`` of :class:`~omnipatch.batch.Sample`.
        adapter: registered adapter name.
        adapter_kwargs: ``(dataset, options) -> dict`` infers adapter arguments (channels,
            size) from the data and the user's options.
        augment: ``(batch, generator, strength) -> batch``: one random view per call,
            batched; used for contrastive views.
        default_mask: masking strategy used when the user names none.
        options: user-settable dataset options with their defaults and reasons.
        thumbnail: ``(Sample) -> 2-D or (H, W, 3) array`` for pictures (retrieval results);
            None: the default of :func:`omnipatch.plots.thumbnail` (the first channels,
            middle slice of any further axes).
    """

    name: str
    description: str
    open_dataset: Callable[..., Dataset]
    adapter: str
    adapter_kwargs: Callable[[Dataset, dict], dict]
    augment: Callable[[Batch, torch.Generator, float], Batch]
    default_mask: str = "random"
    options: dict[str, Any] = field(default_factory=dict)
    thumbnail: Callable[[Any], Any] | None = None


MODALITIES: Registry[ModalitySpec] = Registry("modality", entry_point_group="omnipatch.modalities")
ADAPTERS: Registry[type] = Registry("adapter", entry_point_group="omnipatch.adapters")


def load_builtin() -> None:
    """Import the bundled modalities and adapters so they register themselves."""
    import omnipatch.adapters  # noqa: F401
    import omnipatch.modalities  # noqa: F401
