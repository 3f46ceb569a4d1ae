"""``--init`` in runs: initialise a run's model, print the report, write ``init_report.json``;
and an "initialised run" (no training) for ``finetune --init`` and ``omnipatch.load(init=)``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from omnipatch.errors import OmnipatchError

REPORT = "init_report.json"


def init_for_run(model, source: str, out: str | Path | None, pos: str = "auto", strict: bool = False,
                 seed: int = 0, quiet: bool = False):
    """``(model, summary)``: ``model`` initialised from ``source`` (:func:`omnipatch.init.init_model`),
    the report printed (stderr) and written to ``out/init_report.json``; ``summary`` (source,
    options, counts) goes into the run's config."""
    from omnipatch.init import init_model

    new, report = init_model(model, source, pos=pos, strict=strict, seed=seed)
    if out is not None:
        report.write(Path(out) / REPORT)
    if not quiet:
        print(report.table(), file=sys.stderr)
    return new, {"source": str(source), "pos": pos, "strict": strict, "counts": report.counts(),
                 "description": report.source}


def build_initialised(source: str, modality: str, data, options: dict | None = None, pos: str = "auto",
                      strict: bool = False, seed: int = 0, out: str | Path | None = None, quiet: bool = False):
    """``(model, config)``: a model for ``modality`` with adapters fitted to ``data`` (channels,
    statistics), weights from ``source``; ``config`` is a pretraining run's (0 steps)."""
    from omnipatch.config import Config
    from omnipatch.runspec import RunSpec
    from omnipatch.train.build import build_model, open_run_data

    if not modality:
        raise OmnipatchError(f"--init {source}: name the modality of the data (--modality)")
    if data is None:
        raise OmnipatchError(f"--init {source}: data is needed to fit the adapter (channels, statistics)")
    cfg = Config()
    cfg.data.modality, cfg.data.source, cfg.data.options = modality, str(data), dict(options or {})
    cfg.train.seed, cfg.train.steps = seed, 0
    dataset, per = open_run_data(cfg)
    torch.manual_seed(seed)
    model, summary = init_for_run(build_model(cfg, per), source, out, pos, strict, seed, quiet)
    config = {"run": RunSpec.from_config(cfg).to_dict(), "model": model.config(), "modality": modality,
              "classes": getattr(dataset, "classes", None), "init": summary}
    return model, config


def write_initialised(source: str, modality: str, data, out: str | Path, **kw) -> Path:
    """:func:`build_initialised`, saved as a run directory ``out`` (what ``finetune --init`` uses)."""
    from omnipatch.train import checkpoint as ckpt

    model, config = build_initialised(source, modality, data, out=out, **kw)
    ckpt.save(out, model, config)
    return Path(out)
