"""Thumbnails per modality and the retrieval results picture."""

import numpy as np
import pytest
import torch

from omnipatch.batch import Sample
from omnipatch.modality import MODALITIES, load_builtin
from omnipatch.plots import save_retrieval, thumbnail

load_builtin()


def test_default_thumbnail_slices_and_channels():
    vol = torch.arange(2 * 5 * 4 * 3, dtype=torch.float32).reshape(2, 5, 4, 3)  # (C, D, H, W)
    np.testing.assert_array_equal(thumbnail(Sample(vol, "v")), vol[0, 2].numpy())  # channel 0, middle slice
    rgb = torch.rand(4, 6, 7)
    assert thumbnail(Sample(rgb, "i")).shape == (6, 7, 3)


def test_audio_thumbnail_is_spectrogram_frequency_up():
    x = torch.zeros(50, 1, 32)
    x[:, 0, 0] = 1.0  # energy in the lowest mel band
    pic = thumbnail(Sample(x, "a"), MODALITIES.get("audio"))
    assert pic.shape == (32, 50) and (pic[-1] == 1).all() and pic[:-1].sum() == 0


def test_pointcloud_thumbnail_counts_points_per_pixel():
    pts = torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.5]])
    pic = thumbnail(Sample(pts, "p"), MODALITIES.get("pointcloud"))
    assert pic.shape == (64, 64) and pic.sum() == 3
    assert pic[63, 0] == 1 and pic[0, 63] == 2  # y up: (-1,-1) bottom left, (1,1) top right twice


def test_tabular_thumbnail_blanks_missing_cells():
    x, miss = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([False, False, True])
    pic = thumbnail(Sample(x, "r", x_mask=miss), MODALITIES.get("tabular"))
    assert pic.shape == (1, 3) and np.isnan(pic[0, 2]) and pic[0, 1] == 2


def test_save_retrieval_grid(tmp_path):
    from PIL import Image

    q = np.random.rand(8, 8)
    rows = [(q, "query 0", [(np.random.rand(8, 8), "0.9", True), (np.random.rand(8, 8, 3), "0.5", False)]),
            (q, "query 1", [(np.random.rand(8, 8), "0.7", None)])]  # a shorter row leaves blanks
    out = save_retrieval(rows, tmp_path / "r.png", "title")
    w, h = Image.open(out).size
    assert (w, h) == (pytest.approx(450, abs=2), pytest.approx(320, abs=2))  # 3 columns x 2 rows at 100 dpi
