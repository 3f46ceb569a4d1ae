"""Climate samples: our :class:`ClimateDataset` (lazy dask chunks, one read per block of
time steps) vs the naive loop ``np.stack([ds[v].isel(time=i).values for v in variables])``
over every time step, on real NetCDF files from iris-sample-data and eofs, and a Zarr
store written from one of them (the data stays real).

Both sides open the data inside the timed call and produce every sample of the file;
``equal`` checks that the tensors are identical (NaN cells included).

Run: ``python -m benchmarks.bench_climate_io``.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.harness import interleaved, report


def _pkg(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def cases(tmp: Path) -> list[tuple[str, list[str], list[str]]]:
    """``(label, paths, variables)`` for the real files that are installed."""
    out = []
    iris, eofs = _pkg("iris_sample_data"), _pkg("eofs")
    if iris is not None:
        d = iris / "sample_data"
        out.append(("A1B air temperature, 240 x 37 x 49", [str(d / "A1B_north_america.nc")], ["air_temperature"]))
        out.append(("OSTIA SST (NaN land), 54 x 18 x 432", [str(d / "ostia_monthly.nc")], ["surface_temperature"]))
        import xarray as xr

        z = tmp / "a1b_e1.zarr"
        a = xr.open_dataset(d / "A1B_north_america.nc", use_cftime=True)
        e = xr.open_dataset(d / "E1_north_america.nc", use_cftime=True)
        xr.merge([a[["air_temperature"]].rename(air_temperature="tas_a1b"),
                  e[["air_temperature"]].rename(air_temperature="tas_e1")], compat="override").to_zarr(z, consolidated=False)
        out.append(("Zarr, 2 variables, 240 x 37 x 49", [str(z)], ["tas_a1b", "tas_e1"]))
        out.append(("NEMO SST, 3 files (open_mfdataset)", sorted(str(p) for p in (d / "NEMO").glob("*.nc")), ["tos"]))
    if eofs is not None:
        out.append(("eofs z500 hPa (level), 65 x 29 x 49",
                    [str(eofs / "examples" / "example_data" / "hgt_djf.nc")], ["z"]))
    return out


def ours(paths: list[str], variables: list[str]):
    from omnipatch.modalities.climate import ClimateDataset

    def f():
        ds = ClimateDataset(paths if len(paths) > 1 else paths[0], variables=variables)
        return [ds[i].x[: len(ds.variables)].numpy() for i in range(len(ds))]

    return f


def naive(paths: list[str], variables: list[str]):
    import xarray as xr

    def f():
        if len(paths) > 1:
            ds = xr.open_mfdataset(paths, combine="nested", concat_dim="time_counter")
        elif paths[0].endswith(".zarr"):
            ds = xr.open_zarr(paths[0], chunks=None)
        else:
            ds = xr.open_dataset(paths[0])
        tdim = next(d for d in ds[variables[0]].dims if "time" in d)
        return [np.stack([np.asarray(ds[v].isel({tdim: i}).values, dtype=np.float32).reshape(
            -1, *ds[v].shape[-2:]) for v in variables]).reshape(-1, 1, *ds[variables[0]].shape[-2:])
                for i in range(ds.sizes[tdim])]

    return f


def main(repeats: int = 3) -> list[dict]:
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, paths, variables in cases(Path(tmp)):
            a, b = ours(paths, variables)(), naive(paths, variables)()
            equal = len(a) == len(b) and all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))
            t = interleaved({"ours": ours(paths, variables), "peer": naive(paths, variables)}, repeats=repeats)
            n = len(a)
            rows.append({"data": label, "samples": n, "ours_samples_per_s": n / t["ours"],
                         "peer_samples_per_s": n / t["peer"], "peer": "naive isel().values loop",
                         "ratio": t["peer"] / t["ours"], "equal": equal})
    report("climate_io", rows, ["data", "samples", "ours_samples_per_s", "peer_samples_per_s", "ratio", "equal"])
    return rows


if __name__ == "__main__":
    main()
