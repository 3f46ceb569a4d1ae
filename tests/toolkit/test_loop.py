"""The one training loop (``train/engine.py``'s ``train_loop``): what it logs and saves, its
hooks, and that fine-tuning trains through it."""

from __future__ import annotations

import json

import torch

from omnipatch.train.engine import Hooks, Meter, train_loop
from omnipatch.train.strategy import Strategy


class FakeStep:
    """An optimiser step that records the steps it took; its loss is the step number."""

    accum, lr = 1, 0.1

    def __init__(self):
        self.steps: list[int] = []

    def __call__(self, micros, step):
        self.steps.append(step)
        return [{"loss": torch.tensor(float(step))} for _ in micros], None


def feed(n: int):
    return [[(torch.zeros(4, 1), None)] for _ in range(n)]


def run(epochs, hooks=None, start=0, log_every=3, save_every=4):
    step, logged, saved = FakeStep(), [], []
    last = train_loop(step, epochs, Meter(Strategy("single")), start=start, log_every=log_every,
                      log=logged.append, save_every=save_every, save=saved.append, hooks=hooks)
    return last, step.steps, [r["step"] for r in logged], saved, logged


def test_every_item_is_a_step_logged_and_saved_on_schedule_and_at_the_end():
    last, steps, logged, saved, records = run([feed(7)], start=10)
    assert last == 17 and steps == list(range(10, 17))
    assert logged == [12, 15, 17] and saved == [12, 16, 17]  # the last step always, once
    assert records[0]["loss"] == (10 + 11) / 2 and records[-1]["loss"] == 15.5  # means since the last record
    assert records[0]["lr"] == 0.1 and records[0]["samples_per_s"] > 0
    assert run([feed(6)], log_every=3, save_every=6)[2:4] == ([3, 6], [6])  # no second record at the end
    assert run([], start=5)[:4] == (5, [], [], [])  # nothing to do: nothing logged or saved


def test_hooks_see_every_step_and_each_epoch_and_can_stop():
    class Stop(Hooks):
        def __init__(self):
            self.after, self.ends = [], []

        def after_step(self, done, micros, terms):
            self.after.append((done, float(terms[0]["loss"])))

        def end_of_epoch(self, epoch, done):
            self.ends.append((epoch, done))
            return epoch == 3

    hooks = Stop()
    last, steps, *_ = run([feed(2), feed(0), feed(3), feed(2)], hooks=hooks)
    assert last == 5 and steps == [0, 1, 2, 3, 4]
    assert hooks.ends == [(1, 2), (2, 2), (3, 5)]  # an empty epoch still ends; True stops before epoch 4
    assert hooks.after == [(1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0), (5, 4.0)]


def test_finetuning_trains_through_the_loop(tmp_path, monkeypatch):
    from omnipatch.finetune import FinetuneConfig, finetune
    from omnipatch.finetune import run as ft_run
    from tests.toolkit.test_finetune import make_run

    run_dir, data = make_run(tmp_path)
    calls = []
    real = ft_run.train_loop
    monkeypatch.setattr(ft_run, "train_loop", lambda *a, **k: calls.append(k) or real(*a, **k))
    cfg = FinetuneConfig(mode="linear", epochs=30, patience=2, batch_size=8, lr=5e-2, bf16=False, device="cpu")
    res = finetune(run_dir, data / "manifest.csv", tmp_path / "ft", None, cfg, quiet=True)
    assert len(calls) == 1 and isinstance(calls[0]["hooks"], Hooks)
    hist = [json.loads(x) for x in (tmp_path / "ft" / "history.jsonl").read_text().splitlines()]
    steps = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == list(range(1, res["epochs_run"] + 1))
    assert res["epochs_run"] < 30 and res["epochs_run"] == res["best_epoch"] + 2  # stopped early, patience 2
    per_epoch = -(-res["n_train"] // 8)
    assert steps[-1]["step"] == res["epochs_run"] * per_epoch  # the loop's last step, logged
    assert {"lr", "loss", "grad_norm", "samples_per_s"} <= set(steps[-1])
