"""Climate embeddings in the field's format: ``xarray`` Datasets on the input's coordinates."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import omnipatch
from omnipatch.cli import main
from omnipatch.modality import MODALITIES
from omnipatch.outputs import read_provenance, write
from tests.modalities.tiny_run import tiny_run, tokens_of


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """5 daily 6 x 10 fields of two variables; one 2 x 2 corner of both is missing (NaN)."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), (280 + rng.normal(size=(5, 6, 10))).astype(np.float32)),
                     "pr": (("time", "lat", "lon"), rng.normal(size=(5, 6, 10)).astype(np.float32))},
                    coords={"time": pd.date_range("2001-03-01", periods=5, freq="D"),
                            "lat": np.linspace(-50.0, 50.0, 6), "lon": np.linspace(0.0, 324.0, 10)})
    ds["tas"][:, :2, :2] = np.nan
    ds["pr"][:, :2, :2] = np.nan
    path = tmp_path_factory.mktemp("climate") / "fields.nc"
    ds.to_netcdf(path)
    return path, ds


def _run(path, patch: int):
    spec = MODALITIES.get("climate")
    opts = {"patch_size": patch}
    dataset = spec.open_dataset(str(path), **{**spec.options, **opts})
    return spec, dataset, tiny_run("climate", dataset, opts)


@pytest.mark.parametrize("patch", [1, 2])
def test_patch_embeddings_open_with_the_inputs_coordinates(field, tmp_path, patch):
    path, ds = field
    spec, dataset, pre = _run(path, patch)
    out = tmp_path / "patches.nc"
    write(spec, pre.embeddings(dataset, "patch", bf16=False), out)
    got = xr.open_dataset(out)
    assert got["embedding"].dims == ("time", "lat", "lon", "feature")
    np.testing.assert_array_equal(got["time"].values, ds["time"].values)
    coarse = ds.coarsen(lat=patch, lon=patch, boundary="pad").mean()  # patch centres: mean of their cells
    np.testing.assert_allclose(got["lat"].values, coarse["lat"].values)
    np.testing.assert_allclose(got["lon"].values, coarse["lon"].values)
    if patch == 1:
        np.testing.assert_array_equal(got["lat"].values, ds["lat"].values)
    assert got["lat"].attrs["units"] == "degrees_north" and got["lon"].attrs["standard_name"] == "longitude"
    assert got.attrs["Conventions"].startswith("CF-") and list(got["id"].values) == dataset.times
    # the values: the mean over the two variables' tokens of the encoder output at each patch
    t, enc = tokens_of(pre, dataset, 3)
    V, gt, gh, gw = t.grid
    ref = enc.numpy().reshape(V, gt, gh, gw, -1).mean(0)[0]
    cells = got["embedding"].isel(time=3).values
    data = np.ones((gh, gw), bool)
    data[:2 // patch, :2 // patch] = False  # patches of the missing corner: every token padding -> NaN
    np.testing.assert_allclose(cells[data], ref[data], atol=1e-4)
    assert np.isnan(cells[~data]).all() and np.isfinite(cells[data]).all()
    # the API gives the same labelled grid
    da = pre.embed(dataset, level="patch", bf16=False)
    assert isinstance(da, xr.DataArray) and da.dims == got["embedding"].dims
    np.testing.assert_array_equal(da.values, got["embedding"].values)


def test_sample_level_netcdf_and_zarr_match_the_parquet(field, tmp_path):
    path, ds = field
    spec, dataset, pre = _run(path, 2)
    emb = pre.embeddings(dataset, "sample")
    write(spec, emb, tmp_path / "s.nc")
    write(spec, emb, tmp_path / "s.zarr")
    write(spec, emb, tmp_path / "s.parquet")
    table = pd.read_parquet(tmp_path / "s.parquet")
    assert list(table.columns) == ["id", "embedding"]
    for got in (xr.open_dataset(tmp_path / "s.nc"), xr.open_zarr(tmp_path / "s.zarr")):
        assert got["embedding"].dims == ("time", "feature")
        np.testing.assert_array_equal(got["time"].values, ds["time"].values)
        np.testing.assert_array_equal(got["embedding"].values, np.stack(table["embedding"]))


def test_cli_patch_level_keeps_the_provenance(field, tmp_path, capsys):
    path, _ = field
    run = tmp_path / "run"
    assert main(["pretrain", "--modality", "climate", "--data", str(path), "--out", str(run), "--steps", "0",
                 "--preset", "micro", "--quiet", "--set", "data.options.patch_size=2"]) == 0
    out = tmp_path / "p.zarr"
    assert main(["embed", "--checkpoint", str(run), "--data", str(path), "--out", str(out), "--level", "patch"]) == 0
    got = xr.open_zarr(out)
    assert got["embedding"].shape[:3] == (5, 3, 5)
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())
    assert got.attrs["config_hash"] == hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
    assert got.attrs["checkpoint"] == str(run.resolve()) and got.attrs["data_source"] == str(path)
    assert got.attrs["omnipatch_version"] == omnipatch.__version__ and got.attrs["level"] == "patch"
    # the default stays the sample-level Parquet (id, embedding), now with the provenance too
    assert main(["embed", "--checkpoint", str(run), "--data", str(path), "--out", str(tmp_path / "e.parquet")]) == 0
    assert list(pd.read_parquet(tmp_path / "e.parquet").columns) == ["id", "embedding"]
    assert read_provenance(tmp_path / "e.parquet")["config_hash"] == got.attrs["config_hash"]
    # a format the modality does not write: one line, before any data is read
    capsys.readouterr()
    assert main(["embed", "--checkpoint", str(run), "--data", str(tmp_path / "missing.nc"), "--out",
                 str(tmp_path / "m.nii.gz"), "--level", "patch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"omnipatch: error: {tmp_path / 'm.nii.gz'}: modality climate cannot write .nii.gz at --level "
                   "patch; it writes: .nc, .parquet, .zarr"]


def test_windows_of_several_steps_get_a_step_axis(field, tmp_path):
    path, ds = field
    spec = MODALITIES.get("climate")
    opts = {"patch_size": 2, "window": 2, "stride": 2}
    dataset = spec.open_dataset(str(path), **{**spec.options, **opts})
    pre = tiny_run("climate", dataset, opts)
    write(spec, pre.embeddings(dataset, "patch", bf16=False), tmp_path / "w.nc")
    got = xr.open_dataset(tmp_path / "w.nc")
    assert got["embedding"].dims == ("time", "step", "lat", "lon", "feature")
    times = ds["time"].values
    np.testing.assert_array_equal(got["time"].values, times[[0, 2]])  # window starts, stride 2
    np.testing.assert_array_equal(got["valid_time"].values, [[times[0], times[1]], [times[2], times[3]]])
