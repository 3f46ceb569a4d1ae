"""DDP / FSDP with gloo on CPU, 2 processes: equality with one process, checkpoints, resume."""

import json
import os
import socket

import pytest
import torch.multiprocessing as mp

from omnipatch.config import Config
from omnipatch.train import checkpoint as ckpt
from omnipatch.train.pretrain import pretrain

pytestmark = pytest.mark.integration


def _cfg(src, steps, accum=1, strategy="auto"):
    c = Config()
    c.data.source = str(src)
    c.data.options = {"image_size": 16, "patch_size": 4, "channels": 1}
    c.model.preset = "micro"
    c.model.decoder_dim, c.model.decoder_depth = 32, 1
    c.objectives = {"mae": {"weight": 1.0}}
    c.train.steps, c.train.batch_size, c.train.grad_accum = steps, 4, accum
    c.train.log_every, c.train.checkpoint_every, c.train.warmup_steps = 1, 2, 1
    c.train.precision = "fp32"  # exact float32 comparison
    c.train.strategy = strategy
    return c


def _worker(rank, world, port, cfg_dict, out, resume):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch

    torch.set_num_threads(1)
    pretrain(Config.from_dict(cfg_dict), out, resume=resume, quiet=True)
    import torch.distributed as dist

    dist.destroy_process_group()


def _spawn(cfg, out, world=2, resume=False):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(world, port, cfg.to_dict(), str(out), resume), nprocs=world,
                       start_method="spawn", join=True)


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_ddp_matches_single_process_same_global_batch(png_folder, tmp_path):
    single = tmp_path / "single"
    pretrain(_cfg(png_folder / "manifest.csv", 4, accum=2, strategy="single"), single, quiet=True)
    ddp = tmp_path / "ddp"
    _spawn(_cfg(png_folder / "manifest.csv", 4, accum=1, strategy="ddp"), ddp)
    a, b = _losses(single), _losses(ddp)
    assert len(a) == len(b) == 4
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)


def test_fsdp_trains_checkpoints_and_resumes_on_one_rank(png_folder, tmp_path):
    run = tmp_path / "fsdp"
    _spawn(_cfg(png_folder / "manifest.csv", 2, strategy="fsdp"), run)
    assert ckpt.load_train_state(run)["step"] == 2 and ckpt.load_train_state(run)["world"] == 2
    before = _losses(run)
    assert len(before) == 2 and all(x == x for x in before)
    # resume the 2-rank FSDP run on a single process, for two more steps
    pretrain(_cfg(png_folder / "manifest.csv", 4, strategy="single"), run, resume=True, quiet=True)
    after = _losses(run)
    assert after[:2] == before and len(after) == 4
    assert ckpt.load_train_state(run)["step"] == 4 and ckpt.load_train_state(run)["world"] == 1
