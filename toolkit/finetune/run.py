"""Fine-tuning a pretrained run on labelled data: the library behind ``omnipatch finetune``.

Tasks (a head on the pretrained adapter + encoder):

- ``classification``: a linear head on the pooled tokens (``OmniModel.embed``), softmax
  cross-entropy; with ``multi_label`` several labels per sample (``"a;b"`` in the label
  column), sigmoid + binary cross-entropy.
- ``regression``: a linear head on the pooled tokens, MSE on standardised targets.
- ``segmentation``: a dense per-patch head on every encoder token (grid modalities: images,
  volumes, ...) that predicts ``prod(patch_size)`` pixels x K classes per token, reassembled
  into ``(B, K, *S)`` logits; the label of a sample is the path of a class map (PNG / TIFF /
  ``.npy`` / NIfTI) resized to the input with nearest-neighbour interpolation.

Modes: ``linear`` (adapter and encoder frozen; features are computed once and the head
trains on them), ``partial`` (the last ``partial_blocks`` blocks and the final norm train),
``full``. Learning rates decay layer-wise (BEiT, Bao et al. 2022; MAE fine-tuning): block
``i`` of ``depth`` trains at ``lr * layer_decay ** (depth - i)``, the adapter at
``lr * layer_decay ** (depth + 1)``, the head and final norm at ``lr``.

A stratified validation split (``val_fraction``) picks the best epoch (primary metric:
accuracy, AUROC for multi-label, RMSE for regression, Dice for segmentation; ties go to the
lower validation loss) and stops after ``patience`` epochs without improvement. Training runs
through pretraining's loop (:func:`omnipatch.train.engine.train_loop`), the epochs and their
validation plugged in as its hooks (:class:`_Epochs`). ``FT_DIR`` receives ``checkpoint/``
(the best weights, atomic, via :func:`omnipatch.train.checkpoint.save`), ``metrics.json``,
``history.jsonl`` (one record per epoch) and ``metrics.jsonl`` (the loop's per-step records).

Inputs with another channel count than pretraining are adapted with the rule in
:mod:`omnipatch.inflate`. Labels come from a CSV (``id,label``) matched to the dataset's
sample ids (exactly, else by the id before ``#``, the file name, or its stem), or from the
manifest's ``label`` column.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.errors import OmnipatchError
from omnipatch.finetune.labels import (
    LabelledData,
    Labels,
    build_labels,
    collate_labelled,
    list_skipped,
    read_labels,
    sample_ids,
)
from omnipatch.heads.task import build_head
from omnipatch.runspec import RunSpec
from omnipatch.train import checkpoint as ckpt
from omnipatch.train.engine import Hooks, Meter, OptimStep, StepModule, make_optimizer, resolve_device, train_loop
from omnipatch.train.loggers import open_loggers
from omnipatch.train.progress import Progress
from omnipatch.train.strategy import Strategy

TASKS = ("classification", "regression", "segmentation")
MODES = ("linear", "partial", "full")


@dataclass
class FinetuneConfig:
    """Fine-tuning recipe; defaults follow MAE's fine-tuning protocol scaled to small data."""

    task: str = "classification"
    mode: str = "full"
    multi_label: bool = False  # classification with "a;b" label lists
    partial_blocks: int = 2  # mode "partial": how many of the last blocks train
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3  # head / top-layer AdamW rate; lower layers get layer_decay powers of it
    layer_decay: float = 0.75  # BEiT / MAE fine-tuning use 0.65-0.75
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1  # of all steps, then cosine to 1 % of lr
    val_fraction: float = 0.2  # 0 = no validation: train every epoch, keep the last
    patience: int = 10  # epochs without validation improvement before stopping
    augment_strength: float = 0.0  # > 0: the modality's view augmentation on training batches
    bf16: bool = False  # fp32: small labelled sets, exact metrics (bf16 autocast measured slower on the CPU)
    seed: int = 0
    device: str = "auto"
    match_ids: str = "exact"  # exact | name | stem: how sample ids meet label ids (fallbacks are explicit)

    def check(self) -> None:
        if self.task not in TASKS:
            raise OmnipatchError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.mode not in MODES:
            raise OmnipatchError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.multi_label and self.task != "classification":
            raise OmnipatchError("multi_label needs task classification")
        if not 0.0 <= self.val_fraction < 1.0:
            raise OmnipatchError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        from omnipatch.config import check_device, check_range

        for key, kind, lo, lo_open in (("epochs", "int", 1, False), ("batch_size", "int", 1, False),
                                       ("lr", "float", 0, True), ("layer_decay", "float", 0, True),
                                       ("weight_decay", "float", 0, False), ("patience", "int", 1, False),
                                       ("partial_blocks", "int", 1, False), ("augment_strength", "float", 0, False)):
            check_range(f"finetune.{key}", getattr(self, key), kind, lo, None, lo_open)
        check_device(self.device, "--device")
        from omnipatch.finetune.labels import MATCHES

        if self.match_ids not in MATCHES:
            raise OmnipatchError(f"match_ids must be one of {', '.join(MATCHES)}, got {self.match_ids!r}")
        if self.task == "segmentation" and self.augment_strength > 0:
            raise OmnipatchError("augment_strength must be 0 for segmentation (views would move the pixels "
                                 "away from their class map)")


class FinetuneModel(nn.Module):
    """The pretrained adapter (one modality) + encoder + a task head.

    Parameter names are the pretraining checkpoint's (``adapters.<m>.*``, ``encoder.*``)
    plus ``head.*``, so pretrained weights load by name and exports keep them.
    """

    def __init__(self, adapters: nn.ModuleDict, encoder: nn.Module, head: nn.Module, modality: str):
        super().__init__()
        self.adapters, self.encoder, self.head, self.modality = adapters, encoder, head, modality

    def features(self, batch) -> tuple[Tensor, Tensor, tuple[int, ...] | None]:
        """``(hidden (B, L, D), pooled (B, D), grid)`` without masking."""
        from omnipatch.encoder import pool

        t = self.adapters[self.modality].tokenize(batch)
        hidden = self.encoder(t.tokens, t.padding_mask)
        return hidden, pool(hidden, None if t.padding_mask is None else ~t.padding_mask), t.grid

    def forward(self, batch) -> Tensor:
        return self.head(*self.features(batch))


# -- backbone ---------------------------------------------------------------------------------------
def load_backbone(run_dir, dataset, modality: str | None = None, random_init: bool = False, seed: int = 0,
                  options: dict | None = None, quiet: bool = False) -> tuple[nn.ModuleDict, nn.Module, dict]:
    """The run's adapter and encoder with its weights (strict: no key left out), adapted to
    the channel count of ``dataset`` when it differs (:mod:`omnipatch.inflate`).

    Returns:
        ``(adapters, encoder, model_cfg)``; ``model_cfg`` reflects any adaptation.
    """
    from safetensors.torch import load_file

    from omnipatch.inflate import adapt_state_dict, channels_kwarg
    from omnipatch.modality import MODALITIES
    from omnipatch.model import OmniModel

    cfg = ckpt.load_config(run_dir)
    if "finetune" in cfg:
        raise OmnipatchError(f"{run_dir} is a fine-tuned checkpoint; fine-tune from the pretraining run")
    m = modality or RunSpec.from_checkpoint(cfg).modality
    model_cfg = cfg["model"]
    if m not in model_cfg["adapters"]:
        raise OmnipatchError(f"{run_dir}: no adapter for modality {m!r} (has {list(model_cfg['adapters'])})")
    path = ckpt.find(run_dir) / "model.safetensors"
    try:
        state = load_file(str(path))
    except Exception as e:
        raise OmnipatchError(f"{path}: cannot read weights ({e})") from None
    kw = model_cfg["adapters"][m]["kwargs"]
    ck = channels_kwarg(model_cfg["adapters"][m]["name"])
    x = _first_sample(dataset).x
    if ck and "patch_size" in kw and x.dim() == len(kw["patch_size"]) + 1 and x.shape[0] != kw[ck]:
        spec = MODALITIES.get(m)
        new = spec.adapter_kwargs(dataset, {**spec.options, **(options or {})})
        state, model_cfg = adapt_state_dict(state, model_cfg, m, int(x.shape[0]), new.get("mean"), new.get("std"),
                                            new.get("patch_size"))
        if not quiet:
            print(f"adapted the input projection from {kw[ck]} to {x.shape[0]} channels "
                  "(omnipatch.inflate rule)", file=sys.stderr)
    torch.manual_seed(seed)
    model = OmniModel.from_config(model_cfg)
    if not random_init:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise OmnipatchError(f"{path}: weights do not match the model (missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]})")
    return nn.ModuleDict({m: model.adapters[m]}), model.encoder_for(m), model_cfg


def _first_sample(dataset):
    from omnipatch.batch import Sample

    for i in range(min(len(dataset), 64)):
        s = dataset[i]
        if isinstance(s, Sample):
            return s
    raise OmnipatchError("none of the first samples of the data could be read")


def set_trainable(model: FinetuneModel, mode: str, partial_blocks: int) -> None:
    """Freeze by mode: ``linear`` head only; ``partial`` + last blocks and final norm; ``full`` all."""
    depth = len(model.encoder.blocks)
    if mode == "partial" and not 1 <= partial_blocks <= depth:
        raise OmnipatchError(f"partial_blocks must be between 1 and the encoder depth {depth}, got {partial_blocks}")
    for name, p in model.named_parameters():
        if name.startswith("head."):
            p.requires_grad_(True)
        elif mode == "full":
            p.requires_grad_(True)
        elif mode == "partial":
            block = _layer_id(name, depth) - 1
            p.requires_grad_(block >= depth - partial_blocks)
        else:
            p.requires_grad_(False)


def _layer_id(name: str, depth: int) -> int:
    """0 = adapter, i + 1 = encoder block i, depth + 1 = final norm and head."""
    if name.startswith("adapters."):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def layer_decay_groups(model: FinetuneModel, lr: float, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups: rate ``lr * layer_decay ** (depth + 1 - layer_id)``, no decay on
    biases / norms / embeddings (ndim < 2). Frozen parameters are left out."""
    depth = len(model.encoder.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid, decay = _layer_id(name, depth), p.ndim >= 2
        g = groups.setdefault((lid, decay), {"params": [], "lr": lr * layer_decay ** (depth + 1 - lid),
                                             "weight_decay": weight_decay if decay else 0.0, "layer": lid})
        g["params"].append(p)
    return list(groups.values())


# -- the loop -----------------------------------------------------------------------------------
def _loss(task: str, out: Tensor, y: Tensor) -> Tensor:
    out = out.float()
    if task == "multi":
        return F.binary_cross_entropy_with_logits(out, y.float())
    if task == "value":
        return F.mse_loss(out.squeeze(-1), y.float())
    return F.cross_entropy(out, y.long())


def _score(labels: Labels, metrics: dict) -> float:
    """Primary validation metric, higher is better."""
    key = {"class": "accuracy", "multi": "auroc", "map": "dice"}.get(labels.kind)
    v = -metrics["rmse"] if key is None else metrics[key]
    return -math.inf if v != v else v


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


class _Runner:
    """Forward passes over labelled data: through the whole model, or (``linear`` mode)
    through the head on features computed once."""

    def __init__(self, model: FinetuneModel, data: LabelledData, cfg: FinetuneConfig, device, augment=None):
        from omnipatch.train.precision import Precision

        self.model, self.data, self.cfg, self.device, self.augment = model, data, cfg, device, augment
        name = "bf16" if cfg.bf16 else "fp32"
        self.precision = Precision(name, name, device.type, "finetune.bf16")
        self.autocast = self.precision.autocast()
        self.cache = None
        if cfg.mode == "linear":
            self.cache = self._features()

    @torch.no_grad()
    def _features(self) -> dict:
        self.model.eval()
        hid, pooled, ys, grid, keep = [], [], [], None, []
        for idx in _batches(len(self.data), 256, None):
            batch, y, ok = collate_labelled([self.data[int(i)] for i in idx])
            if batch is None:
                continue
            with self.autocast:
                h, p, grid = self.model.features(batch.to(self.device))
            if self.cfg.task == "segmentation":
                hid.append(h.float().cpu())
            pooled.append(p.float().cpu())
            ys.append(y)
            keep += [int(idx[j]) for j in ok]
        pos = {k: i for i, k in enumerate(keep)}
        return {"hidden": torch.cat(hid) if hid else None, "pooled": torch.cat(pooled), "y": torch.cat(ys),
                "grid": grid, "pos": pos}

    def items(self, rows: list[int], train: bool, generator=None):
        """Yields ``(kind, inputs, targets)`` batches over ``rows`` (indices into the labelled
        data): ``("cache", positions, y)`` in ``linear`` mode, else ``("batch", Batch, y)``."""
        for sel in _batches(len(rows), self.cfg.batch_size, generator if train else None):
            chosen = [rows[int(i)] for i in sel]
            if self.cache is not None:
                at = [self.cache["pos"][r] for r in chosen if r in self.cache["pos"]]
                if at:
                    at_t = torch.tensor(at)
                    yield "cache", at_t, self.cache["y"][at_t]
                continue
            batch, y, _ = collate_labelled([self.data[r] for r in chosen])
            if batch is not None:
                yield "batch", batch, y

    def forward(self, item: tuple, generator=None) -> tuple[Tensor, Tensor]:
        """``(outputs, targets)`` of one of :meth:`items`; a ``generator`` (training) draws the
        view augmentation, when there is one."""
        kind, x, y = item
        if kind == "cache":
            c = self.cache
            hidden = None if c["hidden"] is None else c["hidden"][x].to(self.device)
            with self.autocast:
                out = self.model.head(hidden, c["pooled"][x].to(self.device), c["grid"])
            return out, y.to(self.device)
        batch = x.to(self.device)
        if generator is not None and self.augment is not None:
            batch = self.augment(batch, generator, self.cfg.augment_strength)
        with self.autocast:
            out = self.model(batch)
        return out, y.to(self.device)

    def run(self, rows: list[int], train: bool, generator=None):
        """Yields ``(outputs, targets)`` over ``rows`` (indices into the labelled data)."""
        for item in self.items(rows, train, generator):
            yield self.forward(item, generator if train else None)

    @torch.no_grad()
    def evaluate(self, rows: list[int]) -> tuple[float, dict]:
        self.model.eval()
        outs, ys = [], []
        for out, y in self.run(rows, train=False):
            outs.append(out.float().cpu())
            ys.append(y.cpu())
        if not outs:
            raise OmnipatchError("no readable labelled sample to evaluate")
        out, y = torch.cat(outs), torch.cat(ys)
        return float(_loss(self.data.labels.kind, out, y)), self.data.labels.metrics(out, y)


def _fit(model: FinetuneModel, runner: _Runner, lab: Labels, opt, sched, train_rows: list[int], val_rows: list[int],
         cfg: FinetuneConfig, out: Path, config: dict, quiet: bool, save_every_s: float = 60.0) -> list[dict]:
    """Train through the pretraining loop (:func:`~omnipatch.train.engine.train_loop`: every
    batch one :class:`~omnipatch.train.engine.OptimStep`, per-step records to ``metrics.jsonl``
    and the progress bar), epoch by epoch; after each, :class:`_Epochs` validates, keeps the
    best weights and stops early. Leaves the best weights in ``model``."""
    from omnipatch.config import TrainConfig

    g = torch.Generator().manual_seed(cfg.seed)
    strategy = Strategy("single", 0, 1, runner.device)
    step_module = StepModule(model, lambda item, gen: {"loss": _loss(lab.kind, *runner.forward(item, gen))})
    optim_step = OptimStep(step_module, opt, sched, strategy, runner.autocast, runner.precision.scaler(),
                           grad_clip=1.0, hint="lower lr or check the labels")
    total = cfg.epochs * math.ceil(len(train_rows) / cfg.batch_size)
    log_every = TrainConfig.log_every
    progress = Progress(total, 0, every=max(log_every, total // 20 or 1), enabled=not quiet)
    epochs = _Epochs(model, runner, lab, train_rows, val_rows, cfg, out, config, progress, quiet, save_every_s)

    def log(rec: dict) -> None:
        loggers.scalars(rec["step"], {k: v for k, v in rec.items() if k != "step"})
        progress.update(rec["step"], f"loss {rec['loss']:.4f} | {rec['samples_per_s']:.0f} samples/s")

    with open_loggers([], out) as loggers:  # FT_DIR/metrics.jsonl
        train_loop(optim_step, epochs.feeds(g), Meter(strategy, size=lambda item: len(item[2])),
                   log_every=log_every, log=log, hooks=epochs)
    progress.close()
    model.load_state_dict(epochs.best_state, strict=False)
    return epochs.history


class _Epochs(Hooks):
    """Fine-tuning's epochs for :func:`~omnipatch.train.engine.train_loop`: each one's feed (the
    training rows in a new order from ``generator``, one step per batch) and, after it, the
    record in ``history.jsonl`` (train loss; validation loss and metrics), the best weights
    (in memory, and on disk at most every ``save_every_s`` seconds so a crash keeps a recent
    best) and the stop after ``patience`` epochs without improvement."""

    def __init__(self, model: FinetuneModel, runner: _Runner, lab: Labels, train_rows: list[int],
                 val_rows: list[int], cfg: FinetuneConfig, out: Path, config: dict, progress: Progress,
                 quiet: bool, save_every_s: float):
        self.model, self.runner, self.lab, self.train_rows, self.val_rows = model, runner, lab, train_rows, val_rows
        self.cfg, self.out, self.config, self.progress, self.quiet = cfg, out, config, progress, quiet
        self.save_every_s = save_every_s
        self.history: list[dict] = []
        self.best, self.best_state, self.since, self.last_save = (-math.inf, -math.inf), None, 0, time.time()
        self.loss_sum, self.seen = 0.0, 0
        (out / "history.jsonl").write_text("")

    def feeds(self, generator: torch.Generator):
        """Per epoch, the feed of its steps: ``[(item, generator)]`` (one micro-batch each)."""
        for _ in range(self.cfg.epochs):
            self.model.train()
            if self.cfg.mode == "linear":
                self.model.adapters.eval(), self.model.encoder.eval()
            yield ([(item, generator)] for item in self.runner.items(self.train_rows, train=True, generator=generator))

    def after_step(self, done: int, micros: list, terms: list[dict]) -> None:
        (item, _), = micros
        self.loss_sum += float(terms[0]["loss"].detach()) * len(item[2])
        self.seen += len(item[2])

    def end_of_epoch(self, epoch: int, done: int) -> bool:
        rec = {"epoch": epoch, "train_loss": self.loss_sum / max(self.seen, 1)}
        self.loss_sum, self.seen = 0.0, 0
        key = (float(epoch), 0.0)  # without validation the last epoch is the best
        if self.val_rows:
            rec["val_loss"], vm = self.runner.evaluate(self.val_rows)
            rec.update({f"val_{k}": v for k, v in vm.items()})
            key = (_score(self.lab, vm), -rec["val_loss"])  # primary metric, then lower loss
        with open(self.out / "history.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.history.append(rec)
        if key > self.best:
            self.best, self.since = key, 0
            self.best_state = {k: p.detach().clone() for k, p in self.model.named_parameters() if p.requires_grad}
            self.config["best_epoch"] = epoch
            if time.time() - self.last_save > self.save_every_s:
                ckpt.save(self.out, self.model, self.config)
                self.last_save = time.time()
        else:
            self.since += 1
        if not self.quiet:
            self.progress.write(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in rec.items()))
        return bool(self.val_rows) and self.since >= self.cfg.patience


def finetune(run_dir, data, out, labels=None, cfg: FinetuneConfig | None = None, *, options: dict | None = None,
             on_bad_sample: str = "raise", random_init: bool = False, test_data=None, test_labels=None,
             modality: str | None = None, quiet: bool = False) -> dict:
    """Fine-tune the run in ``run_dir`` on ``data`` and write ``out`` (see the module docs).

    Args:
        run_dir: a pretraining run (``omnipatch pretrain --out``).
        data: folder / glob / manifest / list of paths, or an already opened dataset.
        out: the fine-tuning directory ``FT_DIR``.
        labels: ``LABELS.csv`` path, a ``{sample id: label}`` dict, or None for the
            manifest's label column. Samples without a label are not used.
        cfg: the recipe (:class:`FinetuneConfig`).
        options: dataset options overriding the pretraining ones (e.g. ``channels``).
        random_init: same architecture, untrained (the "from scratch" baseline).
        test_data, test_labels: optional held-out set scored with the best weights.
        modality: which modality of a paired run (default: its first).
    Returns:
        The content of ``metrics.json``.
    """
    from omnipatch.train.data import CachedDataset

    cfg = cfg or FinetuneConfig()
    cfg.check()
    t0 = time.time()
    pre_cfg = ckpt.load_config(run_dir)
    m = modality or RunSpec.from_checkpoint(pre_cfg).modality
    dataset, spec, opts = open_for(pre_cfg, data, options, on_bad_sample, m)
    matched: list[str] = []
    lab = build_labels(dataset, labels, cfg.task, cfg.multi_label, base_dir=_source_dir(data), match=cfg.match_ids,
                       report=matched, read_target=spec.read_target)
    if matched and not quiet:
        print(matched[0], flush=True)
    adapters, encoder, model_cfg = load_backbone(run_dir, dataset, m, random_init, cfg.seed, opts, quiet)
    head_spec = lab.head_spec(m, encoder.cfg.dim, adapters[m])
    torch.manual_seed(cfg.seed)
    model = FinetuneModel(adapters, encoder, build_head(head_spec), m)
    set_trainable(model, cfg.mode, cfg.partial_blocks)
    device = resolve_device(cfg.device)
    model.to(device)
    if not isinstance(dataset, CachedDataset):
        dataset = CachedDataset(dataset)
    list_skipped(dataset, lab.rows, Path(out), quiet)
    labelled = LabelledData(dataset, lab)
    train_rows, val_rows = lab.split(cfg.val_fraction, cfg.seed)
    lab.fit_scaler(train_rows)
    augment = spec.augment if cfg.augment_strength > 0 else None
    runner = _Runner(model, labelled, cfg, device, augment)

    steps = cfg.epochs * math.ceil(len(train_rows) / cfg.batch_size)
    opt, sched = make_optimizer(layer_decay_groups(model, cfg.lr, cfg.layer_decay, cfg.weight_decay), cfg.lr, steps,
                                max(1, int(cfg.warmup_fraction * steps)), 0.01, betas=(0.9, 0.999))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"finetune": asdict(cfg), "head": head_spec, "classes": lab.classes, "target_scale": lab.scale,
              "model": model_cfg, "modality": m,
              "run": RunSpec.from_checkpoint(pre_cfg).only(m, opts).to_dict(),
              "pretrained_from": str(run_dir), "random_init": random_init}
    history = _fit(model, runner, lab, opt, sched, train_rows, val_rows, cfg, out, config, quiet)
    ckpt.save(out, model, config)  # the best weights, now in the model
    result = {"task": cfg.task if not cfg.multi_label else "classification (multi-label)", "mode": cfg.mode,
              "random_init": random_init, "n_train": len(train_rows), "n_val": len(val_rows),
              "best_epoch": config["best_epoch"], "epochs_run": len(history), "seconds": round(time.time() - t0, 1),
              "train": runner.evaluate(train_rows)[1]}
    if val_rows:
        result["val_loss"], result["val"] = runner.evaluate(val_rows)
    if test_data is not None:
        result["test"] = load_finetuned(out, device=str(device)).evaluate(test_data, test_labels,
                                                                          on_bad_sample=on_bad_sample)
    result["checkpoint"] = str(out / ckpt.CKPT)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def open_for(run_cfg: dict, data, options: dict | None, on_bad_sample: str = "raise", modality: str | None = None):
    """``(dataset, spec, options)``: ``data`` opened with the run's dataset options (of
    ``modality`` in a paired run) updated by ``options``; a dataset is returned as is."""
    from omnipatch.modality import MODALITIES
    from omnipatch.train.build import open_data

    run = RunSpec.from_checkpoint(run_cfg)
    m = modality or run.modality
    if m not in run.modalities:
        raise OmnipatchError(f"the run was trained on {', '.join(run.modalities)}, not {m!r}")
    spec = MODALITIES.get(m)
    saved = run.options_for(m)
    from omnipatch.train.build import merge_checked  # channels may change: the patch embedding is inflated

    opts = merge_checked(spec, saved, options or {}, allow=("channels",))
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (str, list, tuple)):
        return data, spec, opts
    return open_data(spec, data, opts, on_bad_sample), spec, opts


def _source_dir(data) -> Path | None:
    """Folder of a manifest ``SRC`` (class-map paths in its label column are relative to it)."""
    return Path(data).parent if isinstance(data, (str, Path)) and Path(data).is_file() else None


# -- using a fine-tuned model -----------------------------------------------------------------------
@dataclass
class Finetuned:
    """A loaded fine-tuning directory: ``predict`` and ``evaluate`` new data."""

    model: FinetuneModel
    config: dict
    labels: Labels = field(repr=False)

    def open(self, source, on_bad_sample: str = "raise"):
        return open_for(self.config, source, None, on_bad_sample)[0]

    @torch.no_grad()
    def predict(self, data, batch_size: int = 256, on_bad_sample: str = "raise") -> tuple[list[str], np.ndarray]:
        """Ids and predictions: class probabilities ``(N, K)``, values ``(N,)``, or class
        maps ``(N, *S)`` (indices into ``config["classes"]``)."""
        from omnipatch.train.data import eval_loader

        ds = self.open(data, on_bad_sample)
        device = next(self.model.parameters()).device
        ids, outs = [], []
        for batch, _bad in eval_loader(ds, batch_size):
            if batch is not None:
                outs.append(self.labels.decode(self.model.eval()(batch.to(device)).float().cpu()))
                ids += batch.ids
        if not outs:
            raise OmnipatchError("no readable samples to predict")
        return ids, np.concatenate(outs)

    @torch.no_grad()
    def evaluate(self, data, labels=None, batch_size: int = 256, on_bad_sample: str = "raise") -> dict:
        """Metrics of the fine-tuned model on labelled ``data`` (labels as in :func:`finetune`)."""
        ds, spec, _ = open_for(self.config, data, None, on_bad_sample)
        lab = build_labels(ds, labels, self.labels.task, self.labels.kind == "multi", known=self.labels,
                           base_dir=_source_dir(data), match=self.config["finetune"].get("match_ids", "exact"),
                           read_target=spec.read_target)
        cfg = FinetuneConfig(**{**self.config["finetune"], "mode": "full", "batch_size": batch_size})
        device = next(self.model.parameters()).device
        runner = _Runner(self.model, LabelledData(ds, lab), cfg, device)
        return runner.evaluate(list(range(len(lab.rows))))[1]


def load_finetuned(ft_dir, device: str = "auto") -> Finetuned:
    """Load ``FT_DIR`` written by :func:`finetune` (strict: every weight must match)."""
    from omnipatch.model import OmniModel

    cfg = ckpt.load_config(ft_dir)
    if "finetune" not in cfg:
        raise OmnipatchError(f"{ft_dir}: not a fine-tuning directory (no 'finetune' section in its config)")
    m = cfg["modality"]
    base = OmniModel.from_config(cfg["model"])
    model = FinetuneModel(nn.ModuleDict({m: base.adapters[m]}), base.encoder_for(m), build_head(cfg["head"]), m)
    ckpt.load_weights(ft_dir, model)
    labels = Labels.from_config(cfg)
    return Finetuned(model.to(resolve_device(device)).eval(), cfg, labels)


__all__ = ["FinetuneConfig", "finetune", "load_finetuned", "Finetuned", "FinetuneModel", "build_head",
           "load_backbone", "layer_decay_groups", "set_trainable", "read_labels", "sample_ids", "open_for"]
