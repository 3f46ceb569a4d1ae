"""One optimiser step's forward and backward passes over its micro-batches.

Plain accumulation (``backward_plain``) sums the gradients of each micro-batch's own loss.
That is exact for per-sample objectives (MAE) but not for batch-level ones: a contrastive
loss over micro-batches of 64 has 63 negatives per anchor, not the step's 64 x grad_accum
- 1, and Barlow Twins / VICReg / SIGReg statistics are the micro-batch's.

Gradient caching (``backward_cached``; Gao et al., 2021, "Scaling Deep Contrastive Learning
Batch Size under Memory Limited Setup") makes them exact with memory per micro-batch:

1. every micro-batch is encoded without gradients; only its pooled embeddings
   ``(V, b, D)`` are kept;
2. the batch-level loss is computed once over all of them (and, under DDP / FSDP, over every
   rank's: the objectives gather before their projector), and backpropagated to the
   projector and to the cached embeddings, giving ``dL/dz``;
3. every micro-batch is encoded again, with gradients, from the same random state (its
   step generator for masks and augmentations, and the global RNG), and
   ``per-sample loss / grad_accum + sum(z * dL/dz)`` is backpropagated.

The parameter gradients equal those of one pass over the whole batch (tests/distributed). The
price is one extra encoder forward per micro-batch (the first pass skips the per-sample
terms, so no MAE decoder there); ``benchmarks/bench_accum.py`` measures memory and time.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
from torch import Tensor

from omnipatch.errors import OmnipatchError


class SplitStep:
    """A training step in two halves, so accumulation can score the whole step's batch.

    Args:
        encode: ``(batch, generator, with_terms=True) -> (sample_terms, pooled, labels)``: the per-sample
            terms (with their weighted sum as ``"loss"``) and, when there are batch-level
            objectives, the pooled embeddings ``(V, b, D)`` and labels ``(b,)`` they need
            (``pooled`` is None otherwise); or dicts of those, one entry per group of rows
            (a paired batch: each modality's rows, the complete pairs). ``with_terms=False``
            may skip the per-sample terms (only ``pooled`` is used), but must draw the same
            random numbers before ``pooled`` is made.
        score: ``(pooled, labels) -> batch_terms`` (with ``"loss"``) over any number of rows.
        batched: whether there are batch-level terms (else ``encode`` returns no ``pooled``,
            and plain accumulation is already exact).
    """

    def __init__(self, encode: Callable, score: Callable, batched: bool = True):
        self.encode, self.score, self.batched = encode, score, batched

    def __call__(self, batch, generator: torch.Generator) -> dict[str, Tensor]:
        terms, pooled, labels = self.encode(batch, generator)
        return terms if pooled is None else merge_terms(terms, self.score(pooled, labels))


def merge_terms(a: dict, b: dict) -> dict:
    """Both term dicts; ``"loss"`` is the sum of theirs."""
    out = {k: v for k, v in a.items() if k != "loss"}
    out.update({k: v for k, v in b.items() if k != "loss"})
    out["loss"] = a.get("loss", 0.0) + b.get("loss", 0.0)
    return out


def check_finite(terms: dict, step: int, hint: str | None = None) -> None:
    """Raise on a NaN / Inf loss, with every term's value and ``hint`` (default: pretraining's advice)."""
    loss = terms["loss"]
    if isinstance(loss, Tensor) and not torch.isfinite(loss):
        vals = ", ".join(f"{k}={float(v.detach() if isinstance(v, Tensor) else v):.4g}" for k, v in terms.items())
        hint = hint or "lower train.lr, check the data for NaN/inf, or set train.precision=fp32"
        raise OmnipatchError(f"non-finite loss at step {step} ({vals}); {hint}")


def backward_plain(module, micros: list, strategy, accum: int, step: int, autocast, scaler,
                   hint: str | None = None) -> list[dict]:
    """Each micro-batch's loss / ``accum`` backpropagated on its own; gradients synchronised
    over ranks on the last one. Returns each micro-batch's terms."""
    out = []
    for i, (batch, g) in enumerate(micros):
        with strategy.accumulating(module, sync=i == len(micros) - 1):
            with autocast:
                terms = module(batch, g)
            check_finite(terms, step, hint)
            scaler.scale(terms["loss"] / accum).backward()
        out.append(terms)
    return out


def backward_cached(module, micros: list, strategy, accum: int, step: int, autocast, scaler,
                    hint: str | None = None) -> list[dict]:
    """Gradient caching over ``micros`` (see the module docstring); ``module(batch, g,
    phase=...)`` must serve a :class:`SplitStep`. Returns each micro-batch's terms (the
    batch-level ones repeated in each)."""
    device = strategy.device
    saved, pooled, labels = [], [], []
    with torch.no_grad():
        for batch, g in micros:
            saved.append((g.get_state(), _rng_state(device)))
            with autocast:
                _, z, y = module(batch, g, phase="embed")  # pooled only: no MAE decoder here
            pooled.append(z)
            labels.append(y)
    z_all = {k: torch.cat(z, dim=1).detach().requires_grad_(True) for k, z in _by_key(pooled).items()}
    y_all = {k: None if any(v is None for v in y) else torch.cat(y) for k, y in _by_key(labels).items()}
    with strategy.accumulating(module, sync=False):
        with autocast:
            scored = module(None, None, phase="score", pooled=_unkey(z_all, pooled), labels=_unkey(y_all, labels))
        check_finite(scored, step, hint)
        if isinstance(scored["loss"], Tensor):  # a paired micro-batch may have nothing to score
            scaler.scale(scored["loss"]).backward()
    scored = {k: v.detach() if isinstance(v, Tensor) else v for k, v in scored.items()}
    grads = _split({k: z.grad if z.grad is not None else torch.zeros_like(z) for k, z in z_all.items()}, pooled)
    out = []
    for i, ((batch, g), (g_state, rng), dz) in enumerate(zip(micros, saved, grads)):
        g.set_state(g_state)
        with strategy.accumulating(module, sync=strategy.name == "fsdp" and i == len(micros) - 1), \
                _replaying(rng, device):
            with autocast:
                terms, z, _ = module(batch, g, phase="encode")
            check_finite(terms, step, hint)
            loss = sum((_keyed(z)[k] * d).sum() for k, d in dz.items())
            if isinstance(terms["loss"], Tensor):
                loss = loss + scaler.scale(terms["loss"] / accum)
            if isinstance(loss, Tensor):
                loss.backward()
        out.append(merge_terms(terms, scored))
    if strategy.name != "fsdp":  # FSDP reduce-scattered on the last backward; DDP never synced
        strategy.average_grads(module)
    return out


def _keyed(x) -> dict:
    """Pooled embeddings as a dict: one tensor (single modality) or ``{name: tensor}``."""
    return x if isinstance(x, dict) else {None: x} if x is not None else {}


def _unkey(d: dict, like: list):
    return d if isinstance(like[0], dict) else d.get(None)


def _by_key(parts: list) -> dict[object, list]:
    """``{key: [each micro-batch's tensor]}`` over the micro-batches that have the key."""
    out: dict = {}
    for part in parts:
        for k, v in _keyed(part).items():
            out.setdefault(k, []).append(v)
    return out


def _split(grads: dict, pooled: list) -> list[dict]:
    """The cached gradient cut back into each micro-batch's rows, per key."""
    offset = {k: 0 for k in grads}
    out = []
    for part in pooled:
        mine = {}
        for k, z in _keyed(part).items():
            n = z.shape[1]
            mine[k] = grads[k].narrow(1, offset[k], n)
            offset[k] += n
        out.append(mine)
    return out


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


@contextmanager
def _replaying(state, device: torch.device):
    """The global RNG as it was at the first pass (dropout, drop-path), restored after."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.set_rng_state(state[0])
        if cuda:
            torch.cuda.set_rng_state(state[1], device)
        yield


__all__ = ["SplitStep", "merge_terms", "backward_plain", "backward_cached", "check_finite"]
