"""Every skip is listed in one place: ``skipped.jsonl`` for pretrain, embed and finetune alike."""

from __future__ import annotations

import csv
import json

import numpy as np

from tests.hostile.conftest import TINY


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _climate(folder, n=8):
    import pandas as pd
    import xarray as xr

    folder.mkdir()
    rng = np.random.default_rng(0)
    xr.Dataset({"tas": (("time", "lat", "lon"), rng.normal(size=(n, 8, 8)).astype(np.float32))},
               coords={"time": pd.date_range("2000", periods=n), "lat": np.linspace(-40, 40, 8),
                       "lon": np.linspace(0, 315, 8)}).to_netcdf(folder / "good.nc")
    (folder / "junk.nc").write_bytes(b"not netcdf" * 20)
    return folder


def test_climate_file_skips_reach_skipped_jsonl_in_pretrain_and_embed(tmp_path, cli):
    data, run = _climate(tmp_path / "c"), tmp_path / "run"
    r = cli("pretrain", "--modality", "climate", "--data", data, "--out", run, "--steps", "2", "--batch-size", "4",
            "--on-bad-sample", "skip", "--set", "data.options.patch_size=4", "--objective", "mae", *TINY)
    assert r.code == 0, r.err
    assert [x["source"].endswith("junk.nc") for x in _rows(run / "skipped.jsonl")] == [True]
    r = cli("embed", "--checkpoint", run, "--data", data, "--out", tmp_path / "e.parquet", "--on-bad-sample", "skip")
    assert r.code == 0 and "wrote 8 embeddings" in r.out, r.err
    assert [x["source"].endswith("junk.nc") for x in _rows(tmp_path / "e.skipped.jsonl")] == [True]


def test_embed_and_finetune_list_unreadable_images(pretrained, png_folder, tmp_path, cli):
    data = tmp_path / "d"
    data.mkdir()
    rows = list(csv.reader(open(png_folder / "manifest.csv")))[1:]
    for name, _, _ in rows:
        (data / name).write_bytes((png_folder / name).read_bytes())
    (data / "img_03.png").write_bytes(b"\x89PNG truncated")
    with open(data / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "id", "label"], *rows])
    r = cli("embed", "--checkpoint", pretrained, "--data", data / "manifest.csv", "--out", tmp_path / "e.parquet",
            "--on-bad-sample", "skip")
    assert r.code == 0 and "wrote 23 embeddings" in r.out, r.err
    assert [x["source"].endswith("img_03.png") for x in _rows(tmp_path / "e.skipped.jsonl")] == [True]
    ft = tmp_path / "ft"
    r = cli("finetune", "--checkpoint", pretrained, "--data", data / "manifest.csv", "--out", ft, "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--on-bad-sample", "skip", "--quiet")
    assert r.code == 0, r.err
    assert [x["source"].endswith("img_03.png") for x in _rows(ft / "skipped.jsonl")] == [True]
