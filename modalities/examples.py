"""Tiny real example files per modality, written with the field's own library.

Each function takes a folder, writes 2-4 small files (with labels, where the modality reads
them from a manifest) and returns the source to open them with. They are the modalities'
:attr:`~omnipatch.modality.ModalitySpec.example`: the registry-driven contract tests open
every registered modality through them, with its :attr:`~omnipatch.modality.ModalitySpec.example_options`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

N = 4


def _manifest(folder: Path, names: list[str]) -> str:
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id", "label"])
        w.writerows([n, f"s{i}", i % 2] for i, n in enumerate(names))
    return str(folder / "manifest.csv")


def image(folder) -> str:
    """Four 8 x 8 grayscale PNGs (PIL)."""
    from PIL import Image

    folder, rng = Path(folder), np.random.default_rng(0)
    names = [f"img{i}.png" for i in range(N)]
    for n in names:
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(folder / n)
    return _manifest(folder, names)


def audio(folder) -> str:
    """Four 0.25 s tones at 8 kHz as WAV (soundfile)."""
    import soundfile as sf

    folder, t = Path(folder), np.arange(2000) / 8000.0
    names = [f"tone{i}.wav" for i in range(N)]
    for i, n in enumerate(names):
        sf.write(str(folder / n), (0.5 * np.sin(2 * np.pi * (300 + 200 * i) * t)).astype(np.float32), 8000)
    return _manifest(folder, names)


def video(folder) -> str:
    """Four 8-frame 16 x 16 MPEG-4 clips (PyAV)."""
    import av

    folder = Path(folder)
    names = [f"clip{i}.mp4" for i in range(N)]
    for i, n in enumerate(names):
        with av.open(str(folder / n), "w") as c:
            s = c.add_stream("mpeg4", rate=8)
            s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
            for k in range(8):
                a = np.full((16, 16, 3), (20 * k + 40 * i) % 250, np.uint8)
                for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    return _manifest(folder, names)


def volume(folder) -> str:
    """Four 8 x 8 x 8 NIfTI volumes (nibabel)."""
    import nibabel as nib

    folder, rng = Path(folder), np.random.default_rng(0)
    names = [f"vol{i}.nii.gz" for i in range(N)]
    for n in names:
        img = nib.Nifti1Image(rng.random((8, 8, 8)).astype(np.float32), np.eye(4))
        img.header.set_xyzt_units("mm", "unknown")
        nib.save(img, str(folder / n))
    return _manifest(folder, names)


def pointcloud(folder) -> str:
    """Four 64-point clouds as PLY (open3d)."""
    import open3d as o3d

    folder, rng = Path(folder), np.random.default_rng(0)
    names = [f"cloud{i}.ply" for i in range(N)]
    for n in names:
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rng.normal(size=(64, 3))))
        assert o3d.io.write_point_cloud(str(folder / n), pc)
    return _manifest(folder, names)


def tabular(folder) -> str:
    """A CSV table of four rows: two numeric columns, one categorical, an id and a label."""
    folder = Path(folder)
    with open(folder / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "a", "b", "kind", "label"])
        w.writerows([f"r{i}", 0.5 * i, 3.0 - i, "xy"[i % 2], i % 2] for i in range(N))
    return str(folder / "table.csv")


def climate(folder) -> str:
    """A NetCDF file of four daily 8 x 8 fields of two variables (xarray + netCDF)."""
    import pandas as pd
    import xarray as xr

    folder, rng = Path(folder), np.random.default_rng(0)
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), (280 + rng.normal(size=(N, 8, 8))).astype(np.float32)),
         "sst": (("time", "lat", "lon"), (290 + rng.normal(size=(N, 8, 8))).astype(np.float32))},
        coords={"time": pd.date_range("2000-01-01", periods=N, freq="D"),
                "lat": np.linspace(-40, 40, 8, dtype=np.float32), "lon": np.linspace(0, 315, 8, dtype=np.float32)})
    ds.to_netcdf(folder / "fields.nc")
    return str(folder / "fields.nc")
