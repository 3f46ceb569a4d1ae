"""Every climate engine the README names opens a generated file with the declared
dependencies alone, and gives back the values that were written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xarray")

from omnipatch.errors import OmnipatchError  # noqa: E402
from omnipatch.modalities.climate import ENGINES, SPEC  # noqa: E402
from tests.modalities.test_climate import _dataset  # noqa: E402

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _readme_engines() -> set[str]:
    line = next(p for p in README.split("\n\n") if "data.options.engine" in p)
    return set(re.findall(r"`(\w+)`", line)) - {"h5py"}


def test_readme_names_exactly_the_reader_engines():
    assert _readme_engines() == set(ENGINES)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_opens_a_generated_file_with_its_values(tmp_path, engine):
    full = _dataset()
    if engine == "zarr":
        path = tmp_path / "fields.zarr"
        full.to_zarr(path, consolidated=False)
    else:  # a NetCDF-4 file as the netCDF-C library writes it, read back by each NetCDF engine
        path = tmp_path / "fields.nc"
        full.to_netcdf(path, engine="netcdf4", format="NETCDF4")
    ds = SPEC.open_dataset(str(path), variables=["tas", "z"], levels=[850], engine=engine)
    assert ds.variables == ["tas", "z850"] and len(ds) == full.sizes["time"]
    x = ds[5].x.numpy()  # (V + 2, T, H, W): tas, z850, lat, lon
    np.testing.assert_array_equal(x[0, 0], full.tas.values[5])
    np.testing.assert_array_equal(x[1, 0], full.z.sel(level=850.0).values[5])
    np.testing.assert_array_equal(x[2, 0, :, 0], full.lat.values)
    np.testing.assert_array_equal(x[3, 0, 0], full.lon.values)
    assert ds.times[5].startswith("2000-01-06")


def test_unknown_engine_is_one_clear_error(tmp_path):
    path = tmp_path / "fields.nc"
    _dataset().to_netcdf(path)
    with pytest.raises(OmnipatchError, match=r"'scipyy' is not a climate engine \(one of netcdf4, h5netcdf, zarr"):
        SPEC.open_dataset(str(path), engine="scipyy")


def test_missing_engine_package_names_it_and_is_never_a_skipped_file(tmp_path, monkeypatch):
    import xarray as xr

    path = tmp_path / "fields.nc"
    _dataset().to_netcdf(path)

    def no_h5py(*a, **k):
        raise ModuleNotFoundError("No module named 'h5py'")
    monkeypatch.setattr(xr, "open_dataset", no_h5py)
    with pytest.raises(OmnipatchError, match=r"fields.nc: engine 'h5netcdf' needs .*h5py.*pip install h5netcdf\[h5py\]"):
        SPEC.open_dataset(str(path), engine="h5netcdf", on_bad_sample="skip")
