"""Through the command line, as a user runs it: ``torchrun --nproc-per-node 2 -m omnipatch
pretrain`` with the default objective (MAE + a batch-level joint-embedding term, mae+dhel at
the time of writing) logs the same losses and gradient norms as one process with
``train.grad_accum=2``, within 1e-5: the batch-level term sees the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _args(manifest, out, *extra):
    opts = json.dumps({"image_size": 16, "patch_size": 4, "channels": 1})
    return ["-m", "omnipatch", "pretrain", "--modality", "image", "--data", str(manifest), "--out", str(out),
            "--preset", "micro", "--steps", "3", "--batch-size", "4", "--quiet",
            "--set", f"data.options={opts}", "--set", "model.decoder_dim=32", "--set", "train.precision=fp32",
            "--set", "train.log_every=1", *extra]


def _run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process_accumulating(png_folder, tmp_path):
    manifest = tmp_path / "unlabelled.csv"  # no label column: no report at the end, only the training
    manifest.write_text("path,id\n" + "".join(f"{png_folder / f'img_{i:02d}.png'},id{i}\n" for i in range(24)))
    _run([sys.executable, *_args(manifest, tmp_path / "single", "--set", "train.grad_accum=2")], tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
          "--master-port", str(port), *_args(manifest, tmp_path / "ddp")], tmp_path)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert json.loads((ddp / "run_config.json").read_text())["train"]["grad_accum"] == 1
    a, b = _records(single), _records(ddp)
    assert len(a) == len(b) == 3
    objectives = json.loads((ddp / "run_config.json").read_text())["objectives"]
    assert "mae" in objectives and len(objectives) > 1, objectives  # a batch-level term is in the default
    terms = set(a[0]) - {"step", "lr", "samples_per_s"}
    assert set(b[0]) - {"step", "lr", "samples_per_s"} == terms and len(terms) >= 4, terms  # + loss, grad_norm
    for key in sorted(terms):
        assert max(abs(x[key] - y[key]) for x, y in zip(a, b)) < 1e-5, (key, a, b)
