"""Volume reading + preprocessing: our :class:`VolumeDataset` vs a plain MONAI ``LoadImage``
pipeline doing the same transforms per sample.

Both produce ``roi``-sized crops of real NIfTI volumes (nilearn's MNI152 T1 / GM / WM
templates at 1 mm, nibabel's ``anatomical.nii``) through the same MONAI transforms:
orientation RAS, 2 mm spacing, 0.5-99.5 percentile scaling, foreground crop, a ``roi`` crop,
padding. Rows:

- ``1 crop / volume``: every sample is a different volume, so no work can be shared; this
  measures our overhead (header probing, our reader) against MONAI's.
- ``8 crops / volume``: random crops for pretraining; we decode + resample each volume
  once (LRU cache) while the plain pipeline repeats it for every crop.

``equal`` checks, with centre crops, that both pipelines produce the same tensors.

Run: ``python -m benchmarks.bench_volume_io`` (CPU; times are seconds per pass).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import interleaved, report

ROI = 32
SPACING = [2.0, 2.0, 2.0]


def volumes() -> list[str]:
    out = []
    nil = importlib.util.find_spec("nilearn")
    if nil is not None and nil.submodule_search_locations:
        d = Path(nil.submodule_search_locations[0]) / "datasets" / "data"
        out += [str(d / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz") for k in ("t1", "gm", "wm")]
    import nibabel

    out.append(os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "anatomical.nii"))
    return [p for p in out if Path(p).is_file()]


def monai_pipeline(crop: str):
    from monai.transforms import (
        CenterSpatialCrop,
        Compose,
        CropForeground,
        LoadImage,
        Orientation,
        RandSpatialCrop,
        ScaleIntensityRangePercentiles,
        Spacing,
        SpatialPad,
    )

    c = RandSpatialCrop([ROI] * 3, random_size=False) if crop == "random" else CenterSpatialCrop([ROI] * 3)
    return Compose([
        LoadImage(image_only=True, ensure_channel_first=True),
        Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacing(pixdim=SPACING, mode="bilinear", dtype=np.float32),  # as ours
        ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True, channel_wise=True),
        CropForeground(select_fn=lambda v: v > 0, margin=2, allow_smaller=True),
        c, SpatialPad([ROI] * 3, mode="constant", value=0.0),
    ])


def ours(paths: list[str], crops: int, crop: str = "random"):
    from omnipatch.modalities.volume import VolumeDataset

    def f():
        ds = VolumeDataset(paths, roi_size=ROI, spacing=SPACING, crop=crop, crops_per_volume=crops)
        return [ds[i].x for i in range(len(ds))]

    return f


def peer(paths: list[str], crops: int, crop: str = "random"):
    pipe = monai_pipeline(crop)

    def f():
        return [torch.as_tensor(pipe(p)).float() for p in paths for _ in range(crops)]

    return f


def main(repeats: int = 3) -> list[dict]:
    paths = volumes()
    a, b = ours(paths, 1, "center")(), peer(paths, 1, "center")()
    equal = all(x.shape == y.shape and torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    rows = []
    for crops in (1, 8):
        n = len(paths) * crops
        t = interleaved({"ours": ours(paths, crops), "peer": peer(paths, crops)}, repeats=repeats, warmup=1)
        rows.append({"case": f"{crops} crop(s) / volume, {len(paths)} volumes", "samples": n,
                     "ours_samples_per_s": n / t["ours"], "peer_samples_per_s": n / t["peer"],
                     "peer": "MONAI LoadImage + same transforms", "ratio": t["peer"] / t["ours"], "equal": equal})
    report("volume_io", rows, ["case", "samples", "ours_samples_per_s", "peer_samples_per_s", "ratio", "equal"])
    return rows


if __name__ == "__main__":
    main()
