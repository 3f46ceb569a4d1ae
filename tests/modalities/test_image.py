import numpy as np
import pytest
import torch

from omnipatch.batch import Sample, collate
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.base import Skipped
from omnipatch.modalities.image import ImageDataset, augment, channel_stats


def test_png_folder_manifest_labels(png_folder):
    ds = ImageDataset(png_folder / "manifest.csv", image_size=8)
    s = ds[0]
    assert isinstance(s, Sample) and s.x.shape == (1, 8, 8) and s.id == "id0"
    assert ds.classes == {"horizontal": 0, "vertical": 1} and s.label == 0
    assert 0.0 <= float(s.x.min()) and float(s.x.max()) <= 1.0
    assert len(ImageDataset(png_folder, image_size=8)) == 24  # folder form


def test_16bit_multiband_tiff_and_npy(tmp_path):
    import tifffile

    arr = (np.arange(13 * 10 * 12).reshape(13, 10, 12) * 40).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", arr)
    np.save(tmp_path / "b.npy", arr.transpose(1, 2, 0).astype(np.float32))
    ds = ImageDataset(tmp_path, image_size=(10, 12))
    assert ds.channels == 13
    t = ds[0].x
    assert t.shape == (13, 10, 12)
    torch.testing.assert_close(t, torch.from_numpy(arr.astype(np.float32) / 65535.0))
    assert ds[1].x.shape == (13, 10, 12)


def test_rgb_jpeg_and_gray_promoted(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8) + 128).save(tmp_path / "c.jpg")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "d.png")
    ds = ImageDataset(tmp_path, image_size=16, channels=3)
    assert ds[0].x.shape == (3, 16, 16) and ds[1].x.shape == (3, 16, 16)


def test_corrupt_file_named_in_error_and_skip(tmp_path, png_folder):
    bad = png_folder / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = ImageDataset(png_folder, image_size=8)
    idx = [e.path for e in ds.entries].index(str(bad))
    with pytest.raises(BadSampleError, match="zz_broken.png: not a readable image"):
        ds[idx]
    ds_skip = ImageDataset(png_folder, image_size=8, on_bad_sample="skip")
    assert isinstance(ds_skip[idx], Skipped) and "zz_broken.png" in ds_skip[idx].source


def test_channel_mismatch_and_nan(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((8, 8, 2), np.float32))
    np.save(tmp_path / "b.npy", np.ones((8, 8, 5), np.float32))
    ds = ImageDataset(tmp_path, image_size=8)
    with pytest.raises(BadSampleError, match="b.npy: has 5 channels, expected 2"):
        ds[1]
    np.save(tmp_path / "b.npy", np.full((8, 8, 2), np.nan, np.float32))
    with pytest.raises(BadSampleError, match="b.npy: contains NaN"):
        ds[1]


def test_missing_source_is_clear(tmp_path):
    with pytest.raises(OmnipatchError, match="no such file or folder"):
        ImageDataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OmnipatchError, match="no files with extensions"):
        ImageDataset(tmp_path / "empty")
    (tmp_path / "m.csv").write_text("file,label\na.png,1\n")
    with pytest.raises(OmnipatchError, match="needs a 'path' column"):
        ImageDataset(tmp_path / "m.csv")


def test_augment_is_seeded_and_changes_images(png_folder):
    ds = ImageDataset(png_folder, image_size=16)
    b = collate([ds[i] for i in range(4)])
    v1 = augment(b, torch.Generator().manual_seed(0))
    v2 = augment(b, torch.Generator().manual_seed(0))
    v3 = augment(b, torch.Generator().manual_seed(1))
    assert torch.equal(v1.x, v2.x) and not torch.equal(v1.x, v3.x)
    assert v1.x.shape == b.x.shape and not torch.allclose(v1.x, b.x)


def test_channel_stats(png_folder):
    mean, std = channel_stats(ImageDataset(png_folder, image_size=16))
    assert len(mean) == 1 and 0.0 < mean[0] < 1.0 and std[0] > 0.0
