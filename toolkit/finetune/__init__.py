"""Fine-tuning a pretrained run on labelled data: the library behind ``omnipatch finetune``.

``from omnipatch.finetune import finetune, FinetuneConfig, load_finetuned`` (see
:mod:`omnipatch.finetune.run`); labels and their metrics live in :mod:`omnipatch.finetune.labels`.
"""

from __future__ import annotations

from omnipatch.finetune.labels import read_labels, sample_ids
from omnipatch.finetune.run import (
    FinetuneConfig,
    Finetuned,
    FinetuneModel,
    build_head,
    finetune,
    layer_decay_groups,
    load_backbone,
    load_finetuned,
    open_for,
    set_trainable,
)

__all__ = ["FinetuneConfig", "finetune", "load_finetuned", "Finetuned", "FinetuneModel", "build_head",
           "load_backbone", "layer_decay_groups", "set_trainable", "read_labels", "sample_ids", "open_for"]
