"""How a run is spread over processes: ``single``, ``ddp`` or ``fsdp`` (FSDP2 ``fully_shard``)
behind one small interface, on PyTorch's own distributed engine.

Launch with ``torchrun --nproc-per-node N -m omnipatch pretrain ...`` (multi-node: the usual
torchrun flags). The process group is gloo on CPU and NCCL on CUDA.

Data parallelism here is gradient accumulation spread over ranks: micro-batch number
``(step * grad_accum + micro) * world + rank`` of the step sampler goes to ``rank``, with the
random generator of that same global micro-batch number. So a 2-rank run and a 1-rank run
with ``grad_accum`` doubled see the same micro-batches, the same masks and augmentations, and
(gradients averaged) make the same updates.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from omnipatch.errors import OmnipatchError

STRATEGIES = ("auto", "single", "ddp", "fsdp")


@dataclass
class Strategy:
    """Args: name (``single`` / ``ddp`` / ``fsdp``), rank, world size, device."""

    name: str
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train: DDP wrapper, FSDP2-sharded in place, or the model itself."""
        model.to(self.device)
        if self.name == "ddp" and self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            return DDP(model, device_ids=ids, find_unused_parameters=True)
        if self.name == "fsdp" and self.distributed:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            from omnipatch.layers import Block

            mesh = init_device_mesh(self.device.type, (self.world,))
            for block in [m for m in model.modules() if isinstance(m, Block)]:  # per transformer block,
                fully_shard(block, mesh=mesh)
            fully_shard(model, mesh=mesh)  # then everything else at the root
        return model

    def accumulating(self, model: nn.Module, sync: bool):
        """Context for one backward pass of an accumulated step: gradients are reduced over
        ranks only when ``sync`` (DDP ``no_sync`` otherwise; FSDP2 keeps unsharded grads)."""
        if self.distributed and self.name == "fsdp":
            model.set_requires_gradient_sync(sync)
        if self.distributed and self.name == "ddp" and not sync:
            return model.no_sync()
        return nullcontext()

    def average_grads(self, model: nn.Module) -> None:
        """Average every parameter's gradient over ranks by hand (after backward passes that
        DDP did not synchronise). A parameter with a gradient on any rank gets one on every
        rank (zeros where it had none), as DDP does; one with none anywhere keeps None."""
        if not self.distributed:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self.device)
        dist.all_reduce(has)
        live = [p for p, h in zip(params, has.tolist()) if h]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for dtype in {p.grad.dtype for p in live}:
            grads = [p.grad for p in live if p.grad.dtype == dtype]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world
            for g, new in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(new.view_as(g))

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average logged scalars over ranks."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def total(self, n: int) -> int:
        if not self.distributed:
            return n
        t = torch.tensor([n], dtype=torch.long, device=self.device)
        dist.all_reduce(t)
        return int(t.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    # -- state dicts (full, so a checkpoint resumes on any number of ranks) ------------------
    def model_state(self, model: nn.Module) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def optim_state(self, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_model_state(self, model: nn.Module, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True,
                                                                     broadcast_from_rank0=False))

    def load_optim_state(self, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True,
                                                                              broadcast_from_rank0=False))

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def make_strategy(name: str, device: str = "auto") -> Strategy:
    """Strategy from the config name and the torchrun environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``); initialises the process group when there is more than one rank."""
    if name not in STRATEGIES:
        raise OmnipatchError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    dev = torch.device(f"cuda:{local}") if cuda else torch.device("cpu" if device == "auto" else device)
    if name == "auto":
        name = "ddp" if world > 1 else "single"
    if world > 1:
        if name == "single":
            raise OmnipatchError(f"strategy 'single' cannot run on {world} ranks; use ddp or fsdp")
        if not dist.is_initialized():
            if cuda:
                torch.cuda.set_device(dev)
            dist.init_process_group("nccl" if cuda else "gloo")
    return Strategy(name, rank, world, dev)
