"""Image embeddings as patch maps: ``.npy`` arrays and ``.tif`` stacks.

A sample's tokens form the patch grid ``(gh, gw) = image_size / patch_size`` of the model's
input (every image resized to ``image_size``). The labelled object is an ``xarray.DataArray``
``embedding (sample, y, x, feature)``: ``y`` / ``x`` are the patch centres in input pixels,
``scale_y`` / ``scale_x`` (per sample) the file's pixels per input pixel, so
``file_row = (y + 0.5) * scale_y - 0.5``.

- ``.npy``: the array ``(N, gh, gw, D)`` float32, and beside it ``<stem>.json`` with the ids,
  the coordinates and the provenance (``.npy`` holds no metadata);
- ``.tif``: one TIFF (tifffile) of N pages, each ``D`` planes of ``gh x gw`` (axes ``QCYX``);
  ids, coordinates and provenance in its JSON description (``TiffFile.shaped_metadata``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from omnipatch.outputs import Embeddings, Outputs


def label_patches(emb: Embeddings):
    """``xarray.DataArray`` ``(sample, y, x, feature)``."""
    import xarray as xr

    N, _, D = emb.features.shape
    gh, gw = emb.grid
    ph, pw = emb.adapter.patch_size
    H, W = emb.dataset.image_size
    sizes = np.asarray([emb.dataset.source_size(i) for i in emb.index], dtype=np.float64).reshape(N, 2)
    coords = {"sample": np.arange(N), "id": ("sample", np.asarray(emb.ids, dtype=str)),
              "y": ("y", (np.arange(gh) + 0.5) * ph - 0.5, {"long_name": "patch centre row (input pixels)"}),
              "x": ("x", (np.arange(gw) + 0.5) * pw - 0.5, {"long_name": "patch centre column (input pixels)"}),
              "scale_y": ("sample", sizes[:, 0] / H), "scale_x": ("sample", sizes[:, 1] / W),
              "feature": np.arange(D)}
    attrs = {"long_name": "omnipatch patch embedding", "patch_size": [ph, pw], "image_size": [H, W],
             **emb.provenance}
    return xr.DataArray(emb.features.reshape(N, gh, gw, D).astype(np.float32), dims=["sample", "y", "x", "feature"],
                        coords=coords, name="embedding", attrs=attrs)


def _meta(da, provenance: dict) -> dict:
    return {"ids": [str(i) for i in da["id"].values], "y": da["y"].values.tolist(), "x": da["x"].values.tolist(),
            "scale_y": da["scale_y"].values.tolist(), "scale_x": da["scale_x"].values.tolist(),
            "patch_size": da.attrs["patch_size"], "image_size": da.attrs["image_size"], **provenance}


def write_npy(da, path: Path, provenance: dict) -> list[Path]:
    side = path.with_suffix(".json")
    np.save(path, np.asarray(da.values, dtype=np.float32), allow_pickle=False)
    side.write_text(json.dumps({"layout": "(sample, y, x, feature)", **_meta(da, provenance)}))
    return [path, side]


def write_tiff(da, path: Path, provenance: dict) -> list[Path]:
    import tifffile

    arr = np.ascontiguousarray(np.moveaxis(np.asarray(da.values, dtype=np.float32), -1, 1))  # (N, D, gh, gw)
    tifffile.imwrite(path, arr, photometric="minisblack", planarconfig="separate",
                     metadata={"axes": "QCYX", **_meta(da, provenance)})
    return [path]


OUTPUTS = Outputs(label_patches=label_patches,
                  patch_writers={".npy": write_npy, ".tif": write_tiff, ".tiff": write_tiff})
