"""Adaptation rules: a public checkpoint's patch embedding and positions fitted to the data.

Every rule acts on timm-layout tensors: a patch embedding ``w (D, C, *k)`` (a strided
convolution's weight, ``k`` the patch edges) and a position table ``(1, N, D)`` over a patch
grid. Grid adapters store the embedding as one linear map ``(D, prod(k) * C)`` with patch
values ordered ``(k1..kn, C)`` (MAE's order); :func:`to_linear` / :func:`from_linear` convert.

Rules, applied in this order by :func:`adapt_patch_embed`:

1. **Spatial axes** 2-D -> 3-D (images to volumes or video tubelets; I3D, Carreira &
   Zisserman 2017): the 2-D kernel is repeated over the new leading axis and divided by its
   length, so a clip of identical frames embeds like the image. 3-D -> 2-D sums over that
   axis (the inverse). A 3-D kernel with another depth is summed, then re-inflated.
2. **Patch size** (FlexiViT, Beyer et al. 2023): the last two kernel axes are resampled with
   timm's ``resample_patch_embed`` (the pseudo-inverse resize, so a patch resized the same
   way embeds the same).
3. **Input channels** ``C -> C'`` (:func:`omnipatch.inflate.inflate_channels`; equal to timm's
   ``adapt_input_conv`` for RGB weights and ``C' = 1`` or ``C' > 3``): repeat cyclically and
   scale by ``C / C'``, or sum channels that share a residue.

Positions (:func:`resample_pos`): a learned table is resampled to another grid with
``F.interpolate`` (bicubic with antialiasing in 2-D, exactly timm's
``resample_abs_pos_embed``; trilinear in 3-D, linear in 1-D). A table whose number of axes
differs from the data's is replaced by the adapter's sin-cos positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from omnipatch.errors import OmnipatchError


def to_linear(w: Tensor) -> Tensor:
    """``(D, C, *k)`` convolution weight -> ``(D, prod(k) * C)`` with inputs ordered ``(k.., C)``."""
    n = w.dim() - 2
    return w.permute(0, *range(2, n + 2), 1).reshape(w.shape[0], -1)


def from_linear(w: Tensor, in_chans: int, patch: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`to_linear`: ``(D, prod(k) * C)`` -> ``(D, C, *k)``."""
    n = len(patch)
    return w.reshape(w.shape[0], *patch, in_chans).permute(0, n + 1, *range(1, n + 1)).contiguous()


def inflate_kernel(w: Tensor, depth: int) -> Tensor:
    """I3D inflation ``(D, C, kh, kw)`` -> ``(D, C, depth, kh, kw)``: repeat and divide by depth."""
    return w.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth


def resample_kernel_2d(w: Tensor, size: tuple[int, int]) -> Tensor:
    """FlexiViT resize of the last two axes (timm's ``resample_patch_embed``)."""
    if tuple(w.shape[-2:]) == tuple(size):
        return w
    from timm.layers import resample_patch_embed

    lead = w.shape[:-2]
    out = resample_patch_embed(w.reshape(-1, 1, *w.shape[-2:]).float(), list(size), verbose=False)
    return out.reshape(*lead, *size).to(w.dtype)


def adapt_channels(w: Tensor, in_chans: int) -> Tensor:
    """``(D, C, *k)`` -> ``(D, C', *k)`` by the :mod:`omnipatch.inflate` rule (channel axis 1)."""
    from omnipatch.inflate import inflate_channels

    c = w.shape[1]
    if c == in_chans:
        return w
    moved = w.movedim(1, -1)
    return inflate_channels(moved, c, in_chans, scale=True).movedim(-1, 1).contiguous()


def adapt_patch_embed(w: Tensor, in_chans: int, patch: tuple[int, ...]) -> tuple[Tensor, list[str]]:
    """The rules of the module docs: ``w (D, C, *k)`` -> ``(D, in_chans, *patch)`` and notes
    saying what changed (empty when the weight fits as is)."""
    notes: list[str] = []
    n_src, n = w.dim() - 2, len(patch)
    k_src = tuple(w.shape[2:])
    if n_src == 2 and n == 3:
        w = inflate_kernel(resample_kernel_2d(w, patch[1:]), patch[0])
        notes.append(f"inflated 2-D {k_src} -> 3-D {tuple(patch)} (repeat / {patch[0]})")
    elif n_src == 3 and n == 2:
        w = resample_kernel_2d(w.sum(2), patch)
        notes.append(f"3-D {k_src} summed over axis 0 -> 2-D {tuple(patch)}")
    elif n_src == n == 3:
        if k_src[0] != patch[0]:
            w = inflate_kernel(w.sum(2), patch[0])
            notes.append(f"depth {k_src[0]} -> {patch[0]} (summed, re-inflated)")
        if tuple(w.shape[3:]) != tuple(patch[1:]):
            w = torch.stack([resample_kernel_2d(w[:, :, i], patch[1:]) for i in range(w.shape[2])], 2)
            notes.append(f"patch {k_src[1:]} -> {tuple(patch[1:])} (FlexiViT resample)")
    elif n_src == n == 2:
        if k_src != tuple(patch):
            w = resample_kernel_2d(w, patch)
            notes.append(f"patch {k_src} -> {tuple(patch)} (FlexiViT resample)")
    else:
        raise OmnipatchError(f"no rule maps a {n_src}-d patch embedding to {n}-d patches {tuple(patch)}")
    if w.shape[1] != in_chans:
        notes.append(f"channels {w.shape[1]} -> {in_chans} (inflate.py rule)")
        w = adapt_channels(w, in_chans)
    return w.contiguous(), notes


def resample_pos(table: Tensor, grid: tuple[int, ...], new_grid: tuple[int, ...]) -> Tensor:
    """A position table ``(1, prod(grid), D)`` resampled to ``new_grid`` (same number of axes)."""
    grid, new_grid = tuple(grid), tuple(new_grid)
    if grid == new_grid:
        return table
    if len(grid) != len(new_grid):
        raise OmnipatchError(f"cannot resample a {len(grid)}-d position table to a {len(new_grid)}-d grid")
    D = table.shape[-1]
    x = table.reshape(1, *grid, D).movedim(-1, 1).float()
    mode = {1: "linear", 2: "bicubic", 3: "trilinear"}.get(len(grid))
    if mode is None:
        raise OmnipatchError(f"cannot resample a {len(grid)}-d position table")
    x = F.interpolate(x, size=new_grid, mode=mode, align_corners=False, antialias=len(grid) == 2)
    return x.movedim(1, -1).reshape(1, math.prod(new_grid), D).to(table.dtype)


def fit_linear(src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor, float]:
    """Least squares ``dst ~ src @ W.T + b`` (float64): ``(W (Dd, De), b (Dd,), max |residual|)``.

    Used to give the shared MAE decoder the checkpoint's decoder positions: the decoder
    projects the encoder's positions (``pos_proj``), and over a finite grid a linear map from
    one sin-cos table to another exists whenever the first spans the grid's functions.
    """
    a = torch.cat([src.double(), torch.ones(src.shape[0], 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(a, dst.double(), driver="gelsd").solution  # (De + 1, Dd)
    res = float((a @ sol - dst.double()).abs().max())
    return sol[:-1].T.float().contiguous(), sol[-1].float().contiguous(), res


def sinusoid_table(n: int, dim: int) -> Tensor:
    """VideoMAE's 1-D table ``(1, n, dim)``: ``pos / 10000^(2 (j // 2) / dim)``, sin on even
    and cos on odd channels (its position embeddings are not in its state dict)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    angle[:, 0::2] = torch.sin(angle[:, 0::2])
    angle[:, 1::2] = torch.cos(angle[:, 1::2])
    return angle.float().unsqueeze(0)
