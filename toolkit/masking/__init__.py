"""Masking strategies returning index tensors (see :mod:`omnipatch.masking.reference`).

``make_mask(tokens, spec, generator)`` picks the strategy by name from the :data:`MASKS`
registry; ``mask_tokens`` also gathers the visible tokens. Both, and ``gather_tokens`` /
``unshuffle`` / ``select``, dispatch by device: CUDA tensors go to the fused Triton kernels of
:mod:`omnipatch.masking.triton` when Triton imports, everything else to the plain-torch
reference (the CPU path and the oracle).

On CUDA the random stream differs from the CPU one: keys are drawn on the device from one
seed taken from ``generator`` (a CPU generator stays on the CPU: no host sync, no copy), and
random masking draws its keys inside the kernel. The same generator state gives the same mask
on the same kind of device. The kept count ``K`` is known without a sync for random, block and
tube masks on unpadded tokens; padding or group masks read ``max(k)`` back (one sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from omnipatch.errors import OmnipatchError
from omnipatch.masking import reference as ref
from omnipatch.masking.reference import MaskResult, block_mask, group_mask, random_mask, tube_mask
from omnipatch.registry import Registry
from omnipatch.tokens import PatchTokens

MASKS: Registry = Registry("mask strategy")


@dataclass(frozen=True)
class MaskSpec:
    """Which tokens the encoder sees.

    Attributes:
        strategy: registered name (``random``, ``block``, ``tube``, ``group``).
        ratio: fraction hidden (0.75 as in MAE; 0.9 for video).
        block_size: block edge in patches, for ``block``.
    """

    strategy: str = "random"
    ratio: float = 0.75
    block_size: int = 2


@MASKS.register("random", "each token hidden independently (MAE)")
def _random(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    return _strategy(t, spec, g)[1]


@MASKS.register("block", "contiguous blocks over the N-d patch grid")
def _block(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    return _strategy(t, spec, g)[1]


@MASKS.register("tube", "one spatial mask shared over time (VideoMAE)")
def _tube(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    return _strategy(t, spec, g)[1]


@MASKS.register("group", "whole groups hidden (variables, columns, time steps)")
def _group(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    return _strategy(t, spec, g)[1]


def make_mask(tokens: PatchTokens, spec: MaskSpec, generator: torch.Generator | None = None) -> MaskResult:
    """The :class:`MaskResult` of strategy ``spec.strategy`` (registered in :data:`MASKS`)."""
    return MASKS.get(spec.strategy)(tokens, spec, generator)


def mask_tokens(tokens: PatchTokens, spec: MaskSpec, generator: torch.Generator | None = None,
                pos: Tensor | None = None) -> tuple[Tensor, MaskResult]:
    """Mask and gather in one go: ``(x_vis (B, K, D), MaskResult)``.

    ``x_vis = tokens.tokens[b, idx_keep[b]] (+ pos[., idx_keep[b]])``. On CUDA the built-in
    strategies run as one fused kernel (keys + selection + gather, plus the key draw for
    random masks); a plugin strategy, or any CPU tensor, runs ``make_mask`` + ``gather_tokens``.
    """
    if _BUILTIN.get(spec.strategy) is MASKS.get(spec.strategy) and _fused(tokens.tokens):
        x_vis, res = _strategy(tokens, spec, generator, gather=True, pos=pos)
        return x_vis, res
    res = make_mask(tokens, spec, generator)
    return gather_tokens(tokens.tokens, res.idx_keep, pos), res


# ------------------------------------------------------------------------ device dispatch
def select(keys: Tensor, k: Tensor, padding_mask: Tensor | None = None) -> MaskResult:
    """Keep the ``k[b]`` lowest keys of each row (see :func:`omnipatch.masking.reference.select`)."""
    if _fused(keys):
        return _kernels().select(keys, k, padding_mask)
    return ref.select(keys, k, padding_mask)


def gather_tokens(x: Tensor, idx: Tensor, pos: Tensor | None = None) -> Tensor:
    """``x (B, L, D)``, ``idx (B, K)`` (distinct per row) -> ``(B, K, D)`` (+ ``pos`` rows)."""
    if _fused(x):
        return _kernels().gather_tokens(x, idx, pos)
    return ref.gather_tokens(x, idx, pos)


def unshuffle(visible_out: Tensor, mask_token: Tensor, res: MaskResult, pos: Tensor | None = None) -> Tensor:
    """Decoder prologue ``(B, K, D) -> (B, L, D)``, mask token at hidden slots (+ ``pos``)."""
    if _fused(visible_out):
        return _kernels().unshuffle(visible_out, mask_token, res, pos)
    return ref.unshuffle(visible_out, mask_token, res, pos)


@lru_cache(maxsize=1)
def _kernels():
    try:
        from omnipatch.masking import triton as kernels
    except ImportError:  # no triton on this platform: the reference serves CUDA too
        return None
    return kernels


def _fused(t: Tensor) -> bool:
    return t.is_cuda and _kernels() is not None


def _device_generator(g: torch.Generator | None, device: torch.device) -> tuple[torch.Generator, int | None]:
    """A generator on ``device`` and the seed it was made from, taken from ``g`` without
    touching the GPU (a CPU or default generator gives one CPU draw; a device generator is
    used as is and has no seed to give)."""
    if g is not None and g.device.type != "cpu":
        return g, None
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    return torch.Generator(device).manual_seed(seed), seed


def _strategy(t: PatchTokens, spec: MaskSpec, g, gather: bool = False, pos: Tensor | None = None):
    """Keys and budget of a built-in strategy, then selection (and gather) on the device path.

    Returns ``(x_vis | None, MaskResult)``.
    """
    B, L, _ = t.shape
    dev, pad, r = t.tokens.device, t.padding_mask, spec.ratio
    name = spec.strategy
    if name == "block" and t.grid is None:
        raise OmnipatchError(f"block masking needs a patch grid; modality {t.modality!r} has none")
    if name == "tube" and (t.grid is None or len(t.grid) < 2):
        raise OmnipatchError(f"tube masking needs a (time, ...) grid; modality {t.modality!r} has {t.grid}")
    if name == "group" and t.groups is None:
        raise OmnipatchError(f"group masking needs token groups; modality {t.modality!r} has none")
    if not _fused(t.tokens):
        if name == "random":
            res = random_mask(B, L, r, padding_mask=pad, generator=g, device=dev)
        elif name == "block":
            res = block_mask(B, t.grid, r, block_size=spec.block_size, padding_mask=pad, generator=g, device=dev)
        elif name == "tube":
            res = tube_mask(B, t.grid, r, padding_mask=pad, generator=g, device=dev)
        else:
            res = group_mask(t.groups, r, B=B, padding_mask=pad, generator=g)
        return (gather_tokens(t.tokens, res.idx_keep, pos) if gather else None), res
    # CUDA: keys drawn on the device (or in the kernel), K known statically where possible
    ref._check_ratio(r)
    kern = _kernels()
    gd, seed = _device_generator(g, dev)
    K = None
    if name == "random" and pad is None and gather and seed is not None:
        k = _static_budget(L, r)
        x_vis, res = kern.mask_gather(t.tokens, k, seed=seed, pos=pos, K=k)
        return x_vis, res
    if name == "random":
        keys, k = ref.prepare(ref.random_keys(B, L, generator=gd, device=dev), r, pad)
        K = _static_budget(L, r) if pad is None else None
    elif name == "block":
        keys, k = ref.prepare(ref.block_keys(B, t.grid, spec.block_size, generator=gd, device=dev), r, pad)
        K = _static_budget(L, r) if pad is None else None
    elif name == "tube":
        keys, k = ref.tube_keys(B, t.grid, r, padding_mask=pad, generator=gd, device=dev)
        keys, k = ref.prepare(keys, r, pad, k)
        S = math.prod(t.grid[1:])
        K = max(1, round(S * (1.0 - r))) * t.grid[0] if pad is None else None
    else:
        keys, k = ref.group_keys(t.groups.to(dev), r, B=B, padding_mask=pad, generator=gd)
        keys, k = ref.prepare(keys, r, pad, k)
    if gather:
        return kern.mask_gather(t.tokens, k, keys=keys, padding_mask=pad, pos=pos, K=K)
    return None, kern.select(keys, k, pad, K=K)


def _static_budget(L: int, r: float) -> int:
    """``budget`` of an unpadded row, computed on the CPU exactly as the reference does."""
    return int(ref.budget(torch.ones(1, L, dtype=torch.bool), r)[0])


_BUILTIN = {"random": _random, "block": _block, "tube": _tube, "group": _group}


__all__ = [
    "MASKS", "MaskResult", "MaskSpec", "make_mask", "mask_tokens", "random_mask", "block_mask",
    "tube_mask", "group_mask", "select", "gather_tokens", "unshuffle",
]
