"""Input checks shared by the losses: one clear error for a bad shape or a batch of one."""

from __future__ import annotations

from torch import Tensor

from omnipatch.errors import OmnipatchError


class LossInputError(OmnipatchError, ValueError):
    """A loss got tensors of the wrong shape (or too small a batch); also a ``ValueError``."""


def check_batch(name: str, n: int, min_batch: int = 2) -> None:
    """The (global) batch must hold at least ``min_batch`` samples.

    Losses check this *after* gathering, on the global batch, so that every rank agrees (one
    rank raising while the others wait in a collective would hang the job).
    """
    if n < min_batch:
        raise LossInputError(f"{name} needs a batch of at least {min_batch}, got {n}")


def check_pair(name: str, z1: Tensor, z2: Tensor) -> None:
    """``z1, z2`` must both be ``(B, D)`` with the same shape."""
    if z1.dim() != 2 or z2.dim() != 2 or z1.shape != z2.shape:
        raise LossInputError(f"{name} needs two (B, D) tensors of one shape, got "
                             f"{tuple(z1.shape)} and {tuple(z2.shape)}")


def check_views(name: str, z: Tensor, min_views: int = 2) -> None:
    """``z`` must be ``(V, B, D)`` with ``V >= min_views``."""
    if z.dim() != 3:
        raise LossInputError(f"{name} needs views stacked as (V, B, D), got {tuple(z.shape)}")
    if z.shape[0] < min_views:
        raise LossInputError(f"{name} needs at least {min_views} views, got {z.shape[0]}")


__all__ = ["LossInputError", "check_batch", "check_pair", "check_views"]
