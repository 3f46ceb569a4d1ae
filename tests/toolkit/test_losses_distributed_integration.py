"""Two gloo processes, each holding part of a batch (halves, or 1 + 7 rows), give the same
loss as one process on the whole batch, and (after DDP's averaging) the same gradients: the
global-batch contract of omnipatch.losses.distributed."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def _cases():
    from omnipatch.losses import (
        BarlowTwinsLoss,
        CLIPLoss,
        LeJEPALoss,
        MVDHELLoss,
        MVInfoNCELoss,
        NTXentLoss,
        SupConLoss,
        VICRegLoss,
    )

    pair = lambda z: (z[0], z[1])  # noqa: E731
    return {
        "ntxent": (NTXentLoss(0.3), pair), "clip": (CLIPLoss(learnable=False), pair),
        "barlow": (BarlowTwinsLoss(), pair), "vicreg": (VICRegLoss(), pair),
        "lejepa": (LeJEPALoss(0.5, num_slices=16), lambda z: (z,)),
        "mv_infonce": (MVInfoNCELoss(), lambda z: (z,)), "mv_dhel": (MVDHELLoss(), lambda z: (z,)),
        "supcon": (SupConLoss(), lambda z: (z, torch.arange(z.shape[1]) % 3)),
    }


def _full(z: torch.Tensor) -> dict:
    """One process, whole batch: loss and d loss / d z for every case."""
    out = {}
    for name, (loss, args) in _cases().items():
        x = z.clone().requires_grad_(True)
        torch.manual_seed(0)  # SIGReg slices: rank 0's draw
        value = loss(*args(x))
        value.backward()
        out[name] = (value.detach(), x.grad)
    return out


UNEVEN = (1, 7)  # rows per rank in the second pass: one rank alone is below any loss's minimum


def _worker(rank: int, root: str, z: torch.Tensor) -> None:
    dist.init_process_group("gloo", init_method=f"file://{root}/pg", rank=rank, world_size=WORLD)
    b = z.shape[1] // WORLD
    out = {}
    for name, (loss, args) in _cases().items():
        x = z[:, rank * b:(rank + 1) * b].clone().requires_grad_(True)
        torch.manual_seed(rank)  # different draws per rank: the loss must broadcast rank 0's
        value = loss(*args(x))
        value.backward()
        # DDP averages parameter gradients over ranks; the same on the input gradients:
        out[name] = (value.detach(), x.grad / WORLD)
    lo = sum(UNEVEN[:rank])
    for name, (loss, args) in _cases().items():
        if name == "supcon":
            continue
        x = z[:, lo:lo + UNEVEN[rank]].clone().requires_grad_(True)
        torch.manual_seed(rank)
        value = loss(*args(x))
        value.backward()
        out["uneven " + name] = (value.detach(), x.grad / WORLD)
    dist.barrier()
    dist.destroy_process_group()
    torch.save(out, f"{root}/rank{rank}.pt")


@pytest.mark.integration
@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path):
    z = torch.randn(3, 8, 6, generator=torch.Generator().manual_seed(0))
    mp.spawn(_worker, args=(str(tmp_path), z), nprocs=WORLD, join=True)
    results = {r: torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)}
    full = _full(z)
    b = z.shape[1] // WORLD
    for name, (value, grad) in full.items():
        if name == "supcon":
            continue  # labels differ by construction (checked separately below)
        for r in range(WORLD):
            v_r, g_r = results[r][name]
            torch.testing.assert_close(v_r, value, rtol=1e-5, atol=1e-5, msg=f"{name} loss on rank {r}")
            torch.testing.assert_close(g_r, grad[:, r * b:(r + 1) * b], rtol=1e-4, atol=1e-6,
                                       msg=f"{name} gradient on rank {r}")
    # uneven shards (1 + 7 rows): the same global loss and gradients
    lo = 0
    for r, n in enumerate(UNEVEN):
        for name, (value, grad) in full.items():
            if name == "supcon":
                continue
            v_r, g_r = results[r]["uneven " + name]
            torch.testing.assert_close(v_r, value, rtol=1e-5, atol=1e-5, msg=f"uneven {name} loss on rank {r}")
            torch.testing.assert_close(g_r, grad[:, lo:lo + n], rtol=1e-4, atol=1e-6,
                                       msg=f"uneven {name} gradient on rank {r}")
        lo += n
    # supcon: each rank gathers labels [0,1,2,0] + [0,1,2,0] -> the global labels
    from omnipatch.losses import SupConLoss

    x = z.clone().requires_grad_(True)
    value = SupConLoss()(x, torch.arange(b).repeat(WORLD) % 3)
    value.backward()
    for r in range(WORLD):
        v_r, g_r = results[r]["supcon"]
        torch.testing.assert_close(v_r, value.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g_r, x.grad[:, r * b:(r + 1) * b], rtol=1e-4, atol=1e-6)
