"""Climate grids: NetCDF (netCDF4 / h5netcdf) and Zarr through xarray -> ``(V + 2, T, H, W)``.

One file, many files (``open_mfdataset``, concatenated along time) or a Zarr store, opened
lazily with dask chunks along time: nothing is loaded until a sample is read, and reads go
block by block (``block`` time steps of every variable in one dask compute), not one
``isel`` per sample.

A **sample** is a window of ``window`` consecutive time steps (default 1) starting every
``stride`` steps; its id is the time stamp of its first step. Its tensor is

``x (V + 2, T, H, W)``: the V chosen variables (a 4-D variable ``(time, level, y, x)``
becomes one variable per pressure level, named ``<var><level>`` as in ClimaX, e.g.
``z500``), then two coordinate channels, latitude and longitude in degrees of every cell
(1-D or curvilinear 2-D coordinates alike). Missing cells (land in an ocean field, fill
values) stay NaN: the adapter turns them into padding and never scores them.

Per-variable normalisation statistics are computed once, streaming over the dask chunks
(one pass of sum / sum of squares / count, NaN skipped), and the adapter stores them in its
config, so they travel with the checkpoint.

Options (``--set data.options.NAME=VALUE``): ``variables`` (list; default every gridded
variable with a time axis), ``levels`` (list of level values), ``window``, ``stride``,
``time_range`` (``["1860", "2039"]``: a ``sel(time=slice(...))`` applied first),
``engine`` (one of :data:`ENGINES`; auto by default), ``block``.
"""

from __future__ import annotations

import difflib
import glob
import json
import math
import sys
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities import climate_out, examples
from omnipatch.modalities.base import ON_BAD, Skipped
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

NETCDF = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
LAT_NAMES = ("lat", "latitude", "nav_lat", "grid_latitude", "rlat", "y_lat")
LON_NAMES = ("lon", "longitude", "nav_lon", "grid_longitude", "rlon", "x_lon")
TIME_NAMES = ("time", "time_counter", "t", "valid_time", "date")
BOUNDS_HINTS = ("bnds", "bounds", "bound", "nvertex")
#: xarray backends the reader supports, each with the package it needs (all declared dependencies)
ENGINES = {"netcdf4": "netCDF4", "h5netcdf": "h5netcdf[h5py]", "zarr": "zarr"}


# -- opening ------------------------------------------------------------------------------------
def _is_zarr(p: str) -> bool:
    return p.rstrip("/").lower().endswith(".zarr") or (Path(p).is_dir() and (
        (Path(p) / ".zgroup").exists() or (Path(p) / "zarr.json").exists()))


def list_sources(source) -> list[str]:
    """NetCDF files / Zarr stores named by ``source`` (a path, folder, glob, or list)."""
    if isinstance(source, (list, tuple)):
        paths = [str(s) for s in source]
    else:
        src = str(source)
        p = Path(src)
        if _is_zarr(src) or p.is_file():
            paths = [src]
        elif p.is_dir():
            paths = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in NETCDF or _is_zarr(str(f)))
            if not paths:
                raise OmnipatchError(f"folder {src}: no NetCDF files ({', '.join(NETCDF)}) or Zarr stores")
        else:
            paths = sorted(glob.glob(src, recursive=True))
            if not paths:
                raise OmnipatchError(f"{src}: no such file, folder or matching files")
    for q in paths:
        if not Path(q).exists():
            raise OmnipatchError(f"{q}: no such file")
    return paths


#: numcodecs codecs that decode to Python objects; ``pickle`` runs code from the file
UNSAFE_CODECS = {"pickle", "msgpack", "msgpack2", "json", "json2", "vlen-array", "object"}
_ZARR_META = (".zarray", ".zmetadata", "zarr.json")


def check_zarr_safe(path: str, max_files: int = 10_000) -> None:
    """Refuse a Zarr store with an object dtype or an object / pickle codec, *before* any
    reader sees it: reading such an array can run code stored in the file (zarr 2.x)."""
    root = Path(path)
    if not root.is_dir():
        return
    metas = []
    for i, f in enumerate(root.rglob("*")):
        if i >= max_files:
            break
        if f.name in _ZARR_META and f.is_file():
            metas.append(f)
    for f in metas:
        try:
            meta = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise BadSampleError(path, f"unreadable Zarr metadata {f.relative_to(root)} ({type(e).__name__})") from None
        bad = _unsafe_entry(meta)
        if bad:
            raise BadSampleError(path, f"refused: {f.relative_to(root)} declares {bad} "
                                       "(object arrays and pickle/object codecs can run code from the file)")


def _unsafe_entry(node) -> str | None:
    """The first object dtype or unsafe codec anywhere in a Zarr metadata document."""
    if isinstance(node, dict):
        dtype = node.get("dtype", node.get("data_type"))
        if isinstance(dtype, str) and (dtype.lstrip("|<>=") in ("O", "object") or dtype == "object"):
            return f"the object dtype {dtype!r}"
        if isinstance(dtype, list):  # structured dtype: [[name, type], ...]
            for field_ in dtype:
                if isinstance(field_, list) and len(field_) > 1 and str(field_[1]).lstrip("|<>=") == "O":
                    return f"an object field {field_[0]!r}"
        for key in ("id", "name"):  # a v2 filter/compressor {"id": ...}, a v3 codec {"name": ...}
            if isinstance(node.get(key), str) and node[key].lower() in UNSAFE_CODECS:
                return f"the codec {node[key]!r}"
        if "object_codec_id" in node:
            return f"the object codec {node['object_codec_id']!r}"
        for k, v in node.items():
            if k == "attributes" or str(k).endswith(".zattrs"):  # user attributes: free text, never decoded
                continue
            bad = _unsafe_entry(v)
            if bad:
                return bad
        return None
    elif isinstance(node, list):
        for v in node:
            bad = _unsafe_entry(v)
            if bad:
                return bad
    return None


def _open_one(path: str, engine: str | None, chunks: dict | None):
    import xarray as xr

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise BadSampleError(path, "empty file")
    if _is_zarr(path) or engine == "zarr":
        check_zarr_safe(path)
    try:
        if _is_zarr(path) or engine == "zarr":
            with warnings.catch_warnings():  # stores without consolidated metadata are fine
                warnings.filterwarnings("ignore", message=".*consolidated metadata.*")
                return xr.open_zarr(path, chunks=chunks)
        return xr.open_dataset(path, engine=engine, chunks=chunks)
    except ImportError as e:  # the install, not the file: never a skipped sample
        raise OmnipatchError(f"{path}: engine {engine or 'auto'!r} needs a package that is not installed "
                             f"({e}); pip install {ENGINES.get(engine, 'netCDF4')}") from None
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise BadSampleError(path, f"not a readable NetCDF/Zarr dataset ({type(e).__name__}: {msg})") from None


def find_time_dim(ds) -> str | None:
    for n in TIME_NAMES:
        if n in ds.dims:
            return n
    for n, c in ds.coords.items():
        if c.ndim == 1 and (np.issubdtype(c.dtype, np.datetime64) or c.attrs.get("axis") == "T"):
            return c.dims[0]
    return None


def open_climate(paths: list[str], engine: str | None = None, block: int = 64, on_bad_sample: str = "raise"):
    """Lazily open ``paths`` as one dataset (time-chunked); returns ``(ds, skipped files)``.

    Each file is opened once, on its own (so a bad one is named, or skipped), then the
    pieces are combined along time: by their time coordinates when they have distinct ones,
    else in the given order (NEMO-style files whose time axis restarts at 0).
    """
    import xarray as xr

    if engine is not None and engine not in ENGINES:
        raise OmnipatchError(f"data.options.engine: {engine!r} is not a climate engine "
                             f"(one of {', '.join(ENGINES)}, or unset for auto)")
    good, skipped, parts, chunks, tdim = [], [], [], None, None
    for p in paths:
        try:
            if chunks is None:  # the first readable file tells the time axis to chunk along
                probe = _open_one(p, engine, None)
                tdim = find_time_dim(probe)
                probe.close()
                chunks = {tdim: block} if tdim else {}
            parts.append(_open_one(p, engine, chunks))
            good.append(p)
        except BadSampleError as e:
            if on_bad_sample == "raise":
                raise
            skipped.append(Skipped(e.source, e.reason))
    if not good:
        first = f"{skipped[0].source}: {skipped[0].reason}" if skipped else paths[0]
        raise OmnipatchError(f"none of {len(paths)} climate file(s) could be opened (first: {first})")
    if len(parts) == 1:
        return parts[0], skipped
    if tdim is None:
        raise OmnipatchError(f"cannot combine {len(good)} files without a time axis ({good[0]}, ...)")
    kw = dict(data_vars="minimal", coords="minimal", compat="override", join="exact",
              combine_attrs="drop_conflicts")
    try:
        ds = xr.combine_by_coords(parts, **kw)
        if tdim not in ds.dims or ds.sizes[tdim] != sum(d.sizes[tdim] for d in parts):
            raise ValueError("not a concatenation along time")
    except Exception:
        try:
            ds = xr.combine_nested(parts, concat_dim=tdim, **kw)
        except Exception as e:
            raise OmnipatchError(f"cannot combine {len(good)} files along {tdim!r} "
                                 f"(different grids or variables?): {type(e).__name__}: {e}") from None
        stamps = [c.values for c in ds.coords.values() if c.dims == (tdim,) and c.dtype.kind in "MO"]
        if stamps and not any(len(set(map(str, s))) == len(s) for s in stamps):
            raise OmnipatchError(f"files {good[0]} ... {good[-1]} overlap in time (repeated time stamps); "
                                 "give files that continue each other, or one file per variable set")
    return ds, skipped


def _find_coord(ds, names: tuple[str, ...], standard: str):
    for n in names:
        if n in ds.variables:
            return ds[n]
    for n, v in ds.variables.items():
        if v.attrs.get("standard_name") == standard and v.ndim in (1, 2):
            return ds[n]
    return None


def _is_bounds(name: str, dims: tuple) -> bool:
    return any(h in name.lower() for h in BOUNDS_HINTS) or any(any(h in d for h in BOUNDS_HINTS) for d in dims)


# -- dataset ------------------------------------------------------------------------------------
class ClimateDataset(Dataset):
    """Time steps (or windows) of gridded variables; see the module docstring.

    Args:
        source: NetCDF file(s) (path, folder, glob or list) or a Zarr store.
        variables: names to use; None = every gridded variable with a time axis.
        levels: level values to keep for variables with a vertical axis (None = all).
        window: time steps per sample; ``stride``: steps between sample starts.
        time_range: ``[start, end]`` selected with ``sel(time=slice(start, end))``.
        engine: xarray backend (a key of :data:`ENGINES`) or None for auto.
        block: time steps per dask chunk and per read.
        on_bad_sample: ``raise`` or ``skip`` (unreadable files are dropped and reported;
            unreadable time steps become :class:`Skipped`).

    Attributes:
        variables: the resolved variable names, in channel order.
        lat, lon: ``(H, W)`` float32 degrees of every cell.
        times: sample ids (time stamp of each window's first step).
    """

    def __init__(self, source, variables: list[str] | str | None = None, levels: list | None = None,
                 window: int = 1, stride: int = 1, time_range: list | None = None, engine: str | None = None,
                 block: int = 64, on_bad_sample: str = "raise"):
        if on_bad_sample not in ON_BAD:
            raise OmnipatchError(f"on_bad_sample must be one of {ON_BAD}, got {on_bad_sample!r}")
        self.on_bad_sample = on_bad_sample
        self.paths = list_sources(source)
        self.window, self.stride, self.block = max(1, int(window)), max(1, int(stride)), max(1, int(block))
        ds, self.skipped_files = open_climate(self.paths, engine, self.block, on_bad_sample)
        for s in self.skipped_files:
            print(f"omnipatch: skipped {s.source}: {s.reason}", file=sys.stderr)
        self.source = self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} files)"
        self.time_dim = find_time_dim(ds)
        if time_range is not None:
            if self.time_dim is None:
                raise OmnipatchError(f"{self.source}: time_range given but the data has no time axis")
            lo, hi = (list(time_range) + [None, None])[:2]
            ds = ds.sel({self.time_dim: slice(lo, hi)})
        self.ds = ds
        self.variables, self._arrays = self._select(ds, variables, levels)
        self.lat, self.lon = self._coords(ds)
        self.n_times = int(ds.sizes[self.time_dim]) if self.time_dim else 1
        if self.n_times < self.window:
            raise OmnipatchError(f"{self.source}: {self.n_times} time steps, fewer than window={self.window}")
        self.times = self._time_ids(ds)
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()
        self.classes = None

    # -- variables and coordinates --------------------------------------------------------------
    def _select(self, ds, variables, levels):
        if isinstance(variables, str):
            variables = [v.strip() for v in variables.split(",") if v.strip()]
        names = [n for n, v in ds.data_vars.items() if v.ndim >= 2 and not _is_bounds(n, v.dims)
                 and (self.time_dim is None or self.time_dim in v.dims)]
        if variables:
            for v in variables:
                if v not in ds.data_vars:
                    close = difflib.get_close_matches(v, list(ds.data_vars), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise OmnipatchError(f"{self.source}: no variable {v!r} (has: {', '.join(names)}){hint}")
            names = list(variables)
        if not names:
            raise OmnipatchError(f"{self.source}: no gridded variable with a time axis")
        out_names, arrays, shape = [], [], None
        for n in names:
            da = ds[n]
            if da.dtype.kind not in "biuf":  # strings, objects, user types: not a field of numbers
                raise OmnipatchError(f"{self.source}: variable {n!r} has dtype {da.dtype}, not numbers; "
                                     "choose numeric variables (variables=[...])")
            if self.time_dim is None:
                da = da.expand_dims("__time__")
            tdim = self.time_dim or "__time__"
            space = [d for d in da.dims if d != tdim][-2:]
            extra = [d for d in da.dims if d not in (tdim, *space)]
            if len(extra) > 1:
                raise OmnipatchError(f"{self.source}: variable {n!r} has dims {da.dims}; at most one level axis "
                                     "besides time and the 2-D grid is supported")
            if extra:
                ldim = extra[0]
                if levels is not None:
                    try:
                        da = da.sel({ldim: list(levels)})
                    except KeyError:
                        have = ds[ldim].values.tolist() if ldim in ds.coords else list(range(da.sizes[ldim]))
                        raise OmnipatchError(f"{self.source}: levels {list(levels)} not all in {n}'s {ldim!r} "
                                             f"{have}") from None
                lv = da[ldim].values if ldim in da.coords else np.arange(da.sizes[ldim])
                for i, val in enumerate(lv):
                    tag = f"{int(val)}" if float(val).is_integer() else f"{float(val):g}"
                    out_names.append(n if da.sizes[ldim] == 1 and levels is None else f"{n}{tag}")
                    arrays.append(da.isel({ldim: i}).transpose(tdim, *space))
            else:
                out_names.append(n)
                arrays.append(da.transpose(tdim, *space))
            s = tuple(arrays[-1].shape[1:])
            if shape is not None and s != shape:
                raise OmnipatchError(f"{self.source}: variable {n!r} is on a {s} grid, others on {shape}; "
                                     "choose variables on one grid (variables=[...])")
            shape = s
        self._space = tuple(arrays[0].dims[1:])
        return out_names, arrays

    def _coords(self, ds) -> tuple[np.ndarray, np.ndarray]:
        H, W = self._arrays[0].shape[1:]
        lat = _find_coord(ds, LAT_NAMES, "latitude")
        lon = _find_coord(ds, LON_NAMES, "longitude")

        def field(c) -> np.ndarray:
            if c is None:
                return np.zeros((H, W), np.float32)  # no latitude: equal weights, index positions
            v = np.asarray(c.values, dtype=np.float32)
            if v.ndim == 2 and v.shape == (H, W):
                return v
            if v.ndim == 1 and c.dims[0] in self._space:
                return np.broadcast_to(v[:, None] if c.dims[0] == self._space[0] else v[None, :], (H, W)).copy()
            raise OmnipatchError(f"{self.source}: coordinate {c.name!r} {v.shape} does not match the grid {(H, W)}")

        la, lo = field(lat), field(lon)
        if lon is None:
            lo = np.broadcast_to(np.arange(W, dtype=np.float32)[None], (H, W)).copy()
        return np.nan_to_num(la), np.nan_to_num(lo)

    def _time_ids(self, ds) -> list[str]:
        starts = range(0, self.n_times - self.window + 1, self.stride)
        if self.time_dim is None:
            return ["static"]
        cand = sorted((c for c in ds.coords.values() if c.dims == (self.time_dim,)),
                      key=lambda c: c.name != self.time_dim)  # the dimension coordinate first
        vals = None
        for c in cand:  # first coordinate along time with distinct values (NEMO: time_centered)
            v = c.values
            if len(set(map(str, v))) == len(v):
                vals = v
                break
        if vals is None:
            return [f"t{i}" for i in starts]
        return [str(np.datetime_as_string(vals[i], unit="s")) if np.issubdtype(np.asarray(vals).dtype, np.datetime64)
                else str(vals[i]) for i in starts]

    # -- samples --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.times)

    def read_block(self, b: int) -> np.ndarray:
        """Time steps ``[b*block, (b+1)*block + window - 1)`` of every variable: ``(V, t, H, W)``."""
        if b in self._blocks:
            self._blocks.move_to_end(b)
            return self._blocks[b]
        import dask

        lo, hi = b * self.block, min(self.n_times, (b + 1) * self.block + self.window - 1)
        parts = [a.data[lo:hi] if hasattr(a.data, "dask") else a.values[lo:hi] for a in self._arrays]
        vals = dask.compute(*parts, scheduler="threads")
        arr = np.stack([np.asarray(v, dtype=np.float32) for v in vals])
        self._blocks[b] = arr
        while len(self._blocks) > 2:
            self._blocks.popitem(last=False)
        return arr

    def __getitem__(self, i: int) -> Sample | Skipped:
        t0 = i * self.stride
        try:
            blk = self.read_block(t0 // self.block)
            off = t0 - (t0 // self.block) * self.block
            v = torch.from_numpy(blk[:, off:off + self.window])
            v = v.masked_fill(~torch.isfinite(v), float("nan"))  # inf fill values -> missing
            coords = torch.from_numpy(np.stack([self.lat, self.lon]))[:, None].expand(2, self.window, *self.lat.shape)
            x = torch.cat([v, coords], 0).contiguous()
        except Exception as e:
            err = e if isinstance(e, BadSampleError) else BadSampleError(
                f"{self.source}[{self.times[i]}]", f"cannot read ({type(e).__name__}: {e})")
            if self.on_bad_sample == "skip":
                return Skipped(err.source, err.reason)
            raise err from None
        return Sample(x=x, id=self.times[i])

    def stats(self) -> tuple[list[float], list[float]]:
        """Per-variable mean / std over every time step and cell (NaN skipped), streaming."""
        import dask
        import dask.array as dsa

        sums = []
        for a in self._arrays:
            d = a.data if hasattr(a.data, "dask") else dsa.from_array(a.values, chunks=(self.block, -1, -1))
            d = d.astype(np.float64)
            ok = dsa.isfinite(d)
            z = dsa.where(ok, d, 0.0)
            sums.append((z.sum(), (z * z).sum(), ok.sum()))
        out = dask.compute(*sums, scheduler="threads")
        mean, std = [], []
        for name, (s, ss, n) in zip(self.variables, out):
            if n == 0:
                raise OmnipatchError(f"{self.source}: variable {name!r} has no finite values")
            m = s / n
            mean.append(float(m))
            std.append(float(max(math.sqrt(max(ss / n - m * m, 0.0)), 1e-6)))
        return mean, std


# -- views --------------------------------------------------------------------------------------
def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0) -> Batch:
    """One random view per call, batched: a random crop of the domain (60-100 % of each
    side, its own offset per sample), a random sub-window of the time steps when samples
    are windows (a view at different times), and small Gaussian noise on data cells
    (NaN cells stay NaN). ``x (B, V + 2, T, H, W)``; coordinate channels follow the crop."""
    x = batch.x
    B, C, T, H, W = x.shape
    g, dev = generator, x.device
    r = lambda *s: torch.rand(*s, generator=g, device=g.device).to(dev)  # noqa: E731
    frac = 1.0 - 0.4 * min(strength, 1.0) * r(2)
    h, w = max(1, int(round(H * float(frac[0])))), max(1, int(round(W * float(frac[1]))))
    oy = (r(B) * (H - h + 1)).long().clamp(max=H - h)
    ox = (r(B) * (W - w + 1)).long().clamp(max=W - w)
    iy = (oy[:, None] + torch.arange(h, device=dev)[None])  # (B, h)
    ix = (ox[:, None] + torch.arange(w, device=dev)[None])  # (B, w)
    x = torch.gather(x, 3, iy[:, None, None, :, None].expand(B, C, T, h, W))
    x = torch.gather(x, 4, ix[:, None, None, None, :].expand(B, C, T, h, w))
    if T > 1:
        t = max(1, math.ceil(T / 2))
        t0 = int((r(1) * (T - t + 1)).long().clamp(max=T - t))
        x = x[:, :, t0:t0 + t]
    V = C - 2
    v = x[:, :V]
    ok = torch.isfinite(v).flatten(2)
    flat = torch.where(ok, v.flatten(2), torch.zeros((), dtype=v.dtype, device=dev))
    n = ok.sum(2).clamp_min(1)
    mean = flat.sum(2) / n
    var = (torch.where(ok, flat - mean[..., None], torch.zeros((), dtype=v.dtype, device=dev)) ** 2).sum(2) / n
    sd = var.sqrt().view(B, V, 1, 1, 1).clamp_min(1e-6)  # spread of the data cells only
    noise = torch.randn(v.shape, generator=g, device=g.device).to(dev) * 0.05 * strength * sd
    return batch.replace(x=torch.cat([v + noise, x[:, V:]], 1).contiguous())


# -- registration -------------------------------------------------------------------------------
#: CPU budget of the fitted defaults: tokens per sample (attention is quadratic in them)
MAX_TOKENS = 256


@dataclass(frozen=True)
class DataOptions:
    """Which fields, levels and time steps make a sample."""

    variables: list[str] | None = option(None, "None: every gridded variable with a time axis, in file order "
                                         "(recorded, so later data reads the same channels)",
                                         what="comma-separated variable names", flag=True)
    levels: list[float] | None = option(None, "None: every level of a 4-D variable, one channel each",
                                        what="comma-separated level values (e.g. 500,850)", flag=True)
    window: int = option(1, "one time step per sample (the scan lowers it to the data's time steps)",
                         what="consecutive time steps per sample")
    stride: int = option(1, "a sample starts at every time step", what="time steps between samples")
    time_range: list[str] | None = option(None, "None: the whole time axis", what="[start, end]: "
                                          "sel(time=slice(...)) applied first")
    engine: str | None = option(None, "None: xarray picks netCDF4 / h5netcdf / zarr by the file",
                                what="xarray engine")
    block: int = option(64, "64 time steps of every variable per dask compute: few reads, bounded memory",
                        what="time steps read at once")


@dataclass(frozen=True)
class AdapterOptions:
    """How the climate adapter patches fields."""

    patch_size: int | list[int] = option(4, "4 x 4 cells per token (the scan raises it to keep at most "
                                         f"{MAX_TOKENS} tokens per sample)", what="patch size in grid cells")
    time_patch: int = option(1, "one time step per token", what="time steps per token")
    lat_weighted: bool = option(True, "cells shrink towards the poles: the loss weights them by cos(latitude), "
                                "as ClimaX", what="latitude-weighted reconstruction loss")


def _adapter_kwargs(dataset: ClimateDataset, options: dict) -> dict:
    mean, std = dataset.stats()
    o = pick(AdapterOptions, options)
    return {"variables": list(dataset.variables), "patch_size": o.patch_size, "time_patch": o.time_patch,
            "mean": mean, "std": std, "lat_weighted": bool(o.lat_weighted)}


def _scan(source, options: dict, explicit: set) -> tuple[dict, dict]:
    """Time steps, grid, variables (lazily: metadata only). Fits ``window`` to the time axis
    and ``patch_size`` so that ``variables x windows/time_patch x ceil(H/p) x ceil(W/p)``
    stays within :data:`MAX_TOKENS` tokens per sample (the CPU budget)."""
    keys = ("variables", "levels", "time_range", "engine", "block")
    ds = ClimateDataset(source, window=1, on_bad_sample="skip", **{k: options.get(k) for k in keys
                                                                    if options.get(k) is not None})
    H, W = ds.lat.shape
    V, T = len(ds.variables), ds.n_times
    facts = {"files": len(ds.paths), "time_steps": T, "grid": f"{H} x {W}", "variables": list(ds.variables)}
    fits = {}
    if "variables" not in explicit:  # recorded, so embedding later data reads the same channels
        fits["variables"] = (list(ds.variables), "every gridded variable with a time axis, in file order")
    window = int(options.get("window") or 1)
    if window > T and "window" not in explicit:
        window = T
        fits["window"] = (T, f"the data has {T} time steps")
    if "patch_size" not in explicit:
        p = int(options.get("patch_size") or 4)
        steps = max(1, window // int(options.get("time_patch") or 1))
        while V * steps * math.ceil(H / p) * math.ceil(W / p) > MAX_TOKENS and p < max(H, W):
            p += 1
        tokens = V * steps * math.ceil(H / p) * math.ceil(W / p)
        fits["patch_size"] = (p, f"{V} variable(s) on a {H} x {W} grid: {tokens} tokens per sample at patch {p} "
                                 f"(at most {MAX_TOKENS} on a CPU budget)")
    return facts, fits


def _cell_values(sample) -> np.ndarray:
    """Per-cell values of every variable (the coordinate channels dropped)."""
    return sample.x[:-2].float().flatten().numpy()


def _open(source, on_bad_sample: str = "raise", **options) -> ClimateDataset:
    return ClimateDataset(source, on_bad_sample=on_bad_sample, **asdict(pick(DataOptions, options)))


SPEC = ModalitySpec(
    name="climate",
    description="gridded climate fields (NetCDF, Zarr via xarray+dask): one sample per time step/window",
    open_dataset=_open,
    adapter="climate",
    adapter_kwargs=_adapter_kwargs,
    augment=augment,
    default_mask="random",
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    scan=_scan,
    # examples/climate_na.py: MAE alone predicts a hidden variable best; contrastive views of
    # one field have no invariance to teach
    recipe={"objectives": "mae"},
    raw_features=_cell_values,
    raw_name="per-cell values",
    model_options=("variables", "levels", "patch_size", "time_patch"),
    example=examples.climate,
    example_options={"patch_size": 4},
    outputs=climate_out.OUTPUTS,
)
MODALITIES.add(SPEC.name, SPEC, SPEC.description)
