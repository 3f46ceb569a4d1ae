"""Shared fixtures: tiny real files written with the field's own libraries."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _machine_profile_cache(tmp_path_factory):
    """The precision probe caches into a session folder, not the user's ~/.cache (once per
    session; subprocesses inherit the variable and share it)."""
    old = os.environ.get("OMNIPATCH_CACHE_DIR")
    os.environ["OMNIPATCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("omnipatch_cache"))
    yield
    if old is None:
        os.environ.pop("OMNIPATCH_CACHE_DIR", None)
    else:
        os.environ["OMNIPATCH_CACHE_DIR"] = old


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
