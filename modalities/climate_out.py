"""Climate embeddings as an ``xarray`` Dataset on the input's time, latitude and longitude.

Patch level: ``embedding (time, lat, lon, feature)`` (``(time, step, lat, lon, feature)`` when
a window holds several token steps), on the input's own dimension names, its time
coordinate values (calendar kept), and latitude / longitude of the patch centres: the mean
of each patch's cells, as ``xarray``'s ``coarsen(..., boundary="pad").mean()`` gives (with
``patch_size`` 1, the input's coordinates themselves). The adapter has one token per
variable and patch; a location's vector is the mean of its variables' data tokens (all
missing: NaN). Curvilinear grids keep their dims and carry 2-D ``lat`` / ``lon``.

Sample level: ``embedding (time, feature)``. Both carry ``id`` along time, CF attributes
(``Conventions``, ``standard_name``, ``units``, ``axis``) and the provenance as global
attributes; written with ``to_netcdf`` (``.nc``) or ``to_zarr`` (``.zarr``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnipatch.outputs import Embeddings, Outputs

CF_LAT = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y", "long_name": "latitude"}
CF_LON = {"standard_name": "longitude", "units": "degrees_east", "axis": "X", "long_name": "longitude"}


def _times(ds, index: list[int], steps: int, step_len: int) -> np.ndarray:
    """``(N, steps)`` time coordinate values of each token step of each sample."""
    t0 = np.asarray(index) * ds.stride
    pos = t0[:, None] + np.arange(steps)[None] * step_len
    if ds.time_dim is None:
        return np.zeros(pos.shape, np.int64)
    return np.asarray(ds.ds[ds.time_dim].values)[pos]


def _centres(field: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """``(H, W)`` -> ``(ceil(H/ph), ceil(W/pw))`` mean over each patch's cells."""
    H, W = field.shape
    gh, gw = -(-H // ph), -(-W // pw)
    pad = np.full((gh * ph, gw * pw), np.nan)
    pad[:H, :W] = field
    return np.nanmean(pad.reshape(gh, ph, gw, pw), axis=(1, 3))


def _space(ds, ph: int, pw: int) -> tuple[list[str], dict]:
    """Spatial dim names and coordinates of the patch grid (1-D when the grid is rectilinear)."""
    lat, lon = _centres(ds.lat.astype(np.float64), ph, pw), _centres(ds.lon.astype(np.float64), ph, pw)
    ydim, xdim = ds._space
    if np.allclose(lat, lat[:, :1]) and np.allclose(lon, lon[:1, :]):
        own = all(d in ds.ds.coords and ds.ds[d].dims == (d,) for d in (ydim, xdim))
        ylat, xlon = (ydim, xdim) if own else ("lat", "lon")  # the input's names when they are coordinates
        return [ylat, xlon], {ylat: (ylat, lat[:, 0], CF_LAT), xlon: (xlon, lon[0], CF_LON)}
    return [ydim, xdim], {"lat": ((ydim, xdim), lat, CF_LAT), "lon": ((ydim, xdim), lon, CF_LON)}


def _time_attrs(ds) -> dict:
    if ds.time_dim is None:
        return {"long_name": "no time axis in the input (static field)"}
    keep = ("standard_name", "long_name", "axis")
    return {"standard_name": "time", "axis": "T", **{k: v for k, v in ds.ds[ds.time_dim].attrs.items() if k in keep}}


def label_patches(emb: Embeddings):
    """``xarray.DataArray`` ``embedding`` on ``(time[, step], lat, lon, feature)``."""
    import xarray as xr

    ds, a = emb.dataset, emb.adapter
    V, gt, gh, gw = emb.grid
    N, _, D = emb.features.shape
    f = emb.features.reshape(N, V, gt, gh, gw, D)
    ok = np.ones(f.shape[:-1], bool) if emb.padding is None else ~emb.padding.reshape(N, V, gt, gh, gw)
    n = ok.sum(1)[..., None]
    mean = np.where(n > 0, (f * ok[..., None]).sum(1) / np.maximum(n, 1), np.nan).astype(np.float32)
    sdims, scoords = _space(ds, *a.patch_size)
    tname = ds.time_dim or "time"
    times = _times(ds, emb.index, gt, a.time_patch)
    coords = {**scoords, "feature": ("feature", np.arange(D), {"long_name": "embedding feature index"}),
              "id": (tname, np.asarray(emb.ids, dtype=str), {"long_name": "sample id (first time step)"})}
    if gt == 1:
        dims, data = [tname, *sdims, "feature"], mean[:, 0]
        coords[tname] = (tname, times[:, 0], _time_attrs(ds))
    else:
        dims, data = [tname, "step", *sdims, "feature"], mean
        coords[tname] = (tname, times[:, 0], _time_attrs(ds))
        coords["valid_time"] = ((tname, "step"), times, {"long_name": "time of each token step's first time"})
    attrs = {"long_name": "omnipatch patch embedding", "variables": ", ".join(a.variables),
             "token_pooling": "mean over the variables' data tokens at each patch; NaN where every cell is missing",
             "patch_size": list(a.patch_size), "time_patch": a.time_patch, **emb.provenance}
    return xr.DataArray(data, dims=dims, coords=coords, name="embedding", attrs=attrs)


def label_samples(emb: Embeddings):
    """``xarray.DataArray`` ``embedding`` on ``(time, feature)``."""
    import xarray as xr

    ds = emb.dataset
    tname = ds.time_dim or "time"
    N, D = emb.features.shape
    coords = {tname: (tname, _times(ds, emb.index, 1, 1)[:, 0], _time_attrs(ds)),
              "feature": ("feature", np.arange(D), {"long_name": "embedding feature index"}),
              "id": (tname, np.asarray(emb.ids, dtype=str), {"long_name": "sample id (first time step)"})}
    attrs = {"long_name": "omnipatch sample embedding", "variables": ", ".join(emb.adapter.variables),
             **emb.provenance}
    return xr.DataArray(emb.features.astype(np.float32), dims=[tname, "feature"], coords=coords,
                        name="embedding", attrs=attrs)


def _dataset(da, prov: dict):
    out = da.to_dataset()
    out.attrs = {"Conventions": "CF-1.8", "title": f"omnipatch {da.attrs.get('level', '')} embeddings",
                 "source": f"omnipatch {prov.get('omnipatch_version', '')}", **prov}
    return out


def write_netcdf(da, path: Path, provenance: dict) -> list[Path]:
    _dataset(da, provenance).to_netcdf(path)
    return [path]


def write_zarr(da, path: Path, provenance: dict) -> list[Path]:
    """Zarr format 2: its string ``id`` and every other array have a settled specification
    (zarr 3 warns that fixed-width strings have none in format 3 yet)."""
    _dataset(da, provenance).to_zarr(path, mode="w", consolidated=True, zarr_format=2)
    return [path]


WRITERS = {".nc": write_netcdf, ".zarr": write_zarr}
OUTPUTS = Outputs(label_patches=label_patches, label_samples=label_samples, patch_writers=WRITERS,
                  sample_writers=WRITERS)
