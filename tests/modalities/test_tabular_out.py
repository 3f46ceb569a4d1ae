"""Table embeddings keyed by id: one Parquet row per (row id, present column)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from omnipatch.modality import MODALITIES
from omnipatch.outputs import read_provenance, write
from tests.modalities.tiny_run import tiny_run, tokens_of


def test_patch_parquet_is_keyed_by_id_and_column(tmp_path):
    table = pd.DataFrame({"sid": ["r0", "r1", "r2"], "a": [0.5, np.nan, 2.0], "b": [3.0, 1.0, -1.0],
                          "kind": ["x", "y", "x"]})
    table.to_csv(tmp_path / "t.csv", index=False)
    spec = MODALITIES.get("tabular")
    opts = {"id_column": "sid"}
    ds = spec.open_dataset(str(tmp_path / "t.csv"), **{**spec.options, **opts})
    pre = tiny_run("tabular", ds, opts)
    out = tmp_path / "cells.parquet"
    write(spec, pre.embeddings(ds, "patch", bf16=False), out)
    df = pd.read_parquet(out)
    assert list(df.columns) == ["id", "column", "embedding"]
    assert list(zip(df["id"], df["column"])) == [("r0", "a"), ("r0", "b"), ("r0", "kind"), ("r1", "b"),
                                                 ("r1", "kind"), ("r2", "a"), ("r2", "b"), ("r2", "kind")]
    _, enc = tokens_of(pre, ds, 1)  # r1: column a missing (a padding token, no row)
    np.testing.assert_allclose(np.stack(df[df["id"] == "r1"]["embedding"]), enc[1:].numpy(), atol=1e-4)
    assert read_provenance(out)["modality"] == "tabular"
