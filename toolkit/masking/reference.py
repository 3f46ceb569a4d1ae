"""Masking in plain torch: the CPU path and the oracle for the GPU kernels.

Every strategy reduces to the same two steps, batched with no Python loop per sample:

1. **keys** ``(B, L)``: a random float per token; lower keys are kept. Structure comes from
   how keys are drawn: one key per token (random), per coarse cell upsampled to the grid
   (block), per spatial position broadcast over time (tube), per group (group). Slots that
   must never be visible (padding) get key ``+inf``.
2. **selection** (:func:`select`): ``argsort`` of the keys; the first ``K`` are kept, where
   ``K = max_b k_b`` and ``k_b`` is sample b's visible budget. Kept slots beyond ``k_b``
   (only when samples have different budgets, e.g. ragged padding) are flagged not visible:
   the encoder ignores them and the decoder replaces them with the mask token.

Shapes: ``idx_keep (B, K)``, ``idx_mask (B, L-K)``, ``idx_restore (B, L)`` such that
``cat([keep, mask])[idx_restore]`` is the original order; ``visible (B, L)`` bool;
``keep_valid (B, K)`` bool (``visible`` gathered at ``idx_keep``); ``loss_mask (B, L)``
float, 1 where a token is hidden *and* is data (padding is never scored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MaskResult:
    idx_keep: Tensor
    idx_mask: Tensor
    idx_restore: Tensor
    visible: Tensor
    keep_valid: Tensor
    loss_mask: Tensor

    @property
    def num_keep(self) -> int:
        return self.idx_keep.shape[1]


def _rand(shape, generator: torch.Generator | None, device) -> Tensor:
    # draw on the generator's device, then move: keeps CPU/GPU seeds reproducible
    gdev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gdev).to(device)


def budget(valid: Tensor, mask_ratio: float) -> Tensor:
    """Visible tokens per sample: ``round((1 - ratio) * n_valid)``, at least 1 if any data."""
    n_valid = valid.sum(dim=1)
    k = torch.round(n_valid.float() * (1.0 - mask_ratio)).long()
    return torch.minimum(k.clamp_min(1), n_valid)


def select(keys: Tensor, k: Tensor, padding_mask: Tensor | None = None) -> MaskResult:
    """Keep the ``k[b]`` lowest keys of each row.

    Args:
        keys: ``(B, L)`` float; ``+inf`` marks slots that must not be visible.
        k: ``(B,)`` long, visible budget per sample.
        padding_mask: ``(B, L)`` bool, True where a slot is padding (never scored).
    """
    B, L = keys.shape
    K = int(k.max()) if B else 0
    # ties only occur where they do not matter (equal tube/group keys cut at whole tubes or
    # groups, +inf padding), so the faster unstable sort is safe
    idx_shuffle = torch.argsort(keys, dim=1)
    # inverse permutation by scatter instead of a second argsort
    idx_restore = torch.empty_like(idx_shuffle)
    ar = torch.arange(L, device=keys.device).expand(B, L)
    idx_restore.scatter_(1, idx_shuffle, ar)
    idx_keep, idx_mask = idx_shuffle[:, :K], idx_shuffle[:, K:]
    keep_valid = torch.arange(K, device=keys.device).expand(B, K) < k.unsqueeze(1)
    visible = idx_restore < k.unsqueeze(1)
    hidden = ~visible
    if padding_mask is not None:
        hidden = hidden & ~padding_mask
    return MaskResult(idx_keep, idx_mask, idx_restore, visible, keep_valid, hidden.float())


def prepare(keys: Tensor, mask_ratio: float, padding_mask: Tensor | None,
            k: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Padding keys to ``+inf`` and the default budget: the inputs of :func:`select`."""
    if padding_mask is not None:
        keys = keys.masked_fill(padding_mask, float("inf"))
    if k is None:
        valid = torch.ones_like(keys, dtype=torch.bool) if padding_mask is None else ~padding_mask
        k = budget(valid, mask_ratio)
    return keys, k


def _finish(keys: Tensor, mask_ratio: float, padding_mask: Tensor | None, k: Tensor | None = None) -> MaskResult:
    keys, k = prepare(keys, mask_ratio, padding_mask, k)
    return select(keys, k, padding_mask)


def random_mask(
    B: int, L: int, mask_ratio: float, *, padding_mask: Tensor | None = None,
    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
) -> MaskResult:
    """Uniformly random masking (MAE): each token hidden with probability ``mask_ratio``."""
    _check_ratio(mask_ratio)
    return _finish(random_keys(B, L, generator=generator, device=device), mask_ratio, padding_mask)


def random_keys(B: int, L: int, *, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Tensor:
    """Keys of :func:`random_mask`: ``(B, L)`` uniform."""
    return _rand((B, L), generator, device)


def block_mask(
    B: int, grid: tuple[int, ...], mask_ratio: float, *, block_size: int | tuple[int, ...] = 2,
    padding_mask: Tensor | None = None, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> MaskResult:
    """Contiguous blocks over an N-d patch grid, exact ratio.

    Keys are drawn on a coarse grid of ``block_size`` cells, shifted by a random offset per
    sample and upsampled to the patch grid, plus a tiny per-token jitter that only breaks
    ties inside the block that straddles the budget.
    """
    _check_ratio(mask_ratio)
    keys = block_keys(B, grid, block_size, generator=generator, device=device)
    return _finish(keys, mask_ratio, padding_mask)


def block_keys(B: int, grid: tuple[int, ...], block_size: int | tuple[int, ...] = 2, *,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Keys of :func:`block_mask`: ``(B, prod(grid))``, constant over shifted coarse blocks."""
    bs = (block_size,) * len(grid) if isinstance(block_size, int) else tuple(block_size)
    if len(bs) != len(grid):
        raise ValueError(f"block_size {bs} has {len(bs)} dims, grid {grid} has {len(grid)}")
    L = math.prod(grid)
    coarse = tuple(math.ceil(g / b) + 1 for g, b in zip(grid, bs))
    ck = _rand((B, *coarse), generator, device)
    offs = [(_rand((B,), generator, device) * b).long() for b in bs]
    # index of the coarse cell of each patch coordinate, per sample: (B, g_d) per dim
    idx = [(torch.arange(g, device=device).unsqueeze(0) + o.unsqueeze(1)) // b
           for g, b, o in zip(grid, bs, offs)]
    keys = ck
    for d, ix in enumerate(idx):  # gather along dim d+1 (batched)
        shape = [B] + [1] * len(grid)
        shape[d + 1] = ix.shape[1]
        ix = ix.view(shape).expand(*keys.shape[: d + 1], ix.shape[1], *keys.shape[d + 2:])
        keys = torch.gather(keys, d + 1, ix)
    keys = keys.reshape(B, L) + 1e-3 * _rand((B, L), generator, device) / max(coarse)
    return keys


def tube_mask(
    B: int, grid: tuple[int, ...], mask_ratio: float, *, padding_mask: Tensor | None = None,
    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
) -> MaskResult:
    """One spatial mask shared along the leading (time) axis of the grid (VideoMAE)."""
    _check_ratio(mask_ratio)
    keys, k = tube_keys(B, grid, mask_ratio, padding_mask=padding_mask, generator=generator, device=device)
    return _finish(keys, mask_ratio, padding_mask, k=k)


def tube_keys(B: int, grid: tuple[int, ...], mask_ratio: float, *, padding_mask: Tensor | None = None,
              generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Keys ``(B, L)`` of :func:`tube_mask` (one per spatial position, shared over time) and
    the budget ``k (B,)`` in whole tubes."""
    T, S = grid[0], math.prod(grid[1:])
    keys = _rand((B, 1, S), generator, device).expand(B, T, S).reshape(B, T * S)
    # budget in whole tubes so the kept set is exactly a set of tubes
    k_tubes = max(1, round(S * (1.0 - mask_ratio)))
    k = torch.full((B,), k_tubes * T, dtype=torch.long, device=device)
    if padding_mask is not None:
        k = torch.minimum(k, (~padding_mask).sum(1))
    return keys, k


def group_mask(
    groups: Tensor, mask_ratio: float, *, B: int | None = None, padding_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MaskResult:
    """Hide whole groups of tokens (variables, columns, time steps).

    Args:
        groups: ``(L,)`` or ``(B, L)`` integer group ids in ``[0, G)``.
        mask_ratio: fraction of *groups* hidden (at least one group stays visible).
    """
    _check_ratio(mask_ratio)
    keys, k = group_keys(groups, mask_ratio, B=B, padding_mask=padding_mask, generator=generator)
    return _finish(keys, mask_ratio, padding_mask, k=k)


def group_keys(groups: Tensor, mask_ratio: float, *, B: int | None = None, padding_mask: Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Keys ``(B, L)`` of :func:`group_mask` (one per group) and the budget ``k (B,)``: the
    tokens of the ``max(1, round((1 - ratio) G))`` lowest-key groups."""
    if groups.dim() == 1:
        if B is None:
            raise ValueError("group_mask needs B when groups is (L,)")
        groups = groups.unsqueeze(0).expand(B, -1)
    B, L = groups.shape
    G = int(groups.max()) + 1
    gkeys = _rand((B, G), generator, groups.device)
    keys = torch.gather(gkeys, 1, groups.long())
    # visible budget: tokens of the lowest-key groups, max(1, round((1-r) G)) groups
    g_keep = max(1, round(G * (1.0 - mask_ratio)))
    thresh = torch.sort(gkeys, dim=1).values[:, g_keep - 1 : g_keep]
    vis = keys <= thresh
    if padding_mask is not None:
        vis = vis & ~padding_mask
    return keys, vis.sum(1)


def _check_ratio(r: float) -> None:
    if not 0.0 <= r < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {r}")


def gather_tokens(x: Tensor, idx: Tensor, pos: Tensor | None = None) -> Tensor:
    """``x (B, L, D)``, ``idx (B, K)`` -> ``(B, K, D)``, plus ``pos (1|B, L, D)`` at the same
    rows when given (``gather(x + pos)``, computed on the K rows only).

    One ``index_select`` of rows of the flattened ``(B*L, D)`` tensor: no ``(B, K, D)`` int64
    index is materialised (MAE's ``gather(..., idx.repeat(1, 1, D))`` builds one).
    """
    B, L, D = x.shape
    flat = (idx + torch.arange(B, device=idx.device).unsqueeze(1) * L).reshape(-1)
    out = x.reshape(B * L, D).index_select(0, flat).reshape(B, idx.shape[1], D)
    if pos is not None:  # (1, L, D) is indexed by token, (B, L, D) by flat row
        p = pos.reshape(-1, D).index_select(0, flat if pos.shape[0] == B else idx.reshape(-1))
        out = out + p.reshape(out.shape)
    return out


def unshuffle(visible_out: Tensor, mask_token: Tensor, res: MaskResult, pos: Tensor | None = None) -> Tensor:
    """Decoder prologue: visible outputs back to full order, mask token elsewhere.

    Args:
        visible_out: ``(B, K, D)`` encoder outputs for ``res.idx_keep``.
        mask_token: ``(D,)`` or ``(1, 1, D)`` learned mask token.
        pos: ``(1|B, L, D)`` decoder positional embedding added to every slot, optional.
    Returns:
        ``(B, L, D)``; slots not visible (including kept-but-flagged ones) hold the mask token.
    """
    B, K, D = visible_out.shape
    L = res.idx_restore.shape[1]
    tok = mask_token.reshape(1, 1, D).to(visible_out.dtype)
    # one pass: a mask-token canvas, kept rows copied in at idx_keep (distinct per row); kept
    # slots flagged not visible carry the mask token too
    src = torch.where(res.keep_valid.unsqueeze(-1), visible_out, tok).reshape(B * K, D)
    flat = (res.idx_keep + torch.arange(B, device=res.idx_keep.device).unsqueeze(1) * L).reshape(-1)
    out = tok.expand(B, L, D).reshape(B * L, D).index_copy(0, flat, src).reshape(B, L, D)
    return out if pos is None else out + pos
