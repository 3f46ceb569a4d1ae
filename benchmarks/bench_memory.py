"""Loader memory vs archive size: peak RSS while reading every sample once, for an archive
and one 10x larger. Ours streams (tar shards of images; lazily chunked NetCDF through
xarray + dask); the peers load the archive into memory first (a list of decoded images;
``xarray.open_dataset(...).load()``). Each measurement runs in a fresh process.

Run: ``python -m benchmarks.bench_memory [--quick]``. Output: peak RSS (MiB) per size, and
the growth ratio big/small (flat = ~1). Memory is the peak RSS above the RSS after imports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import report

CHILD = r"""
import json, sys
import numpy, torch, xarray, omnipatch.modalities  # imports first: their memory is not the loader's
def status_mib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 1024
base = status_mib("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
kind, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = 0
if kind == "stream":
    from omnipatch.modalities.base import stream_reader
    from omnipatch.modalities.image import ImageDataset
    from omnipatch.train.shards import ShardStream, shard_list
    import glob
    probe = ImageDataset(sorted(glob.glob(src + "/../png_probe/*.png")), image_size=64)
    it = iter(ShardStream(shard_list(src + "/*.tar"), stream_reader(probe), shuffle_buffer=256))
    for _ in range(n):
        next(it); count += 1
elif kind == "inmemory":
    import glob
    from omnipatch.modalities.image import ImageDataset
    ds = ImageDataset(src, image_size=64)
    data = [ds[i] for i in range(len(ds))]
    count = len(data)
elif kind == "climate":
    from omnipatch.modalities.climate import ClimateDataset
    ds = ClimateDataset(src, block=16)
    for i in range(len(ds)):
        ds[i]; count += 1
elif kind == "xarray_load":
    import xarray as xr
    ds = xr.open_dataset(src).load()
    for i in range(ds.sizes["time"]):
        ds.isel(time=i)["tas"].values; count += 1
peak = status_mib("VmHWM")
print(json.dumps({"count": count, "peak_mib": peak - base, "base_mib": base}))
"""


def _child(kind: str, src: str, n: int = 0) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, src, str(n)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_images(root: Path, n: int) -> Path:
    from PIL import Image

    from omnipatch.train.shards import write_shards

    rng = np.random.default_rng(0)
    png = root / f"png_{n}"
    png.mkdir(parents=True)
    files = []
    for i in range(n):
        f = png / f"{i:06d}.png"
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(f)
        files.append(f)
    write_shards(files, root / f"shards_{n}", per_shard=250)
    probe = root / "png_probe"
    if not probe.exists():
        probe.mkdir()
        for f in files[:8]:
            (probe / f.name).write_bytes(f.read_bytes())
    return png


def make_climate(root: Path, steps: int) -> Path:
    import pandas as pd
    import xarray as xr

    rng = np.random.default_rng(0)
    path = root / f"clim_{steps}.nc"
    tas = rng.standard_normal((steps, 96, 192)).astype(np.float32)
    xr.Dataset({"tas": (("time", "lat", "lon"), tas)},
               coords={"time": pd.date_range("2000-01-01", periods=steps, freq="D"),
                       "lat": np.linspace(-89, 89, 96), "lon": np.linspace(0, 358, 192)}).to_netcdf(path)
    return path


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller archives")
    a = ap.parse_args(argv)
    n_img, n_t = (200, 100) if a.quick else (500, 400)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small, big = make_images(root, n_img), make_images(root, 10 * n_img)
        s = {k: _child("stream", str(root / f"shards_{k}"), k) for k in (n_img, 10 * n_img)}
        m = {k: _child("inmemory", str(root / f"png_{k}")) for k in (n_img, 10 * n_img)}
        del small, big
        rows.append({"loader": "images: tar-shard stream (ours)", "small_MiB": s[n_img]["peak_mib"],
                     "big_MiB": s[10 * n_img]["peak_mib"], "growth": s[10 * n_img]["peak_mib"] / s[n_img]["peak_mib"],
                     "samples": f"{n_img} -> {10 * n_img}"})
        rows.append({"loader": "images: decode all into memory (peer)", "small_MiB": m[n_img]["peak_mib"],
                     "big_MiB": m[10 * n_img]["peak_mib"], "growth": m[10 * n_img]["peak_mib"] / m[n_img]["peak_mib"],
                     "samples": f"{n_img} -> {10 * n_img}"})
        c = {k: _child("climate", str(make_climate(root, k))) for k in (n_t, 10 * n_t)}
        x = {k: _child("xarray_load", str(root / f"clim_{k}.nc")) for k in (n_t, 10 * n_t)}
        rows.append({"loader": "climate: ClimateDataset, lazy dask chunks (ours)", "small_MiB": c[n_t]["peak_mib"],
                     "big_MiB": c[10 * n_t]["peak_mib"], "growth": c[10 * n_t]["peak_mib"] / c[n_t]["peak_mib"],
                     "samples": f"{n_t} -> {10 * n_t} time steps"})
        rows.append({"loader": "climate: xarray open_dataset().load() (peer)", "small_MiB": x[n_t]["peak_mib"],
                     "big_MiB": x[10 * n_t]["peak_mib"], "growth": x[10 * n_t]["peak_mib"] / x[n_t]["peak_mib"],
                     "samples": f"{n_t} -> {10 * n_t} time steps"})
    report("memory", rows, ["loader", "samples", "small_MiB", "big_MiB", "growth"])
    return rows


if __name__ == "__main__":
    main()
