"""Image patch maps as ``.npy`` and ``.tif``, with ids, patch coordinates and provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import xarray as xr
from PIL import Image

from omnipatch.modality import MODALITIES
from omnipatch.outputs import write
from tests.modalities.tiny_run import tiny_run, tokens_of

OPTS = {"image_size": 8, "patch_size": 4}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder, rng = tmp_path_factory.mktemp("images"), np.random.default_rng(0)
    for k, (h, w) in enumerate([(16, 16), (24, 8), (8, 8)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"im{k}.png")
    spec = MODALITIES.get("image")
    ds = spec.open_dataset(str(folder), **{**spec.options, **OPTS})
    return spec, ds, tiny_run("image", ds, OPTS)


def test_labelled_patch_map_has_patch_centres_and_file_scale(run):
    spec, ds, pre = run
    da = pre.embed(ds, level="patch", bf16=False)
    assert isinstance(da, xr.DataArray) and da.dims == ("sample", "y", "x", "feature")
    assert da.shape == (3, 2, 2, 32)
    np.testing.assert_array_equal(da["y"].values, [1.5, 5.5])  # centres of pixel rows 0-3 and 4-7
    np.testing.assert_array_equal(da["scale_y"].values, [2.0, 3.0, 1.0])
    np.testing.assert_array_equal(da["scale_x"].values, [2.0, 1.0, 1.0])
    _, enc = tokens_of(pre, ds, 1)
    np.testing.assert_allclose(da.values[1].reshape(4, 32), enc.numpy(), atol=1e-4)


def test_npy_and_tif_round_trip(run, tmp_path):
    spec, ds, pre = run
    emb = pre.embeddings(ds, "patch", bf16=False)
    ref = pre.embed(ds, level="patch", bf16=False).values
    npy, side = write(spec, emb, tmp_path / "maps.npy")
    np.testing.assert_array_equal(np.load(npy), ref)
    meta = json.loads(side.read_text())
    assert meta["ids"] == [ds[i].id for i in range(3)] and meta["y"] == [1.5, 5.5] and meta["level"] == "patch"
    (tif,) = write(spec, emb, tmp_path / "maps.tif")
    with tifffile.TiffFile(tif) as f:
        arr, tmeta = f.series[0].asarray(), f.shaped_metadata[0]
    np.testing.assert_array_equal(np.moveaxis(arr, 1, -1), ref)  # (N, D, gh, gw) planes
    assert tmeta["ids"] == meta["ids"] and tmeta["config_hash"] == meta["config_hash"]
