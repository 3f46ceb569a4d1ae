"""NetCDF / Zarr reading through xarray on tiny grids written in tmp_path."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

xr = pytest.importorskip("xarray")

from omnipatch.batch import Batch, Sample  # noqa: E402
from omnipatch.errors import BadSampleError, OmnipatchError  # noqa: E402
from omnipatch.modalities.base import Skipped  # noqa: E402
from omnipatch.modalities.climate import ClimateDataset, augment  # noqa: E402

T, H, W = 10, 6, 8


def _dataset(t0: str = "2000-01-01", n: int = T, nan_land: bool = False) -> "xr.Dataset":
    rng = np.random.default_rng(0)
    time = pd.date_range(t0, periods=n, freq="D")
    lat = np.linspace(-50, 50, H, dtype=np.float32)
    lon = np.linspace(0, 350, W, dtype=np.float32)
    tas = (280 + rng.normal(size=(n, H, W))).astype(np.float32)
    sst = (290 + rng.normal(size=(n, H, W))).astype(np.float32)
    if nan_land:
        sst[:, :2, :3] = np.nan
    z = (5000 + 10 * rng.normal(size=(n, 3, H, W))).astype(np.float32)
    return xr.Dataset(
        {"tas": (("time", "lat", "lon"), tas), "sst": (("time", "lat", "lon"), sst),
         "z": (("time", "level", "lat", "lon"), z),
         "time_bnds": (("time", "bnds"), np.zeros((n, 2)))},
        coords={"time": time, "lat": lat, "lon": lon, "level": [500.0, 850.0, 1000.0]},
    )


def _nc(tmp_path, name="a.nc", **kw):
    p = tmp_path / name
    _dataset(**kw).to_netcdf(p)
    return str(p)


def test_sample_layout_variables_levels_and_coords(tmp_path):
    ds = ClimateDataset(_nc(tmp_path))
    assert ds.variables == ["tas", "sst", "z500", "z850", "z1000"]  # bounds skipped, levels split
    s = ds[3]
    assert isinstance(s, Sample) and s.x.shape == (5 + 2, 1, H, W) and s.id == "2000-01-04T00:00:00"
    ref = _dataset()
    np.testing.assert_allclose(s.x[0, 0].numpy(), ref.tas.values[3])
    np.testing.assert_allclose(s.x[3, 0].numpy(), ref.z.values[3, 1])
    np.testing.assert_allclose(s.x[5, 0, :, 0].numpy(), ref.lat.values)  # latitude channel
    np.testing.assert_allclose(s.x[6, 0, 0].numpy(), ref.lon.values)  # longitude channel


def test_choose_variables_and_levels_and_helpful_errors(tmp_path):
    p = _nc(tmp_path)
    ds = ClimateDataset(p, variables=["z", "tas"], levels=[850])
    assert ds.variables == ["z850", "tas"]
    assert ClimateDataset(p, variables="tas,sst").variables == ["tas", "sst"]
    with pytest.raises(OmnipatchError, match="did you mean 'tas'"):
        ClimateDataset(p, variables=["taz"])
    with pytest.raises(OmnipatchError, match="levels \\[700\\]"):
        ClimateDataset(p, variables=["z"], levels=[700])


def test_windows_stride_and_time_range(tmp_path):
    p = _nc(tmp_path)
    ds = ClimateDataset(p, variables=["tas"], window=4, stride=3)
    assert len(ds) == 3 and ds[2].x.shape == (3, 4, H, W)  # starts 0, 3, 6
    np.testing.assert_allclose(ds[2].x[0, 1].numpy(), _dataset().tas.values[7])
    ds = ClimateDataset(p, variables=["tas"], time_range=["2000-01-03", "2000-01-05"])
    assert len(ds) == 3 and ds[0].id.startswith("2000-01-03")


def test_lazy_dask_and_block_reads(tmp_path):
    ds = ClimateDataset(_nc(tmp_path), variables=["tas"], block=4)
    assert hasattr(ds._arrays[0].data, "dask")  # nothing loaded at open
    assert ds._arrays[0].data.chunks[0] == (4, 4, 2)
    ds[5]
    assert list(ds._blocks) == [1]


def test_nan_cells_kept_and_stats_skip_them(tmp_path):
    ds = ClimateDataset(_nc(tmp_path, nan_land=True), variables=["sst", "tas"], block=3)
    x = ds[0].x
    assert torch.isnan(x[0, 0, :2, :3]).all() and torch.isfinite(x[1]).all()
    mean, std = ds.stats()
    ref = _dataset(nan_land=True).sst.values.astype(np.float64)
    assert mean[0] == pytest.approx(np.nanmean(ref), rel=1e-9) and std[0] == pytest.approx(np.nanstd(ref), rel=1e-6)


def test_many_files_and_zarr_match_one_file(tmp_path):
    full = _dataset()
    full.isel(time=slice(0, 4)).to_netcdf(tmp_path / "part1.nc", format="NETCDF4")  # HDF5-based
    full.isel(time=slice(4, None)).to_netcdf(tmp_path / "part2.nc", format="NETCDF3_64BIT")  # classic
    many = ClimateDataset(str(tmp_path / "part*.nc"), variables=["tas", "z"], levels=[500])
    assert len(many) == T
    np.testing.assert_allclose(many[6].x[0, 0].numpy(), full.tas.values[6])
    full.to_zarr(tmp_path / "store.zarr", consolidated=False)
    z = ClimateDataset(str(tmp_path / "store.zarr"), variables=["tas", "z"], levels=[500])
    torch.testing.assert_close(z[6].x, many[6].x)


def test_overlapping_files_are_an_error(tmp_path):
    _dataset().to_netcdf(tmp_path / "a.nc")
    _dataset().assign(tas=lambda d: d.tas + 1).to_netcdf(tmp_path / "b.nc")
    with pytest.raises(OmnipatchError, match="overlap in time"):
        ClimateDataset(str(tmp_path), variables=["tas"])


def test_corrupt_empty_truncated_files(tmp_path):
    (tmp_path / "empty.nc").write_bytes(b"")
    with pytest.raises(BadSampleError, match="empty file"):
        ClimateDataset(str(tmp_path / "empty.nc"))
    (tmp_path / "junk.nc").write_bytes(b"this is not netcdf" * 50)
    with pytest.raises(BadSampleError, match="junk.nc.*not a readable NetCDF"):
        ClimateDataset(str(tmp_path / "junk.nc"))
    good = _nc(tmp_path, name="good.nc")
    raw = open(good, "rb").read()
    (tmp_path / "trunc.nc").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(OmnipatchError, match="trunc.nc"):
        ds = ClimateDataset(str(tmp_path / "trunc.nc"), variables=["tas"])
        [ds[i] for i in range(len(ds))]
    with pytest.raises(OmnipatchError, match="no such file"):
        ClimateDataset(str(tmp_path / "missing.nc"))


def test_skip_bad_files_in_a_folder(tmp_path, capsys):
    _nc(tmp_path, name="good.nc")
    (tmp_path / "junk.nc").write_bytes(b"garbage" * 10)
    ds = ClimateDataset(str(tmp_path), variables=["tas"], on_bad_sample="skip")
    assert len(ds) == T and len(ds.skipped_files) == 1 and "junk.nc" in ds.skipped_files[0].source
    assert "skipped" in capsys.readouterr().err


def test_unreadable_time_step_is_skipped(tmp_path, monkeypatch):
    ds = ClimateDataset(_nc(tmp_path), variables=["tas"], on_bad_sample="skip")

    def boom(b):
        raise OSError("HDF error")

    monkeypatch.setattr(ds, "read_block", boom)
    out = ds[2]
    assert isinstance(out, Skipped) and "2000-01-03" in out.source and "HDF error" in out.reason


def test_no_time_axis_is_one_static_sample(tmp_path):
    _dataset().isel(time=0).drop_vars(["time", "time_bnds"]).to_netcdf(tmp_path / "s.nc")
    ds = ClimateDataset(str(tmp_path / "s.nc"), variables=["tas"])
    assert len(ds) == 1 and ds[0].id == "static" and ds[0].x.shape == (3, 1, H, W)


def test_augment_crops_domain_and_keeps_nan():
    x = torch.randn(2, 3, 4, H, W)
    x[:, 1] = torch.linspace(-50, 50, H).view(1, 1, H, 1)
    x[:, 2] = torch.linspace(0, 350, W).view(1, 1, 1, W)
    x[0, 0, :, 0, 0] = float("nan")
    v = augment(Batch(x=x), torch.Generator().manual_seed(0)).x
    assert v.shape[:2] == (2, 3) and v.shape[2] == 2 and v.shape[3] <= H and v.shape[4] <= W
    # the latitude channel is a crop of the original rows (no resampling)
    assert set(v[:, 1, 0, :, 0].flatten().tolist()) <= set(torch.linspace(-50, 50, H).tolist())


def test_augment_noise_is_relative_to_data_cells_only():
    x = torch.full((1, 3, 1, H, W), 300.0)
    x[:, 0] += torch.randn(H, W)  # spread 1 K around 300 K
    x[:, 0, :, :3] = float("nan")  # land: must not inflate the noise scale
    x[:, 1], x[:, 2] = 0.0, 0.0
    v = augment(Batch(x=x), torch.Generator().manual_seed(0), strength=1.0).x
    # noise is ~5 % of the 1 K spread of the data cells, not of the 300 K gap to the zero-filled land
    assert float(torch.nan_to_num(v[:, 0], nan=300.0).std()) < 2.0


def test_files_on_different_grids_are_an_error(tmp_path):
    _dataset().isel(time=slice(0, 5)).to_netcdf(tmp_path / "a.nc")
    _dataset(t0="2000-01-06", n=5).isel(lat=slice(0, 4)).to_netcdf(tmp_path / "b.nc")
    with pytest.raises(OmnipatchError, match="cannot combine 2 files"):
        ClimateDataset(str(tmp_path), variables=["tas"])


@pytest.mark.integration
def test_cli_pretrain_embed_with_nan_fields(tmp_path):
    from omnipatch.api import read_embeddings
    from omnipatch.cli import main
    from omnipatch.train.engine import read_metrics

    p = _nc(tmp_path, nan_land=True)
    run = tmp_path / "run"
    assert main(["pretrain", "--modality", "climate", "--data", p, "--out", str(run), "--preset", "micro",
                 "--steps", "3", "--batch-size", "4", "--objective", "mae+contrastive", "--quiet",
                 "--set", 'data.options.variables=["sst", "tas"]', "--set", "data.options.patch_size=2",
                 "--set", "model.mask=group", "--set", "model.mask_ratio=0.5"]) == 0
    assert all(math.isfinite(r["loss"]) for r in read_metrics(run / "metrics.jsonl"))
    assert main(["embed", "--checkpoint", str(run), "--data", p, "--out", str(tmp_path / "e.parquet")]) == 0
    ids, emb = read_embeddings(tmp_path / "e.parquet")
    assert len(ids) == T and ids[0] == "2000-01-01T00:00:00" and np.isfinite(emb).all()
    from omnipatch.api import load

    adapter = load(run).model.adapters["climate"]
    assert adapter.variables == ["sst", "tas"] and adapter.mean[0] == pytest.approx(290, abs=1)  # stats in the checkpoint
