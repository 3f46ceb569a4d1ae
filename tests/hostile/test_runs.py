"""Runs cannot corrupt each other; stale artefacts are detected; recovery paths; NaN never leaves."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from tests.hostile.conftest import TINY


def _pretrain(cli, data, out, *extra):
    return cli("pretrain", "--modality", "image", "--data", data, "--out", out, "--steps", "2", "--batch-size", "4",
               "--set", "data.options.image_size=16", *TINY, *extra)


@pytest.fixture
def npy_dirs(tmp_path):
    """``ok/``: 4 ordinary float images; ``mixed/``: the same plus one of values near 3e38."""
    rng = np.random.default_rng(0)
    for d in ("ok", "mixed"):
        (tmp_path / d).mkdir()
        for i in range(4):
            np.save(tmp_path / d / f"ok{i}.npy", rng.random((16, 16)).astype(np.float32))
    np.save(tmp_path / "mixed" / "huge.npy", np.full((16, 16), 3e38, np.float32))
    return tmp_path


# -- 4. NaN or Inf never leaves as a result -----------------------------------------------------
def test_extreme_input_names_the_sample_or_is_skipped_and_listed(npy_dirs, cli):
    run, emb = npy_dirs / "run", npy_dirs / "e.parquet"
    assert _pretrain(cli, npy_dirs / "ok", run).code == 0
    cli("embed", "--checkpoint", run, "--data", npy_dirs / "mixed", "--out", emb).one_error_line(
        "non-finite embedding", "huge.npy")
    assert not emb.exists()
    r = cli("embed", "--checkpoint", run, "--data", npy_dirs / "mixed", "--out", emb, "--on-bad-sample", "skip")
    assert r.code == 0 and "wrote 4 embeddings" in r.out, r.err
    rows = [json.loads(x) for x in (npy_dirs / "e.skipped.jsonl").read_text().splitlines()]
    assert [os.path.basename(x["source"]) for x in rows] == ["huge.npy"] and "non-finite" in rows[0]["reason"]
    from omnipatch.api import read_embeddings

    assert np.isfinite(read_embeddings(emb)[1]).all()
    cli("retrieve", "index", "--checkpoint", run, "--modality", "image", "--data", npy_dirs / "mixed",
        "--out", npy_dirs / "idx").one_error_line("non-finite embedding", "huge.npy")


def test_index_with_nan_vectors_is_refused(tmp_path):
    import torch

    from omnipatch.errors import OmnipatchError
    from omnipatch.eval.retrieval import build_index

    with pytest.raises(OmnipatchError, match="non-finite .* b"):
        build_index(torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), ["a", "b"])


# -- 6. one run per directory -------------------------------------------------------------------
def test_second_run_into_a_used_directory_is_refused(png_folder, tmp_path, cli):
    run = tmp_path / "run"
    assert _pretrain(cli, png_folder, run).code == 0
    before = (run / "metrics.jsonl").read_text(), (run / "run_config.json").read_text()
    _pretrain(cli, png_folder, run, "--seed", "3").one_error_line(str(run), "not empty", "--resume", "--overwrite")
    assert ((run / "metrics.jsonl").read_text(), (run / "run_config.json").read_text()) == before
    (run / "skipped.jsonl").write_text('{"step": 0, "source": "old", "reason": "old"}\n')
    (run / "notes.txt").write_text("mine")
    assert _pretrain(cli, png_folder, run, "--overwrite", "--seed", "3").code == 0
    assert not (run / "skipped.jsonl").exists() and (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "run_config.json").read_text())["train"]["seed"] == 3


def test_live_lock_refuses_and_stale_lock_is_taken_over(png_folder, tmp_path, cli):
    run = tmp_path / "run"
    run.mkdir()
    import socket

    (run / ".omnipatch.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    _pretrain(cli, png_folder, run).one_error_line("another run is using this directory", f"pid {os.getppid()}")
    (run / ".omnipatch.lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    assert _pretrain(cli, png_folder, run).code == 0
    assert not (run / ".omnipatch.lock").exists()


# -- 7. stale artefacts -------------------------------------------------------------------------
def test_index_refuses_a_changed_checkpoint(png_folder, tmp_path, cli):
    run, idx = tmp_path / "run", tmp_path / "idx"
    assert _pretrain(cli, png_folder, run).code == 0
    assert cli("retrieve", "index", "--checkpoint", run, "--modality", "image", "--data", png_folder,
               "--out", idx).code == 0
    q = ["retrieve", "query", "--index", idx, "--modality", "image", "--data", png_folder, "--out", tmp_path / "r.csv"]
    assert cli(*q).code == 0
    assert _pretrain(cli, png_folder, run, "--overwrite", "--seed", "5").code == 0  # same folder, other weights
    cli(*q).one_error_line("changed since the index was built", "rebuild the index")
    meta = json.loads((idx / "index.json").read_text())
    del meta["checkpoint_sha256"]
    (idx / "index.json").write_text(json.dumps(meta))
    cli(*q).one_error_line("content hash")
    cli("retrieve", "query", "--index", idx, "--modality", "audio", "--data", png_folder, "--out",
        tmp_path / "r.csv").one_error_line()


@pytest.mark.parametrize("flag, value", [("--data", "OTHER"), ("--modality", "audio"), ("--batch-size", "6"),
                                         ("--objective", "mae")])
def test_resume_refuses_changed_flags(flag, value, png_folder, tmp_path, cli):
    run = tmp_path / "run"
    assert _pretrain(cli, png_folder, run).code == 0
    v = tmp_path if value == "OTHER" else value
    cli("pretrain", "--out", run, "--resume", "--steps", "3", flag, v, "--quiet").one_error_line(
        "--resume continues the run", flag)


def test_resume_accepts_the_same_flags(png_folder, tmp_path, cli):
    run = tmp_path / "run"
    assert _pretrain(cli, png_folder, run).code == 0
    r = cli("pretrain", "--out", run, "--resume", "--steps", "3", "--data", png_folder, "--modality", "image",
            "--batch-size", "4", "--quiet")
    assert r.code == 0, r.err


# -- 8. recovery paths --------------------------------------------------------------------------
def test_torn_metrics_line_and_leftover_temporaries_do_not_block_resume(png_folder, tmp_path, cli):
    run = tmp_path / "run"
    assert _pretrain(cli, png_folder, run).code == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')
    (run / ".checkpoint-abc123").mkdir()
    (run / ".checkpoint-abc123" / "model.safetensors").write_bytes(b"partial")
    r = cli("pretrain", "--out", run, "--resume", "--steps", "4", "--quiet")
    assert r.code == 0, r.err
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4] and not list(run.glob(".checkpoint-*"))


def test_checkpoint_follows_the_umask(png_folder, tmp_path, cli):
    old = os.umask(0o022)
    try:
        assert _pretrain(cli, png_folder, tmp_path / "run").code == 0
    finally:
        os.umask(old)
    ck = tmp_path / "run" / "checkpoint"
    assert stat.S_IMODE(ck.stat().st_mode) == 0o755
    assert stat.S_IMODE((ck / "model.safetensors").stat().st_mode) == 0o644


def test_full_disk_says_no_space(png_folder, tmp_path, cli, monkeypatch):
    import torch

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 0})())
    line = _pretrain(cli, png_folder, tmp_path / "run").one_error_line("no space left on the device")
    assert "inline_container" not in line


def test_file_as_out_and_read_only_out_are_one_line(png_folder, tmp_path, cli):
    (tmp_path / "f").write_text("x")
    _pretrain(cli, png_folder, tmp_path / "f").one_error_line("is a file, not a run directory")
    _pretrain(cli, png_folder, tmp_path / "f" / "sub").one_error_line("cannot create the run directory")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        _pretrain(cli, png_folder, ro / "run").one_error_line("cannot create the run directory")
