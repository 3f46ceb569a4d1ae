"""The run record: one typed, versioned :class:`RunSpec`, saved as the checkpoint's config.

A run is trained from a :class:`~omnipatch.config.Config` (YAML, flags, ``--set``); what it
was trained with is a :class:`RunSpec`: the modalities, each one's recorded data options (the
user's and those the data scan fitted), the model, objectives, cross-modal head and training
settings. Every reader of a checkpoint goes through :meth:`RunSpec.from_dir` (or
:meth:`RunSpec.from_checkpoint` for a config already loaded) and asks ``spec.modalities`` and
``spec.options_for(m)``; nothing else splits modality strings or digs into nested dicts.

On disk (the choice, and why): ``config.json["run"]`` keeps the shape it always had -- the
sections ``data`` / ``model`` / ``objectives`` / ``train`` of a ``Config``, ``data.modality``
the comma-separated names, ``data.options`` flat for one modality and one dict per modality
for a paired run -- plus ``"version"``. So a checkpoint written now still reads in tools and
scripts that index ``config["run"]["data"]``, and one written before (no ``"version"``:
version 1) reads here through :func:`migrate`. The other top-level keys of ``config.json``
(``model``: the built model's config, ``modality``, ``classes``, ``init``, and a fine-tuning
run's ``finetune`` / ``head`` ...) belong to their writers and are left as they are.

Versions:
    1: no ``"version"`` key (every checkpoint before the RunSpec); ``train.bf16`` may stand
       for ``train.precision``; a run without ``objectives`` has them in the model config.
    2: ``"version": 2``; the same sections.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnipatch.config import Config, DataConfig, ModelConfig, TrainConfig, parse_objectives, set_key
from omnipatch.errors import OmnipatchError
from omnipatch.modality import modality_list  # the one place a modality string is split; re-exported here

#: the version :meth:`RunSpec.to_dict` writes
VERSION = 2


@dataclass(frozen=True)
class CrossHead:
    """The cross-modal head of a paired run (CLIP between the modalities' pooled embeddings)."""

    proj_dim: int
    temperature: float
    weight: float
    views: str
    augment: float

    def as_kwargs(self) -> dict:
        """The ``cross`` argument of :class:`~omnipatch.model.OmniModel`."""
        return dataclasses.asdict(self)


@dataclass
class RunSpec:
    """What a run was trained with.

    Attributes:
        modalities: the run's modalities (two or more: a paired, cross-modal run).
        options: per modality, the recorded data options (only those given or fitted: the
            modality's declared defaults fill the rest, see :meth:`data_options`).
        source: the training data source.
        on_bad_sample, num_workers, cache, augment_strength: the rest of the data section.
        model: the model settings (:class:`~omnipatch.config.ModelConfig`).
        objectives: objective name -> arguments (``{"weight": w, ...}``).
        train: the training settings (:class:`~omnipatch.config.TrainConfig`).
        version: the record's format version (:data:`VERSION` when written now).
    """

    modalities: list[str]
    options: dict[str, dict] = field(default_factory=dict)
    source: str = ""
    on_bad_sample: str = "raise"
    num_workers: int = 0
    cache: bool = True
    augment_strength: float = 1.0
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: dict = field(default_factory=lambda: copy.deepcopy(Config().objectives))
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = VERSION

    # -- reading ---------------------------------------------------------------------------------
    @property
    def paired(self) -> bool:
        """True for a cross-modal run over two or more modalities."""
        return len(self.modalities) > 1

    @property
    def modality(self) -> str:
        """The first modality (the only one of a single-modality run)."""
        return self.modalities[0]

    @property
    def cross(self) -> CrossHead | None:
        """The cross-modal head settings of a paired run; None for one modality."""
        if not self.paired:
            return None
        m = self.model
        return CrossHead(m.cross_dim, m.cross_temperature, m.cross_weight, m.cross_views, m.cross_augment)

    def check_modality(self, m: str | None) -> str:
        """``m`` if the run has it, the first modality for None; else one line naming both."""
        m = m or self.modality
        if m not in self.modalities:
            raise OmnipatchError(f"this run was trained on {', '.join(self.modalities)}, not {m!r}")
        return m

    def options_for(self, m: str | None = None) -> dict:
        """The recorded data options of modality ``m`` (default: the first), as a new dict."""
        return copy.deepcopy(self.options.get(self.check_modality(m), {}))

    def data_options(self, m: str | None = None):
        """``m``'s options as its modality's ``DataOptions`` instance (declared defaults
        under the recorded values); None when the modality declares no dataclass."""
        return self._typed(m, "data_options")

    def adapter_options(self, m: str | None = None):
        """``m``'s options as its modality's ``AdapterOptions`` instance; None without one."""
        return self._typed(m, "adapter_options")

    def _typed(self, m: str | None, which: str):
        from omnipatch.modality import MODALITIES
        from omnipatch.options import pick

        m = self.check_modality(m)
        cls = getattr(MODALITIES.get(m), which)
        return None if cls is None else pick(cls, self.options.get(m, {}))

    def only(self, m: str, options: dict | None = None) -> "RunSpec":
        """This run narrowed to modality ``m`` (a fine-tuning run records one), with ``options``
        in place of the recorded ones when given."""
        m = self.check_modality(m)
        return dataclasses.replace(self, modalities=[m], options={m: dict(self.options_for(m) if options is None
                                                                          else options)})

    # -- Config <-> RunSpec ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Config) -> "RunSpec":
        """The record of a run configured by ``cfg`` (options copied; an empty
        ``data.modality`` is the registry's default)."""
        names = config_modalities(cfg)
        opts = cfg.data.options or {}
        if len(names) > 1:  # a paired run keeps each modality's options under its name
            per = {m: dict(opts[m]) if isinstance(opts.get(m), dict) else {} for m in names}
        else:
            per = {m: dict(opts) for m in names}
        d = cfg.data
        return cls(names, copy.deepcopy(per), d.source, d.on_bad_sample, d.num_workers, d.cache, d.augment_strength,
                   copy.deepcopy(cfg.model), copy.deepcopy(cfg.objectives), copy.deepcopy(cfg.train))

    def to_config(self) -> Config:
        """The :class:`~omnipatch.config.Config` that trains this run again (a resume)."""
        if self.paired:
            opts = copy.deepcopy(self.options)
        else:
            opts = copy.deepcopy(self.options.get(self.modality, {})) if self.modalities else {}
        data = DataConfig(",".join(self.modalities), self.source, opts, self.on_bad_sample, self.num_workers,
                          self.cache, self.augment_strength)
        return Config(data, copy.deepcopy(self.model), copy.deepcopy(self.objectives), copy.deepcopy(self.train))

    # -- on disk ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The ``config.json["run"]`` section (see the module docstring for its shape)."""
        return {"version": VERSION, **self.to_config().to_dict()}

    @classmethod
    def from_dict(cls, d: dict, fallback: dict | None = None) -> "RunSpec":
        """A record written by :meth:`to_dict` or by any earlier version (:func:`migrate`).

        Args:
            d: the ``"run"`` section.
            fallback: the rest of the checkpoint config, for what an old record lacks (its
                modality names, the model config's objectives).
        """
        d = migrate(d, fallback)
        cfg = Config()
        objs = d["objectives"]
        cfg.objectives = parse_objectives(objs) if isinstance(objs, str) else copy.deepcopy(dict(objs))
        for section in ("data", "model", "train"):
            obj = getattr(cfg, section)
            known = {f.name for f in dataclasses.fields(obj)}
            for k, v in (d.get(section) or {}).items():
                if k in known or f"{section}.{k}" in _READ_ALIASES:
                    set_key(cfg, f"{section}.{k}", copy.deepcopy(v))
                # a key this version does not know (a newer writer's) is left out: the record still loads
        return cls.from_config(cfg)

    @classmethod
    def from_checkpoint(cls, config: dict) -> "RunSpec":
        """The record of a loaded checkpoint config (a pretraining or a fine-tuning run)."""
        if not isinstance(config, dict):
            raise OmnipatchError(f"checkpoint config must be a mapping, got {type(config).__name__}")
        return cls.from_dict(config.get("run") or {}, config)

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> "RunSpec":
        """The record of the checkpoint in ``run_dir`` (:func:`omnipatch.checkpoint.load_config`)."""
        from omnipatch.train import checkpoint as ckpt

        return cls.from_checkpoint(ckpt.load_config(run_dir))


def record_steps(config: dict, steps: int) -> None:
    """In a checkpoint ``config`` being written, make the run record ask for ``steps`` steps
    and no wall-clock budget (a budgeted run sized its steps; a resume continues those)."""
    run = config.get("run")
    if isinstance(run, dict) and isinstance(run.get("train"), dict):
        run["train"].update(steps=int(steps), budget=0.0)


#: old keys that :func:`~omnipatch.config.set_key` still maps (``train.bf16`` -> ``train.precision``)
_READ_ALIASES = ("train.bf16",)


def migrate(run: dict, fallback: dict | None = None) -> dict:
    """A ``"run"`` section of any version, as the current version's (a new dict).

    Version 1 (no ``"version"``) had the same sections; what may be missing is filled from
    ``fallback`` (the rest of the checkpoint config): the modality names (top-level
    ``"modality"``, which the readers before the RunSpec trusted) and the objectives (the
    model config's). ``train.bf16`` is read by :func:`~omnipatch.config.set_key`'s alias.

    Raises:
        OmnipatchError: for a record of a newer version than this one reads, or a section
            that is not a mapping.
    """
    if not isinstance(run, dict):
        raise OmnipatchError(f"checkpoint config: 'run' must be a mapping, got {type(run).__name__}")
    out: dict[str, Any] = copy.deepcopy(run)
    version = int(out.pop("version", 1) or 1)
    if version > VERSION:
        raise OmnipatchError(f"checkpoint config: run record version {version} is newer than this omnipatch reads "
                             f"(up to {VERSION}); upgrade omnipatch")
    fallback = fallback or {}
    for section in ("data", "model", "train"):
        if not isinstance(out.get(section) or {}, dict):
            raise OmnipatchError(f"checkpoint config: run.{section} must be a mapping")
        out[section] = dict(out.get(section) or {})
    if isinstance(fallback.get("modality"), str) and fallback["modality"].strip():
        out["data"]["modality"] = fallback["modality"]  # what every reader before the RunSpec used
    if not out["data"].get("modality"):
        raise OmnipatchError("checkpoint config: no modality recorded (run.data.modality)")
    if not out.get("objectives"):
        out["objectives"] = (fallback.get("model") or {}).get("objectives") or {}
    out["version"] = VERSION
    return out


def config_modalities(cfg: Config) -> list[str]:
    """``cfg.data.modality`` as a list; empty: ``[MODALITIES.default()]`` (the core names no
    modality: the bundled plugins register image as the default)."""
    from omnipatch.modality import MODALITIES

    return modality_list(cfg.data.modality) or [MODALITIES.default()]


__all__ = ["VERSION", "CrossHead", "RunSpec", "config_modalities", "migrate", "modality_list", "record_steps"]
