"""The small-data CLI flow the per-modality tests share: ``pretrain`` with the defaults,
``embed``, ``eval knn``, and the refusal of an option the model was built from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from omnipatch.cli import main

#: the only flags beyond --modality/--data/--out: they keep the tests fast, and fit nothing
FAST = ["--steps", "2", "--preset", "micro", "--quiet"]


def pretrain_defaults(modality: str, data, run: Path) -> dict:
    """``pretrain --modality M --data DATA --out RUN`` (+ :data:`FAST`); the plan's fits."""
    assert main(["pretrain", "--modality", modality, "--data", str(data), "--out", str(run), *FAST]) == 0
    return json.loads((run / "plan.json").read_text())["fits"]


def embed_and_eval(run: Path, data, tmp_path: Path, label_of) -> list[str]:
    """``embed`` the data, then ``eval knn`` with ``label_of(id)`` as labels; the ids."""
    emb = tmp_path / "e.parquet"
    assert main(["embed", "--checkpoint", str(run), "--data", str(data), "--out", str(emb)]) == 0
    ids = pd.read_parquet(emb)["id"].tolist()
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{label_of(i)}\n" for i in ids))
    assert main(["eval", "knn", "--embeddings", str(emb), "--labels", str(labels)]) == 0
    return ids


def assert_model_option_refused(run: Path, data, tmp_path: Path, capsys, key: str, value) -> None:
    """``embed --set data.options.KEY=VALUE`` with another value than the run's: exit 2, one line."""
    capsys.readouterr()
    assert main(["embed", "--checkpoint", str(run), "--data", str(data), "--out", str(tmp_path / "x.parquet"),
                 "--set", f"data.options.{key}={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{key}'" in err[0] and "checkpoint" in err[0]
