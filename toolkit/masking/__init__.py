"""Masking strategies returning index tensors (see :mod:`omnipatch.masking.reference`).

``make_mask(tokens, spec, generator)`` picks the strategy by name from the
:data:`MASKS` registry; CUDA tensors will dispatch to fused kernels when available.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnipatch.errors import OmnipatchError
from omnipatch.masking.reference import (
    MaskResult, block_mask, gather_tokens, group_mask, random_mask, select, tube_mask, unshuffle,
)
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
    B, L, _ = t.shape
    return random_mask(B, L, spec.ratio, padding_mask=t.padding_mask, generator=g, device=t.tokens.device)


@MASKS.register("block", "contiguous blocks over the N-d patch grid")
def _block(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    if t.grid is None:
        raise OmnipatchError(f"block masking needs a patch grid; modality {t.modality!r} has none")
    return block_mask(t.shape[0], t.grid, spec.ratio, block_size=spec.block_size,
                      padding_mask=t.padding_mask, generator=g, device=t.tokens.device)


@MASKS.register("tube", "one spatial mask shared over time (VideoMAE)")
def _tube(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    if t.grid is None or len(t.grid) < 2:
        raise OmnipatchError(f"tube masking needs a (time, ...) grid; modality {t.modality!r} has {t.grid}")
    return tube_mask(t.shape[0], t.grid, spec.ratio, padding_mask=t.padding_mask,
                     generator=g, device=t.tokens.device)


@MASKS.register("group", "whole groups hidden (variables, columns, time steps)")
def _group(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    if t.groups is None:
        raise OmnipatchError(f"group masking needs token groups; modality {t.modality!r} has none")
    return group_mask(t.groups, spec.ratio, B=t.shape[0], padding_mask=t.padding_mask, generator=g)


def make_mask(tokens: PatchTokens, spec: MaskSpec, generator: torch.Generator | None = None) -> MaskResult:
    return MASKS.get(spec.strategy)(tokens, spec, generator)


__all__ = [
    "MASKS", "MaskResult", "MaskSpec", "make_mask", "random_mask", "block_mask", "tube_mask",
    "group_mask", "select", "gather_tokens", "unshuffle",
]
