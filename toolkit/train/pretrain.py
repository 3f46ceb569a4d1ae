"""Pretrain from a :class:`Config` (its data and model built by :mod:`omnipatch.train.build`): the
library behind ``omnipatch pretrain``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from omnipatch.config import Config, validate
from omnipatch.errors import OmnipatchError
from omnipatch.modality import MODALITIES
from omnipatch.model import OmniModel
from omnipatch.runspec import RunSpec
from omnipatch.train import checkpoint as ckpt
from omnipatch.train.build import build_model, check_names, modality_names, open_run_data, plan_data
from omnipatch.train.data import CachedDataset
from omnipatch.train.engine import fit
from omnipatch.train.plan import fit_batch_size
from omnipatch.train.shards import is_shard_source
from omnipatch.train.steps import single_modality_step


def pretrain(cfg: Config, out: str | Path, resume: bool = False, quiet: bool = False,
             labels: str | None = None, report: bool = True, init: str | None = None, init_pos: str = "auto",
             init_strict: bool = False, overwrite: bool = False) -> dict:
    """Pretrain on ``cfg.data`` and write ``out/`` (checkpoint, metrics, pictures).

    ``data.modality`` names one modality, or several separated by commas for paired
    (cross-modal) training on a manifest with one column per modality. With ``resume=True``
    the architecture (including normalisation statistics) comes from the checkpoint in
    ``out``; ``cfg.train.steps`` may be raised to train longer.

    Before training the data is scanned (:mod:`omnipatch.train.plan`; ``out/plan.json``). After
    it, a single-modality run with labels (``labels`` CSV, or the data's own labels) ends
    with the "did pretraining help?" report (:mod:`omnipatch.eval.report`; ``out/report.md``).
    ``init`` starts from a pretrained checkpoint (:mod:`omnipatch.init`; report in
    ``out/init_report.json``).

    One run per directory (:mod:`omnipatch.train.rundir`): ``out`` is locked while the run lasts,
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
        run = RunSpec.from_checkpoint(saved).to_config()
        run.train.steps = max(run.train.steps, cfg.train.steps) if cfg.train.epochs == 0 else run.train.steps
        cfg = validate(run)  # a fresh run's config was validated by pretrain()
    names = modality_names(cfg)  # never empty: no modality given is the registry's default
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
    config = {"run": RunSpec.from_config(cfg).to_dict(), "model": model.config(), "modality": ",".join(names),
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
