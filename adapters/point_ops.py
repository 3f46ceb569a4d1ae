"""Batched point-cloud primitives in plain torch: farthest-point sampling, kNN grouping,
Chamfer distance and a spatial block mask.

These are the CPU path and the oracle for later GPU kernels: each function takes and returns
plain tensors with documented shapes, has no Python loop over points (FPS loops over the
*samples* it picks, which is inherent to the algorithm), and handles ragged batches through a
``valid (B, N)`` mask (True where a slot holds a real point; collate pads at the end).
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnipatch.masking.reference import MaskResult, budget, select


def farthest_point_sample(xyz: Tensor, n: int, valid: Tensor | None = None,
                          start: int | Tensor = 0) -> tuple[Tensor, Tensor]:
    """Farthest-point sampling, batched (the algorithm of open3d's
    ``PointCloud.farthest_point_down_sample``, index for index).

    From ``start``, repeatedly pick the point whose squared distance to the picked set is
    largest; ties go to the lowest index (open3d's strict ``>`` scan, torch's ``argmax``).
    Computation runs in ``xyz``'s dtype: pass float64 to reproduce open3d bit for bit.

    Args:
        xyz: ``(B, N, 3)`` coordinates (extra trailing channels are not allowed).
        n: number of centres to pick; may exceed the valid point count (see below).
        valid: ``(B, N)`` bool, True for real points; padding is never picked. A sample
            must have at least one valid point.
        start: first index, an int or ``(B,)`` long (open3d's ``start_index``; default 0).
            An invalid start point is replaced by the sample's first valid point.
    Returns:
        ``idx (B, n)`` long indices into N, in pick order, and ``idx_valid (B, n)`` bool:
        False for slots beyond the sample's valid point count (they repeat earlier picks and
        should be treated as padding).
    """
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"farthest_point_sample expects xyz (B, N, 3), got {tuple(xyz.shape)}")
    B, N, _ = xyz.shape
    dev = xyz.device
    dist = torch.full((B, N), float("inf"), dtype=xyz.dtype, device=dev)
    if valid is not None:
        dist = dist.masked_fill(~valid, float("-inf"))  # padding: never the farthest
    far = torch.as_tensor(start, dtype=torch.long, device=dev).expand(B).clone()
    if valid is not None:
        ok = valid.gather(1, far[:, None])[:, 0]
        far = torch.where(ok, far, valid.long().argmax(1))
    # one contiguous (B, N) array per axis: the per-step update is three fused passes and a
    # running minimum, summed in open3d's order ((dx^2 + dy^2) + dz^2)
    x, y, z = (xyz[..., i].contiguous() for i in range(3))
    far = far.unsqueeze(1)  # (B, 1)
    picks = []
    for _ in range(n):
        picks.append(far)
        d = (x - x.gather(1, far)).square_()
        d += (y - y.gather(1, far)).square_()
        d += (z - z.gather(1, far)).square_()
        torch.minimum(dist, d, out=dist)
        far = dist.argmax(1, keepdim=True)
    idx = torch.cat(picks, 1) if picks else torch.empty(B, 0, dtype=torch.long, device=dev)
    n_valid = torch.full((B,), N, device=dev) if valid is None else valid.sum(1)
    idx_valid = torch.arange(n, device=dev).unsqueeze(0) < n_valid.unsqueeze(1)
    return idx, idx_valid


def knn(query: Tensor, xyz: Tensor, k: int, valid: Tensor | None = None) -> Tensor:
    """Indices of the ``k`` nearest points of ``xyz`` to each query point, batched.

    Args:
        query: ``(B, M, 3)`` query points (group centres).
        xyz: ``(B, N, 3)`` points.
        k: neighbours per query.
        valid: ``(B, N)`` bool, True for real points; padding is never a neighbour.
    Returns:
        ``(B, M, k)`` long, nearest first. When a sample has fewer than ``k`` valid points,
        the missing neighbours repeat the nearest one (a small cloud still forms groups).
    """
    N = xyz.shape[1]
    d = torch.cdist(query.float(), xyz.float())  # (B, M, N)
    if valid is not None:
        d = d.masked_fill(~valid[:, None, :], float("inf"))
    kk = min(k, N)
    dist, idx = d.topk(kk, dim=-1, largest=False, sorted=True)
    idx = torch.where(torch.isfinite(dist), idx, idx[..., :1])
    if kk < k:
        idx = torch.cat([idx, idx[..., :1].expand(-1, -1, k - kk)], -1)
    return idx


def gather_points(x: Tensor, idx: Tensor) -> Tensor:
    """``x (B, N, C)``, ``idx (B, *S)`` long -> ``(B, *S, C)``."""
    B, _, C = x.shape
    flat = idx.reshape(B, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, C))
    return out.reshape(*idx.shape, C)


def chamfer_l2(a: Tensor, b: Tensor) -> Tensor:
    """Symmetric squared-L2 Chamfer distance between point sets (Point-MAE's
    ``ChamferDistanceL2``: mean nearest squared distance a->b plus b->a; Fan et al., 2017).

    Args:
        a: ``(..., n, 3)``; b: ``(..., m, 3)``.
    Returns:
        ``(...)`` per-set distances.
    """
    d = (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)  # (..., n, m)
    return d.min(-1).values.mean(-1) + d.min(-2).values.mean(-1)


def spatial_block_mask(coords: Tensor, mask_ratio: float, padding_mask: Tensor | None = None,
                       generator: torch.Generator | None = None) -> MaskResult:
    """Hide the tokens nearest a random seed token in coordinate space (Point-MAE's block
    masking, Pang et al., 2022): a contiguous region instead of scattered tokens.

    Args:
        coords: ``(B, L, C)`` token centres.
        mask_ratio: fraction of valid tokens hidden.
        padding_mask: ``(B, L)`` bool, True for padding (never visible, never scored).
    Returns:
        a :class:`~omnipatch.masking.MaskResult` (kept = the tokens farthest from the seed).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    B, L, _ = coords.shape
    dev = coords.device
    valid = torch.ones(B, L, dtype=torch.bool, device=dev) if padding_mask is None else ~padding_mask
    gdev = generator.device if generator is not None else dev
    # seed: a uniformly random *valid* token per sample (lowest random key among valid ones)
    r = torch.rand(B, L, generator=generator, device=gdev).to(dev).masked_fill(~valid, 2.0)
    seed = r.argmin(1)
    centre = coords.gather(1, seed.view(B, 1, 1).expand(B, 1, coords.shape[-1]))
    dist = (coords.float() - centre.float()).pow(2).sum(-1)
    keys = -dist  # lowest keys are kept: the farthest tokens stay visible
    keys = keys.masked_fill(~valid, float("inf"))
    return select(keys, budget(valid, mask_ratio), padding_mask)


__all__ = ["chamfer_l2", "farthest_point_sample", "gather_points", "knn", "spatial_block_mask"]
