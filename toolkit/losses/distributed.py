"""Global-batch helpers for losses under data parallelism (DDP / FSDP).

Losses whose value depends on the whole batch (negatives, batch statistics, empirical
characteristic functions) must see the *global* batch, not one rank's shard, or a run on
N GPUs optimises a different objective than a run on one. ``gather`` concatenates every
rank's rows with ``torch.distributed.nn.functional.all_gather``, whose backward sums the
incoming gradients over ranks (a reduce-scatter), so gradients flow to every rank's inputs.

Every rank then computes the same global loss ``L``. The gradient reaching rank ``r``'s local
rows is ``world_size * dL/dz_r`` (each of the ``world_size`` copies of ``L`` contributes), and
DDP averages parameter gradients over ranks, which cancels that factor: the update equals the
single-process update on the concatenated batch. The logged loss is the global-batch loss.

Per-rank batch sizes may differ (they are exchanged first and the rows padded for the
collective, then trimmed), so every rank must call the loss at every step, even with an
empty shard. When no process group is initialised (one process, tests, CPU runs) every
helper is the identity, at no cost.

Objectives whose projector has batch norm gather the *encoder's* pooled embeddings instead
(before the projector, so its statistics are the global batch's too, as a single process
would compute them) and call their loss inside :func:`global_batch`, where ``gather`` is the
identity (the rows are already global) and ``broadcast_`` still makes random draws agree.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def gather(x: Tensor, dim: int = 0) -> Tensor:
    """All ranks' ``x`` concatenated along ``dim``, rank order, with gradients.

    Args:
        x: this rank's tensor, e.g. embeddings ``(B, D)`` or labels ``(B,)``. The batch axis
            may differ in length between ranks (paired data with missing sides, a short last
            batch, even 0); the other axes must agree.
        dim: axis to concatenate along (the batch axis).

    Returns:
        ``(sum of B over ranks, ...)``; ``x`` itself when not distributed. Tensors that do
        not require gradients (labels) are gathered without autograd.
    """
    if not is_distributed() or getattr(_state, "depth", 0):
        return x
    world = dist.get_world_size()
    n_local = torch.tensor([x.shape[dim]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(n_local) for _ in range(world)]
    dist.all_gather(sizes, n_local)
    sizes = [int(n) for n in sizes]
    longest = max(sizes)
    if x.shape[dim] < longest:  # collectives need one shape: pad, gather, trim
        pad_shape = list(x.shape)
        pad_shape[dim] = longest - x.shape[dim]
        x = torch.cat([x, x.new_zeros(pad_shape)], dim=dim)
    x = x.contiguous()
    if x.requires_grad:
        from torch.distributed.nn.functional import all_gather

        parts = [_ContiguousGrad.apply(p) for p in all_gather(x)]
    else:
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, sizes)], dim=dim)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous.

    ``all_gather``'s backward on gloo allocates receive buffers with ``empty_like(grad)``,
    which keeps a permuted (dense, non-contiguous) gradient's strides, while the collective
    writes contiguous data into them: the gradients come back scrambled. A contiguous
    gradient avoids that (tests/toolkit/test_losses_distributed_integration.py).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad.contiguous()


_state = threading.local()


@contextmanager
def global_batch():
    """Inside this block the tensors are already the global batch: ``gather`` is the identity."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def broadcast_(x: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``x`` in place with rank ``src``'s copy (no gradients); identity otherwise.

    Used for random draws that must agree across ranks (SIGReg's projection directions).
    """
    if is_distributed():
        dist.broadcast(x, src=src)
    return x


__all__ = ["is_distributed", "world_size", "rank", "gather", "global_batch", "broadcast_"]
