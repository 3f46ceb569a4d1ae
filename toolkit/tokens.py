"""The common patch-token interface every adapter produces and the core consumes."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class PatchTokens:
    """A batch of tokenised samples of one modality.

    Shapes (B batch, L tokens, D width, P values per patch target):

    Attributes:
        tokens: ``(B, L, D)`` embedded tokens; positional + modality embedding already added.
        pos: ``(1 | B, L, D)`` the positional (+ modality) embedding that was added, so the
            decoder can place mask tokens without knowing the modality.
        targets: ``(B, L, P)`` per-patch reconstruction targets, or None.
        padding_mask: ``(B, L)`` bool, True where a slot is padding (ragged audio, small
            clouds, missing cells, NaN climate cells), or None when every slot is data.
        grid: patch grid when regular (``prod(grid) == L``), used by block / tube masks.
        groups: ``(L,)`` or ``(B, L)`` integer group per token (time step, variable,
            column) for structured masks, or None.
        coords: ``(B, L, C)`` patch centres (xyz, lat/lon, time), or None.
        modality: registered modality name.
    """

    tokens: Tensor
    pos: Tensor | None = None
    targets: Tensor | None = None
    padding_mask: Tensor | None = None
    grid: tuple[int, ...] | None = None
    groups: Tensor | None = None
    coords: Tensor | None = None
    modality: str = ""

    def __post_init__(self) -> None:
        if self.tokens.dim() != 3:
            raise ValueError(f"PatchTokens.tokens must be (B, L, D), got {tuple(self.tokens.shape)}")
        B, L, _ = self.tokens.shape
        if self.grid is not None and int(torch.tensor(self.grid).prod()) != L:
            raise ValueError(f"PatchTokens.grid {self.grid} does not multiply to L={L}")
        for name in ("targets", "coords"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape[:2]) != (B, L):
                raise ValueError(f"PatchTokens.{name} must start with (B, L)=({B}, {L}), got {tuple(t.shape)}")
        if self.padding_mask is not None and tuple(self.padding_mask.shape) != (B, L):
            raise ValueError(f"PatchTokens.padding_mask must be (B, L)=({B}, {L})")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tokens.shape)  # type: ignore[return-value]

    def replace(self, **changes) -> "PatchTokens":
        """A copy with some fields changed (the dataclass is frozen)."""
        return replace(self, **changes)
