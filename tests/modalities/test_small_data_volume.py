"""A stranger's small volume data set: 12 NIfTI volumes of 20 x 18 x 16 voxels through pretrain
/ embed / eval with no data options, the scan's fits and the raw-feature baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")
pytest.importorskip("monai")

from omnipatch.batch import Sample  # noqa: E402
from omnipatch.modalities.volume import SPEC  # noqa: E402
from omnipatch.train.plan import scan  # noqa: E402
from tests.modalities.cli_flow import assert_model_option_refused, embed_and_eval, pretrain_defaults  # noqa: E402

pytestmark = pytest.mark.integration


def save(path, data, affine=None, zooms=None):
    img = nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4) if affine is None else affine)
    if zooms:
        img.header.set_zooms(zooms)
    nib.save(img, str(path))
    return path


def blob(shape, bright: bool, seed: int) -> np.ndarray:
    """Noise with a centred cube that is bright (class 1) or dark (class 0)."""
    a = np.random.default_rng(seed).random(shape).astype(np.float32) * 0.5 + 0.25
    c = [s // 2 for s in shape]
    a[c[0] - 4:c[0] + 4, c[1] - 4:c[1] + 4, c[2] - 4:c[2] + 4] = 1.0 if bright else 0.05
    return a


@pytest.fixture(scope="module")
def small_volumes(tmp_path_factory):
    d = tmp_path_factory.mktemp("vols")
    for i in range(12):
        save(d / f"s{i:02d}.nii.gz", blob((20, 18, 16), i % 2 == 1, i))
    return d


def test_scan_fits_roi_to_the_smallest_volume(small_volumes):
    plan = scan(SPEC, small_volumes, {})
    assert plan.facts["volumes"] == 12 and plan.facts["smallest RAS shape"] == [20, 18, 16]
    assert plan.facts["voxel sizes (mm)"] == [(1.0, 1.0, 1.0)] and plan.facts["channels"] == [1]
    lo, hi = plan.facts["intensity range (a few files)"]
    assert 0.0 < lo < 0.3 and hi == pytest.approx(1.0)
    assert plan.fits["roi_size"]["value"] == [16, 16, 16] and "20x18x16" in plan.fits["roi_size"]["reason"]
    assert plan.fits["channels"]["value"] == 1
    assert "roi_size" not in scan(SPEC, small_volumes, {"roi_size": [32, 32, 32]}).fits


def test_scan_uses_ras_order_spacing_and_keeps_one_patch(tmp_path):
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)  # stored (Y, X, Z)
    save(tmp_path / "a.nii", np.ones((40, 12, 36)), affine=swap)
    ras = scan(SPEC, tmp_path, {}).fits["roi_size"]["value"]
    assert ras == [8, 32, 32]  # RAS (12, 40, 36): X rounded down to one 8-voxel patch
    half = scan(SPEC, tmp_path, {"spacing": 2.0}).fits["roi_size"]["value"]
    assert half == [8, 16, 16]  # 2 mm: (6, 20, 18) voxels, at least one patch
    big = tmp_path / "big"
    big.mkdir()
    save(big / "b.nii", np.ones((40, 40, 40)))
    assert "roi_size" not in scan(SPEC, big, {}).fits


def test_raw_features_are_a_histogram_plus_mean_and_std():
    x = torch.zeros(1, 4, 4, 4)
    x[0, :2] = 1.0  # half the voxels 0, half 1
    f = SPEC.raw_features(Sample(x=x, id="a"))
    assert f.shape == (34,) and f[0] == pytest.approx(0.5) and f[31] == pytest.approx(0.5)
    assert f[1:31].sum() == 0 and f[32] == pytest.approx(0.5) and f[33] == pytest.approx(0.5)
    assert SPEC.raw_features(Sample(x=torch.rand(2, 4, 4, 4), id="b")).shape == (68,)
    assert SPEC.raw_name == "32-bin intensity histogram"


def test_cli_twelve_small_volumes_pretrain_embed_eval(small_volumes, tmp_path, capsys):
    run = tmp_path / "run"
    fits = pretrain_defaults("volume", small_volumes, run)
    assert fits["roi_size"]["value"] == [16, 16, 16] and fits["channels"]["value"] == 1
    assert fits["train.batch_size"]["value"] == 12
    ids = embed_and_eval(run, small_volumes, tmp_path, lambda i: "bright" if int(i[-9:-7]) % 2 else "dark")
    assert len(ids) == 12
    assert_model_option_refused(run, small_volumes, tmp_path, capsys, "channels", 2)


def test_one_large_volume_is_cut_into_crops_for_pretraining_only(tmp_path, capsys):
    """A single volume (the MNI template case) fits ``crops_per_volume`` to fill a batch;
    embedding it later reads one crop, not 128."""
    from omnipatch.cli import main

    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((40, 40, 40)).astype(np.float32), np.eye(4)), tmp_path / "one.nii.gz")
    run = tmp_path / "run"
    assert main(["pretrain", "--modality", "volume", "--data", str(tmp_path / "one.nii.gz"), "--out", str(run),
                 "--steps", "1", "--preset", "micro", "--quiet"]) == 0, capsys.readouterr().err
    plan = json.loads((run / "plan.json").read_text())
    assert plan["fits"]["crops_per_volume"]["value"] == 128 and plan["facts"]["samples"] == 128
    assert main(["embed", "--checkpoint", str(run), "--data", str(tmp_path / "one.nii.gz"),
                 "--out", str(tmp_path / "e.parquet")]) == 0
    assert "wrote 1 embeddings" in capsys.readouterr().out
