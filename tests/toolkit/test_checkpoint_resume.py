"""Checkpoints are atomic and ``--resume`` reproduces an uninterrupted run exactly."""

import json

import pytest
import torch

from omnipatch.config import Config
from omnipatch.errors import OmnipatchError
from omnipatch.train import checkpoint as ckpt
from omnipatch.train.pretrain import pretrain


def _cfg(src, steps):
    c = Config()
    c.data.source = str(src)
    c.data.options = {"image_size": 16, "patch_size": 4, "channels": 1}
    c.model.preset = "micro"
    c.model.decoder_dim, c.model.decoder_depth = 32, 1
    c.train.steps, c.train.batch_size, c.train.log_every = steps, 8, 1
    c.train.checkpoint_every, c.train.warmup_steps = 3, 2
    return c


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_exactly(png_folder, tmp_path, monkeypatch):
    from omnipatch.train import engine

    full = tmp_path / "full"
    pretrain(_cfg(png_folder / "manifest.csv", 6), full, quiet=True)
    part = tmp_path / "part"
    real = engine.step_generator

    def crash_at_4(seed, micro, device):
        if micro == 4:
            raise KeyboardInterrupt  # a crash in step 5, after the step-3 checkpoint
        return real(seed, micro, device)

    monkeypatch.setattr(engine, "step_generator", crash_at_4)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_cfg(png_folder / "manifest.csv", 6), part, quiet=True)
    monkeypatch.setattr(engine, "step_generator", real)
    assert ckpt.load_train_state(part)["step"] == 3
    pretrain(_cfg(png_folder / "manifest.csv", 6), part, resume=True, quiet=True)
    a, b = _losses(full), _losses(part)
    assert len(a) == len(b) == 6
    assert a == b, f"resumed losses differ: {a} vs {b}"
    assert ckpt.load_train_state(part)["step"] == 6


def test_resume_can_extend_the_schedule(png_folder, tmp_path):
    run = tmp_path / "run"
    pretrain(_cfg(png_folder / "manifest.csv", 3), run, quiet=True)
    pretrain(_cfg(png_folder / "manifest.csv", 5), run, resume=True, quiet=True)
    assert len(_losses(run)) == 5 and ckpt.load_train_state(run)["step"] == 5


def test_checkpoint_atomic_and_fallback(tmp_path):
    m = torch.nn.Linear(3, 2)
    ckpt.save(tmp_path, m, {"a": 1})
    ckpt.save(tmp_path, m, {"a": 2})
    assert ckpt.load_config(tmp_path) == {"a": 2}
    assert not list(tmp_path.glob(".checkpoint-*")), "no temporary folders left behind"
    # a crash between the two renames leaves only checkpoint.old: still loadable
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    assert ckpt.load_config(tmp_path) == {"a": 2}
    m2 = torch.nn.Linear(3, 2)
    ckpt.load_weights(tmp_path, m2)
    assert torch.equal(m.weight, m2.weight)


def test_save_failure_keeps_previous_checkpoint(tmp_path, monkeypatch):
    m = torch.nn.Linear(3, 2)
    ckpt.save(tmp_path, m, {"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(OmnipatchError, match="cannot write the checkpoint \\(disk full\\)"):
        ckpt.save(tmp_path, m, {"v": 2})
    assert ckpt.load_config(tmp_path) == {"v": 1}
    assert not list(tmp_path.glob(".checkpoint-*"))


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(OmnipatchError, match="no checkpoint"):
        ckpt.load_config(tmp_path / "nope")


def test_non_finite_loss_raises(png_folder, tmp_path):
    c = _cfg(png_folder / "manifest.csv", 3)
    c.train.lr = 1e30
    c.train.grad_clip = 0.0
    with pytest.raises(OmnipatchError, match="non-finite loss at step"):
        pretrain(c, tmp_path / "run", quiet=True)


def test_health_monitor_logged_and_collapse_warned(png_folder, tmp_path, monkeypatch, capsys):
    from omnipatch.train import monitors

    c = _cfg(png_folder / "manifest.csv", 2)
    c.train.monitor_every = 1
    pretrain(c, tmp_path / "ok", quiet=True)
    rec = json.loads((tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["health/rankme"] > 1.5 and "health/alignment" in rec
    assert "collapsed" not in capsys.readouterr().err

    def constant_monitor(model, modality, augment, strength=1.0):  # every embedding the same point
        return lambda batch, g: monitors.health(torch.ones(len(batch), 8), torch.ones(len(batch), 8))

    monkeypatch.setattr(monitors, "single_modality_monitor", constant_monitor)
    pretrain(c, tmp_path / "collapsed", quiet=True)
    assert "embeddings look collapsed" in capsys.readouterr().err
