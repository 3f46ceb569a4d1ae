"""Nothing loads code from a data file: crafted Zarr stores, pickles in ``train_state.pt``."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from omnipatch.errors import BadSampleError


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_zarr(root, marker, codec: str = "pickle", v3: bool = False):
    """A Zarr v2 store whose variable ``x`` is an object array with a ``pickle`` filter that
    runs ``touch marker`` when decoded (zarr 2.x did), plus a valid ``time`` array."""
    root.mkdir()
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (root / ".zattrs").write_text("{}")
    for name, meta, payload in (
            ("x", {"dtype": "|O", "filters": [{"id": codec}]}, pickle.dumps(np.array([_Payload(str(marker))] * 4, dtype=object))),
            ("time", {"dtype": "<i8", "filters": None}, np.arange(4, dtype="<i8").tobytes())):
        (root / name).mkdir()
        meta = {"zarr_format": 2, "shape": [4], "chunks": [4], "compressor": None, "fill_value": None,
                "order": "C", **meta}
        (root / name / ".zarray").write_text(json.dumps(meta))
        (root / name / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": ["time"]}))
        (root / name / "0").write_bytes(payload)
    return root


@pytest.mark.parametrize("codec", ["pickle", "msgpack2", "json2", "vlen-array"])
def test_object_codec_zarr_is_refused_before_opening(codec, tmp_path, cli):
    store = evil_zarr(tmp_path / "evil.zarr", tmp_path / "PWNED", codec)
    r = cli("pretrain", "--modality", "climate", "--data", store, "--out", tmp_path / "run", "--steps", "1", "--quiet")
    r.one_error_line(str(store), "refused", "object")
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.mark.parametrize("meta, what", [
    ({"zarr_format": 3, "node_type": "array", "data_type": "float32",
      "codecs": [{"name": "pickle", "configuration": {}}]}, "codec 'pickle'"),
    ({"metadata": {"x/.zarray": {"dtype": "|O", "filters": None}}}, "object dtype"),
    ({"zarr_format": 2, "dtype": [["a", "<f4"], ["b", "|O"]]}, "object field 'b'"),
])
def test_unsafe_metadata_forms(meta, what, tmp_path):
    from omnipatch.modalities.climate import check_zarr_safe

    store = tmp_path / "s.zarr"
    (store / "x").mkdir(parents=True)
    (store / "x" / ("zarr.json" if meta.get("zarr_format") == 3 else ".zmetadata")).write_text(json.dumps(meta))
    with pytest.raises(BadSampleError, match=what):
        check_zarr_safe(str(store))


def test_ordinary_zarr_store_with_free_text_attributes_opens(tmp_path):
    import pandas as pd
    import xarray as xr

    from omnipatch.modalities.climate import ClimateDataset

    ds = xr.Dataset({"tas": (("time", "lat", "lon"), np.ones((3, 4, 4), np.float32))},
                    coords={"time": pd.date_range("2000", periods=3), "lat": np.arange(4.0), "lon": np.arange(4.0)},
                    attrs={"note": "pickle", "id": "pickle"})
    ds.to_zarr(tmp_path / "ok.zarr", consolidated=True, zarr_format=2)
    assert len(ClimateDataset(str(tmp_path / "ok.zarr"))) == 3


def test_object_dtype_netcdf_variable_is_refused(tmp_path, cli):
    import pandas as pd
    import xarray as xr

    ds = xr.Dataset({"s": (("time", "lat", "lon"), np.full((3, 2, 2), "a", dtype=object))},
                    coords={"time": pd.date_range("2000", periods=3), "lat": [0.0, 1.0], "lon": [0.0, 1.0]})
    ds.to_netcdf(tmp_path / "s.nc")
    r = cli("pretrain", "--modality", "climate", "--data", tmp_path / "s.nc", "--out", tmp_path / "run", "--steps", "1",
            "--quiet", "--set", "data.options.variables=[\"s\"]")
    r.one_error_line("'s'", "not numbers")


def test_pickled_object_npy_is_refused(tmp_path, cli):
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "a.npy", np.array([_Payload(str(tmp_path / "PWNED"))], dtype=object), allow_pickle=True)
    r = cli("pretrain", "--modality", "image", "--data", tmp_path / "d", "--out", tmp_path / "run", "--steps", "1")
    r.one_error_line("a.npy")
    assert not (tmp_path / "PWNED").exists()


def test_pickled_init_weights_are_refused_without_torch_advice(tmp_path, cli, png_folder):
    import torch

    torch.save({"w": _Payload(str(tmp_path / "PWNED"))}, tmp_path / "evil.pth")
    r = cli("pretrain", "--modality", "image", "--data", png_folder, "--out", tmp_path / "run", "--steps", "1",
            "--init", f"timm:vit_tiny_patch16_224={tmp_path / 'evil.pth'}", "--quiet")
    line = r.one_error_line("evil.pth")
    assert "weights_only" not in line and not (tmp_path / "PWNED").exists()


def test_malicious_train_state_is_refused_in_one_line(pretrained, cli, tmp_path):
    import torch

    torch.save({"step": _Payload(str(tmp_path / "PWNED"))}, pretrained / "checkpoint" / "train_state.pt")
    r = cli("pretrain", "--out", pretrained, "--resume", "--steps", "3", "--quiet")
    line = r.one_error_line("train_state.pt")
    assert "weights_only" not in line and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("cut", [0, 10, 200])
def test_truncated_train_state_is_one_line(pretrained, cli, cut):
    p = pretrained / "checkpoint" / "train_state.pt"
    p.write_bytes(p.read_bytes()[:cut])
    cli("pretrain", "--out", pretrained, "--resume", "--steps", "3", "--quiet").one_error_line("train_state.pt")
