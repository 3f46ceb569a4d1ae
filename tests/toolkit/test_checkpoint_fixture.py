"""A run written in an earlier checkpoint format (tests/fixtures/run_2026_12_image) still
loads, embeds to the vectors it gave when it was written, and works through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import omnipatch
from omnipatch.api import read_embeddings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_2026_12_image"


def test_old_checkpoint_embeds_to_the_same_vectors():
    run = omnipatch.load(FIXTURE / "run", device="cpu")
    assert run.modality == "image"
    ids, emb = run.embed(FIXTURE / "data", bf16=False)
    assert [Path(i).name for i in ids] == [f"d{i}.png" for i in range(8)]
    expected = np.load(FIXTURE / "expected_embeddings.npy")
    assert emb.shape == expected.shape == (8, 128)
    np.testing.assert_allclose(emb.numpy(), expected, atol=1e-4, rtol=1e-4)


def test_old_checkpoint_config_keeps_its_recorded_options():
    cfg = json.loads((FIXTURE / "run" / "checkpoint" / "config.json").read_text())
    run = omnipatch.load(FIXTURE / "run", device="cpu")
    # the fitted image size recorded in the run is what the reader uses on new data
    assert cfg["run"]["data"]["options"]["image_size"] == 16
    ds = run.open(FIXTURE / "data")
    assert tuple(ds[0].x.shape[-2:]) == (16, 16)


def test_old_checkpoint_through_the_cli(tmp_path):
    out = tmp_path / "emb.parquet"
    r = subprocess.run([sys.executable, "-m", "omnipatch", "embed", "--checkpoint", str(FIXTURE / "run"),
                        "--data", str(FIXTURE / "data"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ids, emb = read_embeddings(out)
    assert len(ids) == 8 and emb.shape == (8, 128)
    # the CLI embeds in the run's precision policy; bf16 may round, so compare loosely
    expected = np.load(FIXTURE / "expected_embeddings.npy")
    cos = (emb * expected).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() > 0.99
