"""Step functions: ``(batch, generator) -> {"loss": ..., **terms}`` for one micro-batch, what
:func:`omnipatch.train.engine.fit` trains (a paired run's is :func:`omnipatch.train.paired.paired_step`)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from omnipatch.batch import Batch
from omnipatch.train.accumulate import SplitStep


def single_modality_step(model: nn.Module, modality: str, augment: Callable, strength: float = 1.0) -> SplitStep:
    """``(batch, generator) -> terms`` for one modality: ``model.n_views`` augmented views
    (or the batch itself when one view suffices) through ``model``; split so that
    accumulation scores batch-level objectives over the whole step (:mod:`omnipatch.train.accumulate`)."""

    def encode(batch: Batch, g: torch.Generator, with_terms: bool = True):
        n = model.n_views
        views = [augment(batch, g, strength) for _ in range(n)] if n > 1 else [batch]
        encoded = [model.encode_view(v, modality, g) for v in views]
        terms = model.sample_terms(encoded) if with_terms else {"loss": 0.0}
        if not model.batch_level:
            return terms, None, None
        return terms, torch.stack([v.pooled for v in encoded]), encoded[0].labels

    return SplitStep(encode, model.batch_terms, batched=model.batch_level)


__all__ = ["single_modality_step"]
