"""Shared fixtures: tiny real files written with the field's own libraries."""

from __future__ import annotations

import csv

import numpy as np
import pytest


@pytest.fixture
def png_folder(tmp_path):
    """24 labelled 16x16 grayscale PNGs (two classes: horizontal vs vertical bars) + manifest."""
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        img = (rng.random((16, 16)) * 60).astype(np.uint8)
        if i % 2:
            img[:, 4 + i % 8: 8 + i % 8] = 255
        else:
            img[4 + i % 8: 8 + i % 8, :] = 255
        name = f"img_{i:02d}.png"
        Image.fromarray(img).save(root / name)
        rows.append([name, f"id{i}", "vertical" if i % 2 else "horizontal"])
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id", "label"])
        w.writerows(rows)
    return root
