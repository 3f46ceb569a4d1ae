"""Tiny valid files of every modality, written with the field's own libraries, and the
ways a file goes bad (empty, truncated, random bytes, a header only, extreme values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RNG = np.random.default_rng(0)


def png(p: Path) -> None:
    from PIL import Image

    Image.fromarray((RNG.random((16, 16)) * 255).astype(np.uint8)).save(p)


def wav(p: Path) -> None:
    import soundfile as sf

    sf.write(p, (0.1 * RNG.standard_normal(8000)).astype(np.float32), 16000)


def mp4(p: Path) -> None:
    import av

    with av.open(str(p), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for _ in range(8):
            frame = av.VideoFrame.from_ndarray((RNG.random((32, 32, 3)) * 255).astype(np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def ply(p: Path) -> None:
    pts = RNG.standard_normal((64, 3)).astype(np.float32)
    p.write_text("ply\nformat ascii 1.0\nelement vertex 64\nproperty float x\nproperty float y\nproperty float z\n"
                 "end_header\n" + "".join(f"{a} {b} {c}\n" for a, b, c in pts))


def nii(p: Path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(RNG.random((8, 8, 8)).astype(np.float32), np.eye(4)), str(p))


def nc(p: Path) -> None:
    import pandas as pd
    import xarray as xr

    xr.Dataset({"tas": (("time", "lat", "lon"), RNG.normal(size=(4, 8, 8)).astype(np.float32))},
               coords={"time": pd.date_range(f"20{len(p.stem):02d}", periods=4), "lat": np.linspace(-40, 40, 8),
                       "lon": np.linspace(0, 315, 8)}).to_netcdf(p)


#: modality -> (file suffix, writer, small options)
MODALITY_FILES = {
    "image": (".png", png, {"image_size": 16}),
    "audio": (".wav", wav, {"seconds": 0.5}),
    "video": (".mp4", mp4, {"frames": 4, "size": 16, "patch_size": [2, 8, 8]}),
    "pointcloud": (".ply", ply, {"num_groups": 8, "group_size": 4, "max_points": 64}),
    "volume": (".nii", nii, {"roi_size": [8, 8, 8], "patch_size": 4}),
    "climate": (".nc", nc, {"patch_size": 4}),
}


def corrupt(kind: str, good: Path, bad: Path) -> None:
    """Write ``bad`` from the valid file ``good`` by one of the hostile ``KINDS``."""
    raw = good.read_bytes()
    data = {"empty": b"", "truncated": raw[: len(raw) // 2], "random": RNG.bytes(max(64, len(raw))),
            "header": raw[:24], "text": b"hello, I am not what my name says\n" * 4}[kind]
    bad.write_bytes(data)


KINDS = ("empty", "truncated", "random", "header", "text")


def folder_with_one_bad(root: Path, modality: str, kind: str, n_good: int = 3) -> tuple[Path, Path]:
    suffix, write, _ = MODALITY_FILES[modality]
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        write(root / f"good{'x' * i}{i}{suffix}")
    bad = root / f"bad{suffix}"
    corrupt(kind, root / f"good0{suffix}", bad)
    return root, bad
