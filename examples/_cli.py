"""What the CLI-driven examples share: run an ``omnipatch`` command, and probe a run's frozen
embeddings (pretrained and random init) with ``omnipatch embed`` + ``omnipatch eval``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

ENCODERS = (("pretrained", []), ("random init", ["--random-init"]))


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


def probe_run(run_dir: Path, data: dict[str, Path], out: Path, probes=("knn", "linear"),
              embed_args: tuple[str, ...] = (), quiet: bool = True) -> dict[str, dict[str, float]]:
    """Held-out accuracy ``{"pretrained" | "random init": {probe: acc}}``: embeddings of
    ``data["train"]`` / ``data["test"]`` (written to ``out/emb_<tag>_<split>.parquet``),
    probes fitted on train and scored on test with ``data["labels"]`` (an embedding map per
    probe: ``out/map_<tag>_<probe>.png``)."""
    res = {}
    for name, flag in ENCODERS:
        tag = name.split()[0]
        for split in ("train", "test"):
            cli("embed", "--checkpoint", str(run_dir), "--data", str(data[split]),
                "--out", str(out / f"emb_{tag}_{split}.parquet"), *embed_args, *flag, quiet=quiet)
        res[name] = {}
        for k in probes:
            txt = cli("eval", k, "--embeddings", str(out / f"emb_{tag}_train.parquet"), "--test-embeddings",
                      str(out / f"emb_{tag}_test.parquet"), "--labels", str(data["labels"]), "--json",
                      "--plot", str(out / f"map_{tag}_{k}.png"), quiet=True)
            res[name][k] = float(json.loads(txt.strip().splitlines()[-1])["accuracy"])
    return res


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
