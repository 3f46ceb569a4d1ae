"""Embedding health during pretraining: is the representation collapsing?

Joint-embedding objectives can fail silently: the loss looks fine while every sample maps to
the same point (complete collapse) or to a low-dimensional subspace (dimensional collapse).
:func:`health` measures, on a batch of embeddings ``(B, D)`` (and optionally a second view):

- ``rankme``: effective rank, ``exp(entropy(sigma / ||sigma||_1))`` of the singular values
  (Garrido et al., 2023, "RankMe: Assessing the Downstream Performance of Pretrained
  Self-Supervised Representations by Their Rank", eq. 1); between 1 and ``min(B, D)``.
  ``rankme_centered``: the same after removing the batch mean, i.e. the effective number of
  directions the samples *vary* along. Transformer embeddings often share a large common
  offset, which makes the uncentred RankMe small (2-4) for perfectly usable encoders; the
  centred one is what the collapse flag uses.
- ``std``: mean per-dimension standard deviation over the batch; ``std_min`` the smallest.
  ``rel_std``: ``sqrt(total variance) / rms norm``, the spread of the samples relative to their
  size: 0 when every sample maps to the same point, whatever the scale.
- ``alignment`` (needs ``z2``): ``E ||f(x) - f(x')||^2`` over positive pairs of unit vectors,
  ``uniformity``: ``log E exp(-2 ||f(x) - f(y)||^2)`` over distinct samples (Wang & Isola,
  2020, "Understanding Contrastive Representation Learning through Alignment and Uniformity
  on the Hypersphere", eq. 4-5 with alpha = 2, t = 2). Lower is better for both; uniformity
  reaches 0 (its maximum) under complete collapse.

:func:`collapsed` turns these into one flag for the log and the progress bar.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from omnipatch.errors import OmnipatchError

# Defaults of :func:`collapsed`. Measured on the held-out digits (examples/objectives.py):
# the random-init encoder and all eleven trained ones have rel_std 0.009-0.19 and
# rankme_centered 19-54; a collapsed encoder has rel_std ~0 (float noise) or varies along a
# single direction (rankme_centered ~1).
MIN_REL_STD = 1e-3
MIN_RANKME = 1.5


def rankme(z: Tensor, eps: float = 1e-7) -> float:
    """Effective rank of ``z (B, D)`` (RankMe, Garrido et al., 2023)."""
    s = torch.linalg.svdvals(z.float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(z1: Tensor, z2: Tensor) -> float:
    """``E ||u - v||^2`` over positive pairs of unit vectors, ``z1, z2 (B, D)`` (Wang & Isola, eq. 4)."""
    u, v = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return float((u - v).pow(2).sum(1).mean())


def uniformity(z: Tensor, t: float = 2.0) -> float:
    """``log E_{i != j} exp(-t ||u_i - u_j||^2)`` over unit vectors, ``z (B, D)`` (Wang & Isola, eq. 5)."""
    u = F.normalize(z.float(), dim=1)
    sq = torch.pdist(u).pow(2)
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel()))


@torch.no_grad()
def health(z1: Tensor, z2: Tensor | None = None) -> dict[str, float]:
    """Collapse diagnostics of a batch of embeddings.

    Args:
        z1: ``(B, D)`` embeddings, B >= 2 (pooled encoder output or projector output).
        z2: optional ``(B, D)`` embeddings of a second view of the same samples (for
            ``alignment``; ``uniformity`` then averages both views).

    Returns:
        ``{"rankme", "rankme_centered", "std", "std_min", "rel_std", "uniformity"}`` plus
        ``"alignment"`` when ``z2`` is given; plain floats, ready for a JSON log.
    """
    if z1.dim() != 2 or z1.shape[0] < 2:
        raise OmnipatchError(f"health needs (B, D) embeddings with B >= 2, got {tuple(z1.shape)}")
    if z2 is not None and z2.shape != z1.shape:
        raise OmnipatchError(f"health: second view {tuple(z2.shape)} differs from the first {tuple(z1.shape)}")
    z = z1.detach().float()
    B, D = z.shape
    std = z.std(0)
    centred = z - z.mean(0)
    r = rankme(z)
    out = {
        "rankme": r,
        "rankme_centered": rankme(centred),
        "std": float(std.mean()),
        "std_min": float(std.min()),
        "rel_std": float(centred.pow(2).sum(1).mean().sqrt() / z.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)),
        "uniformity": uniformity(z),
    }
    if z2 is not None:
        z2 = z2.detach().float()
        out["uniformity"] = 0.5 * (out["uniformity"] + uniformity(z2))
        out["alignment"] = alignment(z, z2)
    return out


def collapsed(metrics: dict[str, float], min_rel_std: float = MIN_REL_STD, min_rank: float = MIN_RANKME) -> bool:
    """True when :func:`health`'s metrics say the embeddings collapsed: every sample at
    (nearly) the same point (``rel_std < min_rel_std``), or the samples varying along (nearly)
    one direction only (``rankme_centered < min_rank``)."""
    return metrics["rel_std"] < min_rel_std or metrics["rankme_centered"] < min_rank


def describe(metrics: dict[str, float]) -> str:
    """A short text for the progress bar, e.g. ``rank 21.3 rel_std 0.016`` (+ `` COLLAPSE``)."""
    text = f"rank {metrics['rankme_centered']:.1f} rel_std {metrics['rel_std']:.3f}"
    return text + (" COLLAPSE" if collapsed(metrics) else "")


def single_modality_monitor(model: torch.nn.Module, modality: str, augment: Callable,
                            strength: float = 1.0) -> Callable:
    """``(batch, generator) -> health(...)`` for the engine, mirroring its
    ``single_modality_step``: two augmented views of the batch through ``model.embed``
    (adapter + encoder, no masking), in float32 and without gradients.

    Give it its own generator (not the training step's) so that monitoring never changes
    the training run.
    """

    @torch.no_grad()
    def monitor(batch, generator: torch.Generator) -> dict[str, float]:
        z1 = model.embed(augment(batch, generator, strength), modality).float()
        z2 = model.embed(augment(batch, generator, strength), modality).float()
        return health(z1, z2)

    return monitor


__all__ = ["single_modality_monitor", "health", "collapsed", "describe", "rankme", "alignment", "uniformity", "MIN_REL_STD", "MIN_RANKME"]
