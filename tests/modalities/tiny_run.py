"""A tiny untrained model for a modality's data set, as a :class:`~omnipatch.api.Pretrained`
run (no pretraining, no checkpoint on disk): what the output round-trip tests embed with."""

from __future__ import annotations

import torch

from omnipatch.api import Pretrained
from omnipatch.encoder import EncoderConfig
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MaskSpec
from omnipatch.modality import ADAPTERS, MODALITIES
from omnipatch.model import OmniModel

DIM = 32


def tiny_run(name: str, dataset, options: dict, seed: int = 0) -> Pretrained:
    """Encoder 32 wide, 1 block; the adapter fitted to ``dataset`` with ``options``."""
    spec = MODALITIES.get(name)
    torch.manual_seed(seed)
    adapter = ADAPTERS.get(spec.adapter)(dim=DIM, **spec.adapter_kwargs(dataset, {**spec.options, **options}))
    model = OmniModel({name: adapter}, EncoderConfig(DIM, 1, 2), DecoderConfig(16, 1, 2), {"mae": {}},
                      {name: MaskSpec()})
    cfg = {"model": model.config(), "modality": name, "run": {"data": {"modality": name, "options": options}}}
    return Pretrained(model.eval(), cfg, [name])


@torch.no_grad()
def tokens_of(pre: Pretrained, dataset, i: int) -> tuple:
    """``(PatchTokens, encoder output (L, D))`` of sample ``i`` alone, float32, no autocast:
    the reference the written files are compared with."""
    from omnipatch.batch import collate

    t, out = pre.model.forward_tokens(collate([dataset[i]]), pre.modality)
    return t, out[0].float()
