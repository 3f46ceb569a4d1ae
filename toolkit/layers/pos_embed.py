"""Fixed N-d sine-cosine positional embeddings (MAE's 2-D version, made dimension-generic)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sincos_1d(dim: int, pos: Tensor, temperature: float = 10000.0) -> Tensor:
    """``pos (N,)`` float -> ``(N, dim)``; ``dim`` must be even."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / temperature**omega
    out = pos.double().reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()


def sincos_nd(dim: int, grid: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """Embedding for every cell of an N-d grid, flattened row-major: ``(prod(grid), dim)``.

    Each axis gets an even share of ``dim`` (the remainder is zero-padded), so the same
    function serves 1-D sequences, 2-D images, 3-D volumes and (t, h, w) video grids.
    """
    n = len(grid)
    per = (dim // n) // 2 * 2
    if per == 0:
        raise ValueError(f"embedding dim {dim} too small for a {n}-d grid")
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float32, device=device) for g in grid], indexing="ij")
    parts = [sincos_1d(per, c.reshape(-1)) for c in coords]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < dim:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], dim - emb.shape[1])], dim=1)
    return emb


def sincos_coords(dim: int, coords: Tensor, scale: float = 100.0) -> Tensor:
    """Continuous coordinates ``(..., C)`` (e.g. xyz in [-1, 1]) -> ``(..., dim)``."""
    C = coords.shape[-1]
    per = (dim // C) // 2 * 2
    flat = coords.reshape(-1, C) * scale
    emb = torch.cat([sincos_1d(per, flat[:, i]) for i in range(C)], dim=1)
    if emb.shape[1] < dim:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], dim - emb.shape[1])], dim=1)
    return emb.reshape(*coords.shape[:-1], dim).to(coords.dtype)


def grid_size(spatial: tuple[int, ...], patch: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s // p for s, p in zip(spatial, patch))


__all__ = ["sincos_1d", "sincos_nd", "sincos_coords", "grid_size", "math"]
