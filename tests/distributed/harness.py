"""Gradient parity at world size 2: one step of the real pipeline (image files -> augmented,
masked views -> encoder -> objective) under DDP / FSDP on gloo, against one process on the
global batch with every gradient computed by a single autograd pass (no caching, no
gathering): the definition the distributed and accumulated paths must reproduce.

Micro-batch ``k`` of the step is rows ``k*B .. (k+1)*B`` of the data with generator
``step_generator(SEED, k)``; under ``world`` ranks x ``accum`` micro-batches rank ``r``
holds micro-batches ``m * world + r`` (the engine's numbering).
"""

from __future__ import annotations

import os

import torch

SEED, B = 0, 4
OPTIONS = {"image_size": 16, "patch_size": 4, "channels": 1}
SMALL = {"proj_hidden": 64, "proj_dim": 32}
OBJECTIVES = {  # name -> objectives config (small projectors: the test is about gradients, not quality)
    "mae": {"mae": {}},
    "contrastive": {"contrastive": SMALL},
    "clip": {"clip": SMALL},
    "barlow": {"barlow": SMALL},
    "vicreg": {"vicreg": SMALL},
    "sigreg": {"sigreg": {**SMALL, "num_slices": 16}},
    "mv_infonce": {"mv_infonce": {**SMALL, "n_views": 3}},
    "dhel": {"dhel": {**SMALL, "n_views": 3}},
    "supcon": {"supcon": SMALL},
    "mae+contrastive": {"mae": {}, "contrastive": SMALL},
}


PAIRED = "paired"  # objectives key: image <-> audio pairs, MAE on each side + the cross-modal CLIP term
OBJECTIVES[PAIRED] = {"mae": {}}


def build(source: str, objectives: dict):
    """``(model, split step, dataset)`` as ``omnipatch pretrain`` builds them, seeded; a
    paired run (image <-> audio manifest) when ``objectives`` is ``OBJECTIVES[PAIRED]``."""
    from omnipatch.config import Config
    from omnipatch.modality import MODALITIES
    from omnipatch.train.build import build_model, open_data, open_run_data
    from omnipatch.train.paired import PairedCollate, paired_step
    from omnipatch.train.steps import single_modality_step

    cfg = Config()
    cfg.model.preset, cfg.model.decoder_dim, cfg.model.decoder_depth = "micro", 32, 1
    cfg.objectives = {n: {"weight": 1.0, **a} for n, a in objectives.items()}
    if objectives is OBJECTIVES[PAIRED]:
        cfg.data.modality, cfg.data.source = "image,audio", source
        cfg.data.options = {"image": dict(OPTIONS), "audio": {"seconds": 0.5, "n_mels": 16}}
        ds, per_modality = open_run_data(cfg)
        model = build_model(cfg, per_modality)
        names = ["image", "audio"]
        step = paired_step(model, {m: MODALITIES.get(m).augment for m in names})
        return model, step, (ds, PairedCollate(names))
    cfg.data.options = dict(OPTIONS)
    spec = MODALITIES.get("image")
    ds = open_data(spec, source, cfg.data.options)
    model = build_model(cfg, {"image": ds})
    return model, single_modality_step(model, "image", spec.augment), (ds, None)


def micro(data, k: int):
    """Micro-batch ``k`` and its generator."""
    from omnipatch.batch import collate
    from omnipatch.train.engine import step_generator

    ds, paired = data
    items = [ds[i] for i in range(k * B, (k + 1) * B)]
    batch = collate(items) if paired is None else paired(items)[0]
    return batch, step_generator(SEED, k, torch.device("cpu"))


def _cat(parts: list):
    if parts[0] is None or isinstance(parts[0], torch.Tensor):
        return None if parts[0] is None else torch.cat(parts, dim=-1 if parts[0].dim() == 1 else 1)
    return {k: _cat([p[k] for p in parts]) for k in parts[0]}


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def reference(source: str, objectives: dict, n_micro: int, world: int = 1) -> tuple[float, dict]:
    """One process, one autograd pass over the whole global batch: the mean of the per-sample
    terms over micro-batches + the batch-level terms on all pooled embeddings.

    The rows are in the order a ``world``-rank run gathers them (rank by rank): the losses do
    not depend on it, but float32 sums do, at ~2e-5 in a batch-normed projector's weights."""
    model, step, ds = build(source, objectives)
    model.train()
    sample, pooled, labels = [], [], []
    for k in [m * world + r for r in range(world) for m in range(n_micro // world)]:
        terms, z, y = step.encode(*micro(ds, k))
        sample.append(terms["loss"])
        pooled.append(z)
        labels.append(y)
    loss = sum(sample) / n_micro
    torch.manual_seed(1)  # SIGReg's directions
    if pooled[0] is not None:
        loss = loss + step.score(_cat(pooled), _cat(labels))["loss"]
    loss.backward()
    return float(loss.detach()), grads(model)


def run_step(source: str, objectives: dict, strategy, accum: int, cached: bool | None = None) -> tuple[float, dict]:
    """The engine's step on this rank's micro-batches: ``(mean logged loss, gradients)``."""
    from contextlib import nullcontext

    from omnipatch.train.accumulate import backward_cached, backward_plain
    from omnipatch.train.engine import StepModule

    model, step, ds = build(source, objectives)
    module = strategy.wrap(StepModule(model, step))
    module.train()
    micros = [micro(ds, m * strategy.world + strategy.rank) for m in range(accum)]
    cached = step.batched and accum > 1 if cached is None else cached
    backward = backward_cached if cached else backward_plain
    torch.manual_seed(1)
    terms = backward(module, micros, strategy, accum, 0, nullcontext(), _NoScaler())
    loss = sum(float(t["loss"].detach()) for t in terms) / len(terms)
    if strategy.name == "fsdp" and strategy.distributed:
        out = {n.removeprefix("model."): p.grad.full_tensor() for n, p in module.named_parameters()
               if p.grad is not None}
    else:
        out = grads(model)
    return loss, out


class _NoScaler:
    def scale(self, x):
        return x


def worker(rank: int, world: int, port: int, out: str, cases: list) -> None:
    """Each case ``(label, objective key, strategy name, accum, source)`` -> ``out/rank{r}.pt``."""
    import torch.distributed as dist

    from omnipatch.train.strategy import Strategy

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for label, key, name, accum, source in cases:
        try:
            results[label] = run_step(source, OBJECTIVES[key], Strategy(name, rank, world), accum)
        except Exception as e:  # noqa: BLE001 - reported by the test, next case still runs
            results[label] = repr(e)
    dist.barrier()
    dist.destroy_process_group()
    torch.save(results, f"{out}/rank{rank}.pt")
