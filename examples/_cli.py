"""What the CLI-driven examples share: run an ``omnipatch`` command, and probe a run's frozen
embeddings (pretrained and random init) with ``omnipatch embed`` + ``omnipatch eval``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path


def cli(*args: str, quiet: bool = False) -> str:
    """``omnipatch ARGS`` in this process; its stdout (echoed unless ``quiet``). Exits on failure."""
    from omnipatch.cli import main

    buf = io.StringIO()
    if not quiet:
        print("$ omnipatch " + " ".join(args), flush=True)
    with contextlib.redirect_stdout(buf):
        code = main(list(args))
    if not quiet:
        print(buf.getvalue(), end="", flush=True)
    if code != 0:
        raise SystemExit(f"omnipatch {args[0]} failed")
    return buf.getvalue()


def probe_run(run_dir: Path, data: dict[str, Path], out: Path, quiet: bool = True) -> dict[str, dict[str, float]]:
    """Held-out accuracy ``{"pretrained" | "random init" | "raw features": {probe: acc}}``
    through ``omnipatch report``: probes fitted on ``data["train"]`` and scored on
    ``data["test"]`` with ``data["labels"]``; the raw features are the modality's baseline
    (``ModalitySpec.raw_features``). The report lands in ``out/report/`` (``report.md``,
    ``report_map.png``); it runs both kNN (k=20) and the linear probe."""
    rep = out / "report"
    cli("report", str(run_dir), "--data", str(data["train"]), "--test-data", str(data["test"]),
        "--labels", str(data["labels"]), "--out", str(rep), quiet=quiet)
    probes = json.loads((rep / "report.json").read_text())["probes"]
    return {("raw features" if k.startswith("raw") else k): v for k, v in probes.items()}


def override(cfg, objective: str | None, sets: list[str]):
    """A recipe's ``Config`` with ``--objective`` and ``--set KEY=VALUE`` applied, as the CLI does."""
    from omnipatch.config import parse_objectives, set_key

    if objective:
        cfg.objectives = parse_objectives(objective)
    for kv in sets:
        k, _, v = kv.partition("=")
        set_key(cfg, k, v)
    return cfg


def add_recipe_args(parser, objective: str | None = None) -> None:
    """``--objective`` (default: the recipe's own) and repeatable ``--set KEY=VALUE`` overrides."""
    parser.add_argument("--objective", default=objective,
                        help="the recipe's objectives, e.g. mae+vicreg:0.05" + (f" (default {objective})" if objective else ""))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the recipe")
