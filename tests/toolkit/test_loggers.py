"""``train.loggers``: every logged number and picture of a short run reaches each backend, read
back with the backend's own reader (TensorBoard's event accumulator, MLflow's client, W&B's
offline run file); unknown or missing backends are one line."""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import time

import numpy as np
import pytest

from omnipatch.config import Config, set_key, validate
from omnipatch.errors import OmnipatchError
from omnipatch.train.loggers import check, read_metrics
from omnipatch.train.pretrain import pretrain


def _cfg(src, loggers, steps=3):
    c = Config()
    c.data.source = str(src)
    c.data.options = {"image_size": 16, "patch_size": 4, "channels": 1}
    c.model.preset = "micro"
    c.model.decoder_dim, c.model.decoder_depth = 32, 1
    c.train.steps, c.train.batch_size, c.train.log_every = steps, 8, 1
    c.train.checkpoint_every, c.train.warmup_steps, c.train.monitor_every = 3, 2, 1
    c.train.loggers = loggers
    return c


def _records(run) -> dict[int, dict]:
    return {r["step"]: {k: v for k, v in r.items() if k != "step"} for r in read_metrics(run / "metrics.jsonl")}


def _png_pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_tensorboard_event_file_holds_every_term_and_the_pictures(png_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    pretrain(_cfg(png_folder / "manifest.csv", ["jsonl", "tensorboard"]), run, quiet=True, report=False)
    recs = _records(run)
    assert sorted(recs) == [1, 2, 3]
    ev = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = set(ev.Tags()["scalars"])
    # every loss term, lr, grad norm, throughput and health monitor of metrics.jsonl
    assert {"loss", "mae", "contrastive", "lr", "grad_norm", "samples_per_s", "health/rankme",
            "health/rel_std"} <= tags
    assert tags == set(recs[1])
    for tag in tags:
        got = {e.step: e.value for e in ev.Scalars(tag)}
        assert list(got) == [1, 2, 3], tag
        assert got == pytest.approx({s: r[tag] for s, r in recs.items()}, rel=1e-6), tag
    assert {"reconstruction", "loss_curve"} <= set(ev.Tags()["images"])
    for tag in ("reconstruction", "loss_curve"):
        (img,) = ev.Images(tag)
        assert img.step == 3
        disk = _png_pixels((run / f"{tag}.png").read_bytes())
        assert (img.height, img.width) == disk.shape[:2]
        assert np.array_equal(_png_pixels(img.encoded_image_string), disk)
    assert "config/text_summary" in ev.Tags()["tensors"]  # the run config as text


def test_tensorboard_resume_drops_the_steps_after_the_checkpoint(png_folder, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from omnipatch.train import engine

    run = tmp_path / "run"
    real = engine.step_generator

    def crash_in_step_5(seed, micro, device):
        if micro == 4:
            raise KeyboardInterrupt  # steps 1-4 logged, the checkpoint holds step 3
        return real(seed, micro, device)

    monkeypatch.setattr(engine, "step_generator", crash_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_cfg(png_folder / "manifest.csv", ["tensorboard"], steps=5), run, quiet=True, report=False)
    monkeypatch.setattr(engine, "step_generator", real)
    pretrain(_cfg(png_folder / "manifest.csv", ["tensorboard"], steps=5), run, resume=True, quiet=True, report=False)
    ev = EventAccumulator(str(run / "tensorboard")).Reload()
    loss = ev.Scalars("loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5]  # step 4 once: the crashed run's copy is purged
    assert [e.value for e in loss] == pytest.approx([_records(run)[s]["loss"] for s in range(1, 6)], rel=1e-6)


def test_loggers_go_through_config_validation():
    c = Config()
    set_key(c, "train.loggers", "jsonl,tensorboard")  # --set train.loggers=jsonl,tensorboard
    assert c.train.loggers == ["jsonl", "tensorboard"]
    set_key(c, "train.loggers", '["jsonl"]')
    assert c.train.loggers == ["jsonl"]
    set_key(c, "train.loggers", "jsonl,tensorbord")
    with pytest.raises(OmnipatchError, match=r"train.loggers: unknown logger 'tensorbord'.*did you mean 'tensorboard'"):
        validate(c)
    c.train.loggers = [3]
    with pytest.raises(OmnipatchError, match="train.loggers must be a list of names"):
        validate(c)
    assert Config().train.loggers == ["jsonl"]  # the default


def test_a_backend_whose_package_is_missing_is_one_line(monkeypatch):
    import omnipatch.train.loggers as loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    with pytest.raises(OmnipatchError) as e:
        check(["jsonl", "wandb"])
    assert "'wandb' needs the package(s) wandb" in str(e.value) and "pip install wandb" in str(e.value)
    assert "\n" not in str(e.value)
    assert check(["jsonl"]) == ["jsonl"]


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None or importlib.util.find_spec("sqlalchemy") is None,
                    reason="mlflow (mlflow-skinny + sqlalchemy + alembic, the `track` extra) is not installed")
@pytest.mark.slow  # ~15 s: MLflow creates its SQLite schema (alembic migrations) on 2 cores
def test_mlflow_local_store_holds_every_term_the_config_and_the_pictures(png_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    pretrain(_cfg(png_folder / "manifest.csv", ["mlflow"]), run, quiet=True, report=False)
    recs = _records(run)
    client = MlflowClient(f"sqlite:///{run.resolve() / 'mlflow' / 'mlflow.db'}")
    run_id = (run / "mlflow" / "omnipatch_run_id").read_text()
    info = client.get_run(run_id)
    assert info.info.status == "FINISHED" and info.info.run_name == "run"
    assert set(info.data.metrics) == set(recs[1])
    for key in recs[1]:
        hist = {m.step: m.value for m in client.get_metric_history(run_id, key)}
        assert hist == pytest.approx({s: r[key] for s, r in recs.items()}, rel=1e-6), key
    assert info.data.params["train.lr"] == "0.001" and info.data.params["model.preset"] == "micro"
    pictures = {f.path for f in client.list_artifacts(run_id, "pictures")}
    assert {"pictures/reconstruction.png", "pictures/loss_curve.png"} <= pictures


def _wandb_records(path):
    """The protobuf records of a W&B run file (LevelDB log format: 32 KiB blocks of chunks with
    a 7-byte header crc32c/length/type, after a 7-byte ``:W&B`` file header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (the `track` extra)")
@pytest.mark.slow  # ~30 s on 2 loaded cores: W&B starts its service process, then waits for it to write the run
def test_wandb_offline_run_holds_every_term_and_the_pictures(png_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    pretrain(_cfg(png_folder / "manifest.csv", ["wandb"]), run, quiet=True, report=False)
    recs = _records(run)
    (run_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    deadline = time.time() + 60  # W&B's service process closes the file a moment after finish()
    while time.time() < deadline and not any(r.WhichOneof("record_type") == "exit" for r in _wandb_records(run_file)):
        time.sleep(0.5)
    history, config = {}, {}
    for r in _wandb_records(run_file):
        if r.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            history.setdefault(items.pop("_step"), {}).update(items)
        elif r.WhichOneof("record_type") == "run":  # the run record carries the config
            config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
    for step, rec in recs.items():
        numbers = {k for k in history[step] if not k.startswith(("_", "reconstruction/", "loss_curve/"))}
        assert numbers == set(rec), step
        assert {k: history[step][k] for k in rec} == pytest.approx(rec, rel=1e-6), step
    assert history[3]["reconstruction/_type"] == history[3]["loss_curve/_type"] == "image-file"
    assert config["train"]["lr"] == 0.001 and config["train"]["loggers"] == ["wandb"]
    assert len(list((run / "wandb").glob("offline-run-*/files/media/images/reconstruction_3_*.png"))) == 1


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (the `track` extra)")
def test_wandb_without_a_login_says_what_to_do(tmp_path, monkeypatch):
    import wandb

    from omnipatch.train.loggers import WandbLogger

    wandb.teardown()  # W&B keeps its settings (an earlier test's WANDB_MODE) in a process-wide singleton
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no saved key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".config"))
    with pytest.raises(OmnipatchError) as e:
        WandbLogger(tmp_path / "run", {}, 0)
    msg = str(e.value)
    assert msg.startswith("train.loggers: wandb could not start a run (") and "\n" not in msg
    assert "wandb login" in msg and f"WANDB_MODE=offline to log to {tmp_path / 'run' / 'wandb'}" in msg
