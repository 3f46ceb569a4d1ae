"""How a modality plugs in: a frozen spec in the ``MODALITIES`` registry and an adapter class
in the ``ADAPTERS`` registry. Concrete ones live in ``omnipatch.modalities`` and
``omnipatch.adapters``; third-party packages add theirs through the entry-point groups of
the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import torch
from torch.utils.data import Dataset

from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.outputs import Outputs
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
        options: user-settable options with their defaults: a read-only view derived from
            :attr:`data_options` and :attr:`adapter_options` when the spec declares them (one
            source of defaults); a plugin without them may still give the dict itself.
        data_options: the dataclass of the dataset's options (:mod:`omnipatch.options`: each
            field with its default and the reason for it; ``flag`` fields become command-line
            flags of every data-reading command). None: only :attr:`options`.
        adapter_options: the dataclass of the options the adapter takes from the user (patch
            size, groups, normalisation ...), declared the same way. None: none.
        thumbnail: ``(Sample) -> 2-D or (H, W, 3) array`` for pictures (retrieval results);
            None: the default of :func:`omnipatch.plots.thumbnail` (the first channels,
            middle slice of any further axes).
        scan: ``(source, options, explicit) -> (facts, fits)``: a cheap look at the data before it is
            opened (counts, sizes, lengths, channels, ranges, missing cells). ``options`` are the
            defaults updated by the user's, ``explicit`` the names the user set;
            ``fits`` maps each option the data decides
            to ``(value, reason)`` (see :mod:`omnipatch.train.plan`). None: no modality facts.
        recipe: the default training recipe for this modality, as config keys
            (``{"objectives": "mae+dhel", "data.augment_strength": 0.5, ...}``), applied by
            the CLI under the user's own YAML / flags / ``--set``; each chosen by measurement
            (README, Results).
        raw_features: ``(Sample) -> 1-D float array``: the modality's raw-feature baseline
            for the "did pretraining help?" report (pixels, log-mel statistics, D2 shape
            histogram, ...). None: the flattened sample.
        raw_name: a few words naming that baseline in reports.
        readout: ``(PatchTokens, tokens (B, L, D)) -> (B, E)``: the sample embedding that
            ``embed``, ``report`` and ``retrieve`` give from the encoder's tokens (e.g. coarse
            regions, :func:`~omnipatch.encoder.region_pool`). Training objectives still pool
            by the mean. None: the mean of the valid tokens (``E = D``).
        model_options: options baked into a trained model (variables, columns, channels,
            patch size ...): ``embed`` / ``finetune`` / ``retrieve`` refuse a different value.
        train_options: options that shape pretraining only (e.g. random crops per volume):
            reading data for a trained model goes back to their defaults unless given.
        stream_reader: ``(probe_dataset) -> (path, key, label) -> Sample``: decodes one member
            extracted from a tar shard with an opened data set's reader and options (see
            :mod:`omnipatch.train.shards`). None: the modality does not stream from shards.
        read_target: ``(path) -> integer ndarray``: reads a dense label map (segmentation
            target) in this modality's file formats; ``.npy`` always works. None: ``.npy`` only.
        example: ``(folder) -> source``: writes a few (2-4) tiny real files of this modality
            with the field's own library and returns the source to open them with (a folder,
            glob, manifest or table), for the registry-driven contract tests and demos.
        example_options: dataset options that keep :attr:`example` tiny (small sizes).
        demo: ``(out, steps=None, quiet=False) -> results``: a worked example on bundled real
            data that ``omnipatch demo`` runs for the default modality
            (:meth:`~omnipatch.registry.Registry.default`). None: no demo.
        outputs: how embeddings are labelled with this field's coordinates and written in its
            formats (:class:`~omnipatch.outputs.Outputs`: ``.nc``, ``.nii.gz``, ...; ``omnipatch
            embed --out`` picks a writer by suffix). None: the core's Parquet only (``id,
            embedding``; at patch level one row per token).
    """

    name: str
    description: str
    open_dataset: Callable[..., Dataset]
    adapter: str
    adapter_kwargs: Callable[[Dataset, dict], dict]
    augment: Callable[[Batch, torch.Generator, float], Batch]
    default_mask: str = "random"
    options: Mapping[str, Any] = field(default_factory=dict)
    thumbnail: Callable[[Any], Any] | None = None
    scan: Callable[[Any, dict, set], tuple[dict, dict]] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    raw_features: Callable[[Any], Any] | None = None
    raw_name: str = "raw values"
    readout: Callable[[Any, torch.Tensor], torch.Tensor] | None = None
    model_options: tuple[str, ...] = ()
    train_options: tuple[str, ...] = ()
    stream_reader: Callable[[Any], Callable[[str, str, str | None], Any]] | None = None
    read_target: Callable[[str], Any] | None = None
    example: Callable[[Any], Any] | None = None
    example_options: dict[str, Any] = field(default_factory=dict)
    outputs: Outputs | None = None
    demo: Callable[..., Any] | None = None
    data_options: type | None = None
    adapter_options: type | None = None

    def __post_init__(self) -> None:
        if self.data_options is None and self.adapter_options is None:
            object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
            return
        from omnipatch.options import defaults

        data, adapter = defaults(self.data_options), defaults(self.adapter_options)
        both = sorted(set(data) & set(adapter))
        if both:
            raise OmnipatchError(f"modality {self.name!r}: option(s) {both} declared in both data_options and "
                                 f"adapter_options")
        derived = {**data, **adapter}
        if self.options and dict(self.options) != derived:
            raise OmnipatchError(f"modality {self.name!r}: give options or data_options/adapter_options, not both "
                                 f"(the dataclasses are the one source of defaults)")
        object.__setattr__(self, "options", MappingProxyType(derived))

    def option_table(self) -> list:
        """Every declared option (:class:`~omnipatch.options.OptionInfo`: name, default,
        type, reason, flag), data options first; a spec with a plain ``options`` dict lists
        those with no reason."""
        from omnipatch.options import OptionInfo, describe

        if self.data_options is None and self.adapter_options is None:
            return [OptionInfo(k, v, type(v).__name__ if v is not None else "any", "", "", False, "data")
                    for k, v in self.options.items()]
        return describe(self.data_options, "data") + describe(self.adapter_options, "adapter")


def modality_list(text: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"image"`` -> ``["image"]``, ``"image, audio"`` -> ``["image", "audio"]`` (a paired run's
    ``data.modality``); a list comes back stripped. The one place a modality string is split
    (:mod:`omnipatch.runspec` re-exports it)."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else [str(t) for t in text]
    return [p.strip() for p in parts if p.strip()]


#: the bundled modalities and adapters: a plugin module the registries import on first use
BUILTINS = "omnipatch.builtins"
MODALITIES: Registry[ModalitySpec] = Registry("modality", entry_point_group="omnipatch.modalities", builtins=BUILTINS)
ADAPTERS: Registry[type] = Registry("adapter", entry_point_group="omnipatch.adapters", builtins=BUILTINS)


def load_builtin() -> None:
    """Deprecated: the registries load the built-ins on first use. Registers the bundled
    modalities and adapters (and the entry-point plugins) now."""
    MODALITIES.load_plugins()
    ADAPTERS.load_plugins()
