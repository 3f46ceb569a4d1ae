"""Typed run configuration: YAML in, ``--set key=value`` overrides, explicit arguments out.

Each component receives only its own section. Defaults carry their reasons.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnipatch.errors import OmnipatchError


@dataclass
class DataConfig:
    modality: str = ""  # "" = the registry's default (MODALITIES.default(); the bundled set's is image)
    source: str = ""
    # modality options (image_size, patch_size, channels, ...): see `omnipatch list`
    options: dict = field(default_factory=dict)
    on_bad_sample: str = "raise"  # "skip" records bad files in RUN_DIR/skipped.jsonl
    num_workers: int = 0  # 2-core machines: decoding in the main process is fastest
    cache: bool = True  # keep decoded samples in memory (small data sets: decode once)
    augment_strength: float = 1.0  # scales every view augmentation magnitude


@dataclass
class ModelConfig:
    preset: str = "mini"  # 192 wide x 6 blocks: learns in CPU minutes
    decoder_dim: int = 128  # MAE: a light decoder is enough (He et al. use 512 for ViT-L)
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask: str = ""  # "" = the modality's default strategy
    mask_ratio: float = 0.75  # MAE's ratio for images
    block_size: int = 2
    # paired (cross-modal) runs: shared space width, CLIP temperature and weight
    cross_dim: int = 128
    cross_temperature: float = 0.07
    cross_weight: float = 1.0
    cross_views: str = "full"  # CLIP term on unmasked views ("full") or the masked ones ("masked")
    cross_augment: float = 0.3  # augmentation strength of the CLIP term's full views
    separate_encoders: bool = False  # paired runs: one encoder per modality instead of a shared one


@dataclass
class TrainConfig:
    steps: int = 1000
    epochs: int = 0  # > 0 overrides steps
    budget: float = 0.0  # > 0: seconds of wall clock; steps are sized to it after a few timed steps
    batch_size: int = 0  # 0 = fit to the data: 128, or the whole data set when it is smaller
    lr: float = 1e-3  # peak AdamW learning rate for the whole batch (no linear scaling)
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_accum: int = 1
    grad_clip: float = 1.0
    # auto | bf16 | fp16 | fp32; auto: a cached probe picks bf16 or fp32 on the CPU (bf16 ran
    # 1.9x fp32 on an AMD EPYC, 0.63x on a Xeon without AMX), bf16 on CUDA (omnipatch.train.precision)
    precision: str = "auto"
    compile: bool = False  # torch.compile each transformer block (off: see README, Benchmarks)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    monitor_every: int = 50  # embedding-health check (RankMe, std, alignment); 0 = off
    device: str = "auto"
    strategy: str = "auto"  # single | ddp | fsdp; auto = ddp under torchrun with >1 rank
    # jsonl | tensorboard | wandb | mlflow (omnipatch.train.loggers); RUN_DIR/metrics.jsonl is always written
    loggers: list = field(default_factory=lambda: ["jsonl"])


def _bf16_get(self) -> bool:  # deprecated alias of precision (old configs, checkpoints, scripts)
    return self.precision != "fp32"


def _bf16_set(self, value: bool) -> None:
    self.precision = "bf16" if value else "fp32"


TrainConfig.bf16 = property(_bf16_get, _bf16_set)
# old keys -> (new key, value map); an old run config with train.bf16 still loads
_ALIASES = {"train.bf16": ("train.precision", lambda v: "bf16" if _coerce(v, True, "train.bf16") else "fp32")}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # name -> {"weight": w, **objective kwargs}
    objectives: dict = field(default_factory=lambda: {"mae": {"weight": 1.0}, "contrastive": {"weight": 0.5}})
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, base: "Config | None" = None) -> "Config":
        """A config from nested sections, on top of ``base`` (default: the defaults)."""
        cfg = base or cls()
        for section, values in (d or {}).items():
            if section not in _SECTIONS:
                raise OmnipatchError(_unknown_key(section, list(_SECTIONS)))
            if section == "objectives":
                cfg.objectives = parse_objectives(values) if isinstance(values, str) else dict(values)
                continue
            for k, v in (values or {}).items():
                set_key(cfg, f"{section}.{k}", v)
        return cfg


PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_SECTIONS = {"data": DataConfig, "model": ModelConfig, "objectives": dict, "train": TrainConfig}


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint}"


def _coerce(value: Any, like: Any, key: str) -> Any:
    if not isinstance(value, str):
        if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    if isinstance(like, list):  # "a,b" or a JSON list
        parsed = _parse_scalar(value)
        return parsed if isinstance(parsed, list) else [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise OmnipatchError(f"config key {key!r} expects true/false, got {value!r}")
    try:
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
    except ValueError:
        raise OmnipatchError(f"config key {key!r} expects a {type(like).__name__}, got {value!r}") from None
    return _parse_scalar(value) if not isinstance(like, str) else value


def _parse_scalar(value: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


def set_key(cfg: Config, dotted: str, value: Any) -> None:
    """Set ``section.key`` (or ``data.options.name`` / ``objectives.name.arg``) on ``cfg``."""
    if dotted in _ALIASES:
        dotted, value = _ALIASES[dotted][0], _ALIASES[dotted][1](value)
    parts = dotted.split(".")
    section = parts[0]
    if section not in _SECTIONS:
        raise OmnipatchError(_unknown_key(dotted, list(_SECTIONS)))
    if section == "objectives":
        if len(parts) != 3:
            raise OmnipatchError(f"objective overrides look like objectives.NAME.ARG=VALUE, got {dotted!r}")
        cfg.objectives.setdefault(parts[1], {"weight": 1.0})[parts[2]] = _parse_scalar(value) if isinstance(value, str) else value
        return
    obj = getattr(cfg, section)
    names = [f.name for f in dataclasses.fields(obj)]
    if len(parts) < 2 or parts[1] not in names:
        raise OmnipatchError(_unknown_key(dotted, [f"{section}.{n}" for n in names]))
    if parts[1] == "options" and len(parts) == 3:
        obj.options[parts[2]] = _parse_scalar(value) if isinstance(value, str) else value
        return
    if len(parts) != 2:
        raise OmnipatchError(_unknown_key(dotted, [f"{section}.{n}" for n in names]))
    setattr(obj, parts[1], _coerce(value, getattr(obj, parts[1]), dotted))
    if dotted == "train.precision" and obj.precision not in PRECISIONS:
        raise OmnipatchError(f"config key 'train.precision' must be one of {', '.join(PRECISIONS)}, "
                             f"got {obj.precision!r}")


def apply_keys(cfg: Config, keys: dict) -> Config:
    """Set dotted ``keys`` (``{"objectives": "mae+dhel", "data.augment_strength": 0.5}``)."""
    for k, v in keys.items():
        if k == "objectives":
            cfg.objectives = parse_objectives(v) if isinstance(v, str) else dict(v)
        else:
            set_key(cfg, k, v)
    return cfg


def parse_objectives(spec: str) -> dict:
    """``"mae+contrastive:0.5"`` -> ``{"mae": {"weight": 1.0}, "contrastive": {"weight": 0.5}}``."""
    out = {}
    for part in filter(None, (p.strip() for p in spec.split("+"))):
        name, _, w = part.partition(":")
        try:
            out[name] = {"weight": float(w) if w else 1.0}
        except ValueError:
            raise OmnipatchError(f"objective weight must be a number in {part!r}") from None
    if not out:
        raise OmnipatchError(f"no objective in {spec!r}")
    return out


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"`` -> seconds."""
    t = str(text).strip().lower()
    unit = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        value = float(t[:-1] if unit else t) * (unit or 1)
    except ValueError:
        raise OmnipatchError(f"a duration looks like 90s, 10m or 1.5h, got {text!r}") from None
    if value <= 0:
        raise OmnipatchError(f"a duration must be positive, got {text!r}")
    return value


def load_yaml_dict(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise OmnipatchError(f"{path}: config file not found")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise OmnipatchError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise OmnipatchError(f"{path}: top level must be a mapping of sections")
    return d


def load_yaml(path: str | Path) -> Config:
    return Config.from_dict(load_yaml_dict(path))


# -- validation: every numeric option, once, with its key and its allowed range ----------------
#: key -> (kind, lo, hi, lo_open, hi_open); None = unbounded. kind "int" or "float".
RANGES: dict[str, tuple] = {
    "train.steps": ("int", 0, None, False, False),
    "train.epochs": ("int", 0, None, False, False),
    "train.budget": ("float", 0, None, False, False),
    "train.batch_size": ("int", 0, None, False, False),  # 1 is refused below: MAE/contrastive need 2
    "train.lr": ("float", 0, None, True, False),
    "train.min_lr_ratio": ("float", 0, 1, False, False),
    "train.weight_decay": ("float", 0, None, False, False),
    "train.warmup_steps": ("int", 0, None, False, False),
    "train.grad_accum": ("int", 1, None, False, False),
    "train.grad_clip": ("float", 0, None, False, False),
    "train.log_every": ("int", 1, None, False, False),
    "train.checkpoint_every": ("int", 1, None, False, False),
    "train.monitor_every": ("int", 0, None, False, False),
    "data.num_workers": ("int", 0, None, False, False),
    "data.augment_strength": ("float", 0, None, False, False),
    "model.mask_ratio": ("float", 0, 1, True, True),
    "model.block_size": ("int", 1, None, False, False),
    "model.decoder_dim": ("int", 1, None, False, False),
    "model.decoder_depth": ("int", 1, None, False, False),
    "model.decoder_heads": ("int", 1, None, False, False),
    "model.cross_dim": ("int", 1, None, False, False),
    "model.cross_temperature": ("float", 0, None, True, False),
    "model.cross_weight": ("float", 0, None, True, False),
    "model.cross_augment": ("float", 0, None, False, False),
}
#: data options that are sizes in every modality (an int or a list of ints, each >= 1); any
#: other option is checked against its modality's default (see :func:`_check_options`)
SIZE_OPTIONS = ("patch_size",)
#: objective arguments that are counts (>= 1) or positive scales (> 0)
OBJECTIVE_COUNTS = ("k", "n_views", "num_slices", "proj_hidden", "proj_dim")
OBJECTIVE_POSITIVE = ("temperature", "init_temperature")


def check_range(key: str, value, kind: str, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False):
    """``value`` as ``kind`` if within the range, else an :class:`OmnipatchError` naming ``key``."""
    import math

    ok_type = (isinstance(value, int) if kind == "int" else isinstance(value, (int, float))) and not isinstance(value, bool)
    if not ok_type:
        raise OmnipatchError(f"{key} expects {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    if kind == "float" and not math.isfinite(value):
        raise OmnipatchError(f"{key} must be a finite number, got {value!r}")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if low_bad or high_bad:
        left = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
        right = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
        if lo is not None and hi is not None:
            want = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        else:
            want = left or right
        raise OmnipatchError(f"{key} must be {want}, got {value!r}")
    return value


def validate_train(train: TrainConfig) -> TrainConfig:
    """The ``train.*`` part of :func:`validate` (also checked by the engine, which a library
    user may call without a whole :class:`Config`)."""
    for key, (kind, lo, hi, lo_open, hi_open) in RANGES.items():
        section, name = key.split(".")
        if section == "train":
            check_range(key, getattr(train, name), kind, lo, hi, lo_open, hi_open)
    if train.batch_size == 1:
        raise OmnipatchError("train.batch_size must be 0 (fit to the data) or at least 2, got 1")
    from omnipatch.train.loggers import check

    train.loggers = check(train.loggers)  # known names whose packages are installed
    return train


def validate(cfg: Config) -> Config:
    """Check every numeric option of ``cfg`` against its allowed range; one line naming the key.

    Called once per run, before any data is read (``omnipatch.train.pretrain``). An empty
    ``data.modality`` becomes the registry's default modality."""
    if not str(cfg.data.modality).strip():
        from omnipatch.modality import MODALITIES

        cfg.data.modality = MODALITIES.default()
    for key, (kind, lo, hi, lo_open, hi_open) in RANGES.items():
        section, name = key.split(".")
        if section != "train":
            check_range(key, getattr(getattr(cfg, section), name), kind, lo, hi, lo_open, hi_open)
    validate_train(cfg.train)
    if cfg.data.on_bad_sample not in ("raise", "skip"):
        raise OmnipatchError(f"data.on_bad_sample must be 'raise' or 'skip', got {cfg.data.on_bad_sample!r}")
    if cfg.train.strategy not in ("auto", "single", "ddp", "fsdp"):
        raise OmnipatchError(f"train.strategy must be one of auto, single, ddp, fsdp, got {cfg.train.strategy!r}")
    from omnipatch.modality import modality_list

    names = modality_list(str(cfg.data.modality))
    paired = len(names) > 1
    for m in names:
        opts = cfg.data.options.get(m, {}) if paired else cfg.data.options
        if isinstance(opts, dict):
            _check_options(opts, f"data.options.{m}" if paired else "data.options", _defaults(m))
    if not isinstance(cfg.objectives, dict) or not cfg.objectives:
        raise OmnipatchError("objectives: give at least one objective (e.g. --objective mae)")
    for name, args in cfg.objectives.items():
        if not isinstance(args, dict):
            raise OmnipatchError(f"objectives.{name} must be a mapping of arguments, got {args!r}")
        check_range(f"objectives.{name}.weight", args.get("weight", 1.0), "float", 0, None, True)
        for arg, v in args.items():
            if arg in OBJECTIVE_COUNTS:
                check_range(f"objectives.{name}.{arg}", v, "int", 1)
            elif arg in OBJECTIVE_POSITIVE:
                check_range(f"objectives.{name}.{arg}", v, "float", 0, None, True)
    check_device(cfg.train.device, "train.device")
    return cfg


def _defaults(modality: str) -> dict:
    """The modality's option defaults ({} for a name the registry does not know: the
    registry reports that later, with its "did you mean")."""
    from omnipatch.modality import MODALITIES

    return dict(MODALITIES.get(modality).options) if modality in MODALITIES else {}


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _check_options(options: dict, prefix: str, defaults: dict) -> None:
    """Each option like its default says: a default count (an int >= 1, or a list of them)
    needs counts, a default positive number a positive number; ``patch_size`` is a size in
    every modality. Options without such a default (None, text, signed ranges) are left to
    the modality's reader."""
    for k, v in (options or {}).items():
        if v is None:
            continue
        d = defaults.get(k)
        counts = k in SIZE_OPTIONS or _positive_int(d) or (
            isinstance(d, (list, tuple)) and d and all(_positive_int(x) for x in d))
        if counts:
            for x in (v if isinstance(v, (list, tuple)) else [v]):
                check_range(f"{prefix}.{k}", x, "int", 1)
        elif isinstance(d, float) and d > 0:
            check_range(f"{prefix}.{k}", v, "float", 0, None, True)


def check_device(name: str, key: str = "device") -> None:
    """``auto``, ``cpu``, ``cuda[:N]`` or ``mps`` that exists on this machine."""
    import re

    if name in ("auto", "cpu"):
        return
    m = re.fullmatch(r"(cuda|mps)(?::(\d+))?", str(name))
    if not m:
        raise OmnipatchError(f"{key} must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    import torch

    if m.group(1) == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise OmnipatchError(f"{key} {name!r}: MPS is not available on this machine")
        return
    if not torch.cuda.is_available():
        raise OmnipatchError(f"{key} {name!r}: CUDA is not available on this machine (use auto or cpu)")
    n = torch.cuda.device_count()
    if m.group(2) is not None and int(m.group(2)) >= n:
        raise OmnipatchError(f"{key} {name!r}: this machine has {n} CUDA device(s) (cuda:0 .. cuda:{n - 1})")
