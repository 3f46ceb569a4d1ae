"""NIfTI reading and MONAI preprocessing on tiny volumes written by nibabel in tmp_path."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")

from omnipatch.batch import Sample  # noqa: E402
from omnipatch.errors import BadSampleError, OmnipatchError  # noqa: E402
from omnipatch.modalities.base import Skipped  # noqa: E402
from omnipatch.modalities.volume import VolumeDataset, augment, preprocess, read_volume  # noqa: E402


def _save(path, data, affine=None, time_unit: str | None = None):
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    if time_unit:
        img.header.set_xyzt_units("mm", time_unit)
    else:
        img.header.set_xyzt_units("mm", "unknown")
    nib.save(img, str(path))
    return str(path)


def _ramp(shape=(12, 10, 8)):
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_read_3d_nii_and_gz(tmp_path):
    d = _ramp()
    for name in ("a.nii", "a.nii.gz"):
        x, aff = read_volume(_save(tmp_path / name, d))
        assert x.shape == (1, 12, 10, 8) and x.dtype == np.float32
        np.testing.assert_array_equal(x[0], d)
        np.testing.assert_array_equal(aff, np.eye(4))


def test_orientation_to_ras_flips_a_left_pointing_axis(tmp_path):
    d = _ramp()
    las = np.diag([-1.0, 1.0, 1.0, 1.0])  # voxel i grows towards the left
    x, aff = read_volume(_save(tmp_path / "las.nii", d, las))
    out = preprocess(x, aff, intensity="none", foreground_crop=False)
    torch.testing.assert_close(out[0], torch.from_numpy(d[::-1].copy()))


def test_spacing_resamples_to_target_mm(tmp_path):
    x, aff = read_volume(_save(tmp_path / "v.nii", _ramp((20, 20, 20))))
    out = preprocess(x, aff, spacing=[2, 2, 2], intensity="none", foreground_crop=False)
    assert tuple(out.shape) == (1, 10, 10, 10)


def test_intensity_percentiles_and_window(tmp_path):
    x, aff = read_volume(_save(tmp_path / "v.nii", _ramp()))
    p = preprocess(x, aff, intensity="percentiles", foreground_crop=False)
    assert float(p.min()) == 0.0 and float(p.max()) == 1.0
    ct = np.full((6, 6, 6), -2000.0, np.float32)
    ct[2:4, 2:4, 2:4] = 0.0
    x, aff = read_volume(_save(tmp_path / "ct.nii", ct))
    w = preprocess(x, aff, intensity="window", window=(-1000, 1000), foreground_crop=False)
    assert float(w.min()) == 0.0 and abs(float(w.max()) - 0.5) < 1e-6  # -2000 clipped, 0 HU -> 0.5


def test_foreground_crop(tmp_path):
    d = np.zeros((20, 20, 20), np.float32)
    d[5:10, 6:12, 7:9] = 1.0
    x, aff = read_volume(_save(tmp_path / "v.nii", d))
    out = preprocess(x, aff, intensity="none", foreground_crop=True)
    assert tuple(out.shape[1:]) == (5 + 4, 6 + 4, 2 + 4)  # bounding box + 2-voxel margin


def test_dataset_random_crops_seeded_and_small_volume_padded(tmp_path):
    _save(tmp_path / "big.nii.gz", np.random.default_rng(0).random((30, 30, 30)).astype(np.float32) + 1)
    _save(tmp_path / "small.nii.gz", np.ones((4, 5, 6), np.float32))
    ds = VolumeDataset(str(tmp_path), roi_size=8, crops_per_volume=3, foreground_crop=False, intensity="none")
    assert len(ds) == 3 + 1  # the small volume fits in the ROI: one sample
    a, b = ds[0], ds[1]
    assert a.x.shape == (1, 8, 8, 8) and a.id.endswith("big.nii.gz#c0") and b.id.endswith("#c1")
    assert not torch.equal(a.x, b.x)
    again = VolumeDataset(str(tmp_path), roi_size=8, crops_per_volume=3, foreground_crop=False, intensity="none")
    torch.testing.assert_close(again[0].x, a.x)  # crop k of a volume is the same every run
    small = ds[3].x
    assert small.shape == (1, 8, 8, 8) and float(small.sum()) == pytest.approx(4 * 5 * 6)  # zero padding


def test_4d_time_series_frames_vs_channels_vs_mean(tmp_path):
    d = np.stack([np.full((6, 6, 6), t + 1.0, np.float32) for t in range(3)], -1)
    _save(tmp_path / "fmri.nii.gz", d, time_unit="sec")
    ds = VolumeDataset(str(tmp_path / "fmri.nii.gz"), roi_size=6, intensity="none", foreground_crop=False)
    assert len(ds) == 3 and ds.channels == 1 and ds[2].id.endswith("#t2")
    assert float(ds[2].x.mean()) == pytest.approx(3.0)
    _save(tmp_path / "seq.nii.gz", d)  # no time unit: stacked sequences -> channels
    ds = VolumeDataset(str(tmp_path / "seq.nii.gz"), roi_size=6, intensity="none", foreground_crop=False)
    assert len(ds) == 1 and ds.channels == 3 and ds[0].x.shape == (3, 6, 6, 6)
    ds = VolumeDataset(str(tmp_path / "fmri.nii.gz"), roi_size=6, intensity="none", foreground_crop=False,
                       series="mean")
    assert len(ds) == 1 and float(ds[0].x.mean()) == pytest.approx(2.0)


def test_vector_image_is_multichannel(tmp_path):
    d = np.random.default_rng(0).random((6, 6, 6, 1, 2)).astype(np.float32)
    x, _ = read_volume(_save(tmp_path / "vec.nii", d))
    assert x.shape == (2, 6, 6, 6)


@pytest.mark.parametrize("make,reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"not a nifti at all" * 40), "not a readable NIfTI"),
])
def test_unreadable_files(tmp_path, make, reason):
    p = tmp_path / "bad.nii"
    make(p)
    with pytest.raises(BadSampleError, match=reason) as e:
        read_volume(str(p))
    assert "bad.nii" in str(e.value)


def test_truncated_gzip(tmp_path):
    p = _save(tmp_path / "t.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(BadSampleError, match="truncated or corrupt"):
        read_volume(p)
    ok = open(_save(tmp_path / "ok.nii", np.ones((20, 20, 20), np.float32)), "rb").read()
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(ok[:1000]))  # valid gzip, data cut short
    with pytest.raises(BadSampleError, match="truncated or corrupt"):
        read_volume(str(tmp_path / "short.nii.gz"))
    flipped = bytearray(raw)
    flipped[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)  # corrupt bytes: caught by gzip's CRC
    (tmp_path / "corrupt.nii.gz").write_bytes(bytes(flipped))
    with pytest.raises(BadSampleError, match="corrupt.nii.gz"):
        read_volume(str(tmp_path / "corrupt.nii.gz"))


def test_wrong_dimensionality_nan_and_affine(tmp_path):
    with pytest.raises(BadSampleError, match="wrong dimensionality"):
        read_volume(_save(tmp_path / "flat.nii", np.ones((5, 5), np.float32)))
    d = np.ones((5, 5, 5), np.float32)
    d[1, 2, 3] = np.nan
    p = _save(tmp_path / "nan.nii", d)
    with pytest.raises(BadSampleError, match="1 NaN/inf voxels"):
        read_volume(p)
    x, _ = read_volume(p, nan_voxels="zero")
    assert np.isfinite(x).all() and x[0, 1, 2, 3] == 0
    img = nib.Nifti1Image(np.ones((5, 5, 5), np.float32), np.eye(4))
    img.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=2)  # a flat (rank-2) voxel-to-world map
    img.set_qform(np.eye(4), code=0)
    nib.save(img, str(tmp_path / "aff.nii"))
    with pytest.raises(BadSampleError, match="non-invertible affine"):
        read_volume(str(tmp_path / "aff.nii"))
    with pytest.raises(BadSampleError, match="file not found"):
        read_volume(str(tmp_path / "missing.nii"))


def test_skip_bad_files_and_channel_mismatch(tmp_path):
    _save(tmp_path / "a.nii", _ramp((6, 6, 6)))
    (tmp_path / "b.nii").write_bytes(b"junk" * 100)
    with pytest.raises(BadSampleError, match="b.nii"):
        VolumeDataset(str(tmp_path), roi_size=6)
    ds = VolumeDataset(str(tmp_path), roi_size=6, on_bad_sample="skip")
    out = [ds[i] for i in range(len(ds))]
    assert isinstance(out[0], Sample) and isinstance(out[1], Skipped) and "b.nii" in out[1].source
    _save(tmp_path / "c.nii", np.stack([_ramp((6, 6, 6))] * 2, -1))
    ds = VolumeDataset([str(tmp_path / "a.nii"), str(tmp_path / "c.nii")], roi_size=6)
    with pytest.raises(BadSampleError, match="has 2 channels, expected 1"):
        ds[1]


def test_folder_ignores_other_gz_and_bad_options(tmp_path):
    _save(tmp_path / "a.nii.gz", _ramp((6, 6, 6)))
    (tmp_path / "notes.csv.gz").write_bytes(gzip.compress(b"x"))
    assert len(VolumeDataset(str(tmp_path), roi_size=6)) == 1
    with pytest.raises(OmnipatchError, match="series must be"):
        VolumeDataset(str(tmp_path), series="time")
    with pytest.raises(OmnipatchError, match="intensity must be"):
        VolumeDataset(str(tmp_path), intensity="mri")


def test_augment_keeps_shape_and_is_seeded():
    from omnipatch.batch import Batch

    b = Batch(x=torch.rand(2, 1, 8, 8, 8))
    v1 = augment(b, torch.Generator().manual_seed(1)).x
    v2 = augment(b, torch.Generator().manual_seed(1)).x
    assert v1.shape == b.x.shape and torch.isfinite(v1).all()
    torch.testing.assert_close(v1, v2)


@pytest.mark.integration
def test_cli_pretrain_embed_eval(tmp_path):
    from omnipatch.api import read_embeddings
    from omnipatch.cli import main

    rng = np.random.default_rng(0)
    rows = ["path,id,label"]
    for i in range(10):  # 5 per class: eval's 5-fold cross-validation needs them
        _save(tmp_path / f"v{i}.nii.gz", (rng.random((8, 8, 8)) + (i % 2)).astype(np.float32))
        rows.append(f"v{i}.nii.gz,v{i},{i % 2}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "labels.csv").write_text("id,label\n" + "\n".join(f"v{i},{i % 2}" for i in range(10)) + "\n")
    run = tmp_path / "run"
    assert main(["pretrain", "--modality", "volume", "--data", str(tmp_path / "m.csv"), "--out", str(run),
                 "--preset", "micro", "--steps", "2", "--batch-size", "4", "--quiet", "--objective", "mae",
                 "--set", "data.options.roi_size=[8, 8, 8]", "--set", "data.options.patch_size=4",
                 "--set", "data.options.crops_per_volume=2", "--set", "data.options.intensity=window",
                 "--set", "data.options.window=[0, 2]"]) == 0
    assert main(["embed", "--checkpoint", str(run), "--data", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "e.parquet")]) == 0
    ids, emb = read_embeddings(tmp_path / "e.parquet")
    assert ids == [f"v{i}" for i in range(10)]  # volumes that fit the ROI: one sample each, id kept
    assert emb.shape == (10, 4 * 128)  # the volume readout: 2 x 2 regions of the micro encoder's 128 wide tokens
    assert main(["embed", "--checkpoint", str(run), "--data", str(tmp_path / "m.csv"), "--readout", "mean",
                 "--out", str(tmp_path / "mean.parquet")]) == 0
    _, mean = read_embeddings(tmp_path / "mean.parquet")
    # the mean of the tokens is the mean of the four equal regions (bf16 embedding: loose tolerance)
    np.testing.assert_allclose(mean, emb.reshape(10, 4, 128).mean(1), atol=0.05)
    assert main(["eval", "knn", "--embeddings", str(tmp_path / "e.parquet"), "--labels",
                 str(tmp_path / "labels.csv"), "--k", "3"]) == 0
