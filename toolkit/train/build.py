"""What a run is built from, before any training: its data (each modality's dataset, a paired
data set or a shard stream, opened with checked options; the scan that fits the defaults) and
its model (adapters fitted to the data + encoder preset + objectives).

Shared by :func:`omnipatch.train.pretrain.pretrain`, :func:`omnipatch.load` (:mod:`omnipatch.api`),
``--init`` (:mod:`omnipatch.init.run`) and fine-tuning; it imports none of them.
"""

from __future__ import annotations

import torch

from omnipatch.config import Config
from omnipatch.encoder import PRESETS
from omnipatch.errors import OmnipatchError
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MASKS, MaskSpec
from omnipatch.modality import ADAPTERS, MODALITIES, ModalitySpec
from omnipatch.model import OmniModel
from omnipatch.objectives import OBJECTIVES
from omnipatch.runspec import RunSpec, config_modalities
from omnipatch.train.plan import Plan, scan
from omnipatch.train.shards import is_shard_source


def open_data(spec: ModalitySpec, source, options: dict, on_bad_sample: str = "raise"):
    """The modality's dataset with its default options updated by ``options``."""
    if not source:
        raise OmnipatchError("no data source given (--data SRC)")
    unknown = set(options) - set(spec.options) - {"patch_size"}
    if unknown:
        raise OmnipatchError(f"unknown option(s) {sorted(unknown)} for modality {spec.name!r} "
                             f"(known: {', '.join(sorted(spec.options))})")
    return spec.open_dataset(source, on_bad_sample=on_bad_sample, **{**spec.options, **options})


def check_names(cfg: Config, spec: ModalitySpec) -> MaskSpec:
    """Fail fast, before reading any data, on unknown preset / objective / mask names."""
    import inspect

    PRESETS.get(cfg.model.preset)
    for name, args in cfg.objectives.items():
        params = inspect.signature(OBJECTIVES.get(name).__init__).parameters
        known = [p for p in params if p not in ("self", "enc_dim")]
        for arg in args:
            if arg != "weight" and arg not in known:
                raise OmnipatchError(f"objectives.{name}.{arg}: unknown argument of objective {name!r} "
                                     f"(known: weight{', ' if known else ''}{', '.join(known)})")
    mask = MaskSpec(cfg.model.mask or spec.default_mask, cfg.model.mask_ratio, cfg.model.block_size)
    MASKS.get(mask.strategy)
    return mask


def modality_names(cfg: Config) -> list[str]:
    """``data.modality`` as a list: ``"image"`` or ``"image,audio"`` (a paired run); empty: the
    registry's default modality."""
    return config_modalities(cfg)


def modality_options(cfg: Config, name: str) -> dict:
    """The options of modality ``name`` (:meth:`~omnipatch.runspec.RunSpec.options_for`: a
    paired run keeps each modality's under its name, ``data.options.audio``)."""
    return RunSpec.from_config(cfg).options_for(name)


def build_model(cfg: Config, datasets: dict) -> OmniModel:
    """Adapters (statistics inferred from each modality's dataset) + encoder preset +
    objectives (+ a cross-modal head for paired runs), seeded."""
    enc = PRESETS.get(cfg.model.preset)
    paired = len(datasets) > 1
    adapters, masks = {}, {}
    torch.manual_seed(cfg.train.seed)
    for name, ds in datasets.items():
        spec = MODALITIES.get(name)
        masks[name] = check_names(cfg, spec)
        kwargs = spec.adapter_kwargs(ds, {**spec.options, **modality_options(cfg, name)})
        adapters[name] = ADAPTERS.get(spec.adapter)(dim=enc.dim, **kwargs)
    dec = DecoderConfig(cfg.model.decoder_dim, cfg.model.decoder_depth, cfg.model.decoder_heads)
    head = RunSpec.from_config(cfg).cross
    cross = head.as_kwargs() if paired and head is not None else None
    return OmniModel(adapters, enc, dec, cfg.objectives, masks, cross, cfg.model.separate_encoders and paired)


def open_run_data(cfg: Config):
    """``(dataset, {modality: dataset})``: one modality's dataset, or a paired dataset."""
    names = modality_names(cfg)
    specs = {m: MODALITIES.get(m) for m in names}
    if len(names) == 1 and is_shard_source(str(cfg.data.source)):
        return open_stream(cfg, specs[names[0]])
    if len(names) == 1:
        ds = open_data(specs[names[0]], cfg.data.source, cfg.data.options, cfg.data.on_bad_sample)
        return ds, {names[0]: ds}
    from omnipatch.train.paired import PairedDataset

    paired = PairedDataset(cfg.data.source, lambda m, paths: open_data(
        specs[m], paths, modality_options(cfg, m), cfg.data.on_bad_sample), names)
    return paired, paired.datasets


def open_stream(cfg: Config, spec: ModalitySpec):
    """A :class:`~omnipatch.train.shards.ShardStream` over tar shards, plus a small extracted probe
    data set (first 256 samples) from which the adapter infers shapes and statistics."""
    import atexit
    import shutil
    import tempfile

    from omnipatch.train.shards import ShardStream, extract_first, shard_list

    if spec.stream_reader is None:
        raise OmnipatchError(f"modality {spec.name!r} does not stream from tar shards (its spec has no stream_reader)")

    shards = shard_list(str(cfg.data.source))
    stream_keys = ("shuffle_buffer", "max_member_mb")  # the stream's own options, not the reader's
    options = {k: v for k, v in cfg.data.options.items() if k not in stream_keys}
    cap = float(cfg.data.options.get("max_member_mb", 256))
    factory = lambda paths: open_data(spec, paths, options, cfg.data.on_bad_sample)
    probe_dir = tempfile.mkdtemp(prefix="omnipatch-probe-")
    atexit.register(shutil.rmtree, probe_dir, True)  # the probe files live as long as the run
    first = extract_first(shards, 256, probe_dir, cap)
    if not first:
        raise OmnipatchError(f"{cfg.data.source}: the shards hold no samples")
    probe = factory([p for p, _ in first])
    stream = ShardStream(shards, spec.stream_reader(probe), seed=cfg.train.seed,
                         shuffle_buffer=int(cfg.data.options.get("shuffle_buffer", 256)),
                         on_bad_sample=cfg.data.on_bad_sample, max_member_mb=cap)
    return stream, {spec.name: probe}


def plan_data(cfg: Config, names: list[str]) -> Plan:
    """Scan the data of a single-modality run and write the fitted options into
    ``cfg.data.options`` (explicit options win); paired runs and shard streams are not
    scanned (the batch size is still fitted)."""
    if len(names) > 1 or is_shard_source(str(cfg.data.source)):
        return Plan(cfg.data.modality, str(cfg.data.source))
    plan = scan(MODALITIES.get(names[0]), cfg.data.source, cfg.data.options)
    cfg.data.options = {**plan.options(), **cfg.data.options}
    return plan



def merge_checked(spec, saved: dict, given: dict, allow: tuple[str, ...] = ()) -> dict:
    """The run's saved data options, less the pretraining-only ones (``spec.train_options``),
    updated by ``given``; an option the model was built from (``spec.model_options``, less
    ``allow``) must not change."""
    saved = {k: v for k, v in saved.items() if k not in spec.train_options}
    for k, v in given.items():
        was = saved.get(k, spec.options.get(k))  # an option never given was the modality's default
        if k in spec.model_options and k not in allow and was is not None and not _same(was, v):
            raise OmnipatchError(f"{spec.name} option {k!r} = {v!r} differs from the checkpoint's {was!r}: "
                                 f"the model was built with it (leave the flag out to use the checkpoint's)")
    return {**saved, **given}


def _same(a, b) -> bool:
    """Equal as option values: ``"tas,pr"`` == ``["tas", "pr"]``, ``"tas"`` == ``["tas"]``, 500 == 500.0."""
    def norm(v):
        if isinstance(v, str):
            return [x.strip() for x in v.split(",")]
        if isinstance(v, (list, tuple)):
            return [norm(x)[0] if isinstance(x, str) else x for x in v]
        return [v]
    return norm(a) == norm(b)
