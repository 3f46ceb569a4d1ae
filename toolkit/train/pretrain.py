"""Build a run from a :class:`Config` and pretrain: the library behind ``omnipatch pretrain``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from omnipatch.train import checkpoint as ckpt
from omnipatch.config import Config, validate
from omnipatch.train.data import CachedDataset
from omnipatch.encoder import PRESETS
from omnipatch.train.engine import fit, single_modality_step
from omnipatch.errors import OmnipatchError
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MASKS, MaskSpec
from omnipatch.modality import ADAPTERS, MODALITIES, ModalitySpec
from omnipatch.model import OmniModel
from omnipatch.objectives import OBJECTIVES
from omnipatch.train.plan import Plan, fit_batch_size, scan
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
    """``data.modality`` as a list: ``"image"`` or ``"image,audio"`` (a paired run)."""
    return [m.strip() for m in cfg.data.modality.split(",") if m.strip()]


def modality_options(cfg: Config, name: str, paired: bool) -> dict:
    """A paired run keeps each modality's options under its name: ``data.options.audio``."""
    return dict(cfg.data.options.get(name, {})) if paired else dict(cfg.data.options)


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
        kwargs = spec.adapter_kwargs(ds, {**spec.options, **modality_options(cfg, name, paired)})
        adapters[name] = ADAPTERS.get(spec.adapter)(dim=enc.dim, **kwargs)
    dec = DecoderConfig(cfg.model.decoder_dim, cfg.model.decoder_depth, cfg.model.decoder_heads)
    cross = ({"proj_dim": cfg.model.cross_dim, "temperature": cfg.model.cross_temperature,
              "weight": cfg.model.cross_weight,
              "views": cfg.model.cross_views, "augment": cfg.model.cross_augment} if paired else None)
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
        specs[m], paths, modality_options(cfg, m, True), cfg.data.on_bad_sample), names)
    return paired, paired.datasets


def open_stream(cfg: Config, spec: ModalitySpec):
    """A :class:`~omnipatch.shards.ShardStream` over tar shards, plus a small extracted probe
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


def pretrain(cfg: Config, out: str | Path, resume: bool = False, quiet: bool = False,
             labels: str | None = None, report: bool = True, init: str | None = None, init_pos: str = "auto",
             init_strict: bool = False, overwrite: bool = False) -> dict:
    """Pretrain on ``cfg.data`` and write ``out/`` (checkpoint, metrics, pictures).

    ``data.modality`` names one modality, or several separated by commas for paired
    (cross-modal) training on a manifest with one column per modality. With ``resume=True``
    the architecture (including normalisation statistics) comes from the checkpoint in
    ``out``; ``cfg.train.steps`` may be raised to train longer.

    Before training the data is scanned (:mod:`omnipatch.plan`; ``out/plan.json``). After
    it, a single-modality run with labels (``labels`` CSV, or the data's own labels) ends
    with the "did pretraining help?" report (:mod:`omnipatch.eval.report`; ``out/report.md``).
    ``init`` starts from a pretrained checkpoint (:mod:`omnipatch.init`; report in
    ``out/init_report.json``).

    One run per directory (:mod:`omnipatch.rundir`): ``out`` is locked while the run lasts,
    and a fresh run refuses a non-empty ``out`` unless ``overwrite`` (which removes the old
    run's artefacts first); temporaries of a killed checkpoint write are cleaned.
    """
    from omnipatch.train.rundir import RunLock, make_run_dir, prepare

    if not resume:
        validate(cfg)  # before touching the disk
    if os.environ.get("RANK", "0") != "0":
        return _pretrain(cfg, Path(out), resume, quiet, labels, report, init, init_pos, init_strict)
    out = make_run_dir(out)
    with RunLock(out):
        prepare(out, resume, overwrite)
        return _pretrain(cfg, out, resume, quiet, labels, report, init, init_pos, init_strict)


def _pretrain(cfg: Config, out: Path, resume: bool, quiet: bool, labels, report: bool, init, init_pos: str,
              init_strict: bool) -> dict:
    if resume:
        saved = ckpt.load_config(out)
        run = Config.from_dict(saved["run"])
        run.train.steps = max(run.train.steps, cfg.train.steps) if cfg.train.epochs == 0 else run.train.steps
        cfg = validate(run)  # a fresh run's config was validated by pretrain()
    names = modality_names(cfg)
    if not names:
        raise OmnipatchError("no modality given (--modality)")
    for m in names:
        check_names(cfg, MODALITIES.get(m))
    plan = None if resume else plan_data(cfg, names)
    dataset, per_modality = open_run_data(cfg)
    main = os.environ.get("RANK", "0") == "0"
    opened_skips = [s for ds in per_modality.values() for s in getattr(ds, "skipped_files", [])]
    if main and opened_skips:  # files a dataset passed over when opening (climate): listed like the rest
        from omnipatch.api import write_skipped

        start = int((ckpt.load_train_state(out) or {}).get("step", 0)) if resume else 0
        write_skipped(out / "skipped.jsonl", opened_skips, step=start)
    if plan is not None:
        n = None if isinstance(dataset, torch.utils.data.IterableDataset) else len(dataset)
        cfg.train.batch_size = fit_batch_size(plan, cfg.train.batch_size, n, int(os.environ.get("WORLD_SIZE", "1")),
                                              cfg.train.grad_accum)
        plan.facts.setdefault("samples", n)
        if main:
            out.mkdir(parents=True, exist_ok=True)
            plan.save(out / "plan.json")
            if not quiet:
                print("\n".join(plan.lines()), flush=True)
    model = OmniModel.from_config(saved["model"]) if resume else build_model(cfg, per_modality)
    init_info = saved.get("init") if resume else None
    if init and not resume:
        from omnipatch.init.run import init_for_run

        model, init_info = init_for_run(model, init, out, init_pos, init_strict, cfg.train.seed, quiet)
    if cfg.data.cache and cfg.data.num_workers == 0 and not is_shard_source(str(cfg.data.source)):
        from omnipatch.train.paired import PairedDataset

        dataset = dataset.cache() if isinstance(dataset, PairedDataset) else CachedDataset(dataset)
    config = {"run": cfg.to_dict(), "model": model.config(), "modality": ",".join(names),
              "classes": getattr(dataset, "classes", None), "init": init_info}
    out.mkdir(parents=True, exist_ok=True)
    if main:
        (out / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    if len(names) == 1:
        spec = MODALITIES.get(names[0])
        from omnipatch.train.monitors import single_modality_monitor

        compute, collate = single_modality_step(model, spec.name, spec.augment, cfg.data.augment_strength), None
        monitor = single_modality_monitor(model, spec.name, spec.augment, cfg.data.augment_strength)
    else:
        from omnipatch.train.paired import PairedCollate, paired_step

        compute = paired_step(model, {m: MODALITIES.get(m).augment for m in names}, cfg.data.augment_strength)
        collate, monitor = PairedCollate(names), None
    from omnipatch.train.loggers import open_loggers

    start = int((ckpt.load_train_state(out) or {}).get("step", 0)) if resume else 0
    with open_loggers(cfg.train.loggers, out, config, start, resume, main) as loggers:
        summary = fit(model, dataset, compute=compute, cfg=cfg.train, run_dir=out, config=config, resume=resume,
                      num_workers=cfg.data.num_workers, quiet=quiet, collate=collate, monitor=monitor,
                      loggers=loggers)
        _finish(cfg, model, dataset, per_modality, names, out, labels, report, summary, loggers)
    return summary


def _finish(cfg: Config, model: OmniModel, dataset, per_modality: dict, names: list[str], out: Path, labels,
            report: bool, summary: dict, loggers) -> None:
    """After training: the reconstruction picture(s) and the "did pretraining help?" report,
    each picture also to the run's loggers (at the last step)."""
    pics = []
    if summary["rank"] == 0 and "mae" in model.objectives:
        if summary["world"] > 1:  # sharded / wrapped during training: draw with the saved weights
            model = OmniModel.from_config(model.config())
            ckpt.load_weights(out, model)
        pics = [save_reconstruction_picture(model, ds, m, out, suffix=f"_{m}" if len(names) > 1 else "")
                for m, ds in per_modality.items()]
        for pic in pics:
            loggers.picture(pic.stem, pic, summary["steps"])
    summary["reconstruction"] = ", ".join(str(p) for p in pics)
    summary["run_dir"] = str(out)
    has_labels = labels or getattr(dataset, "classes", None)
    if report and summary["rank"] == 0 and len(names) == 1 and has_labels and not is_shard_source(str(cfg.data.source)):
        from omnipatch.eval.report import report as did_it_help

        try:
            rep = did_it_help(out, labels=labels, seed=cfg.train.seed)
            summary["report"], summary["report_summary"] = rep["path"], rep["summary"]
            loggers.picture("report_map", rep.get("map"), summary["steps"])
        except OmnipatchError as e:
            if labels:  # asked for: say why not
                raise
            summary["report_summary"] = f"no report: {e}"


def save_reconstruction_picture(model: OmniModel, dataset, modality: str, out: Path, n: int = 8,
                                suffix: str = "") -> Path:
    """Original / masked / reconstructed for the first ``n`` readable samples."""
    from omnipatch.batch import Sample, collate
    from omnipatch.plots import save_reconstruction

    samples = [s for s in (dataset[i] for i in range(min(len(dataset), 4 * n))) if isinstance(s, Sample)][:n]
    device = next(model.parameters()).device
    model.eval()
    pics = model.reconstruct(collate(samples).to(device), modality, torch.Generator().manual_seed(0))
    return save_reconstruction({k: v.cpu() for k, v in pics.items()}, out / f"reconstruction{suffix}.png", n)
