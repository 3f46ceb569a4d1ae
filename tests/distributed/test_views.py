"""Masks and augmentations are a function of (seed, step, micro, rank): a 2- or 4-rank layout
and one process accumulating the same global batch draw the same samples, the same augmented
views and the same masks for every global micro-batch."""

from __future__ import annotations

import torch

from omnipatch.batch import collate
from omnipatch.masking import MaskSpec, mask_tokens
from omnipatch.modality import MODALITIES
from omnipatch.train.data import StepSampler
from omnipatch.train.engine import micro_index, step_generator
from tests.distributed.harness import build

SEED, B, STEPS, GLOBAL = 3, 4, 2, 4  # GLOBAL micro-batches per step = world x accum


def _views(ds, model, world: int) -> dict:
    """``{global micro number: (ids, augmented pixels, kept token indices)}`` as the engine
    draws them on every rank of a ``world``-rank layout."""
    accum = GLOBAL // world
    augment = MODALITIES.get("image").augment
    out = {}
    for rank in range(world):
        batches = iter(StepSampler(len(ds), B, SEED, 0, rank, world))
        for step in range(STEPS):
            for micro in range(accum):
                batch = collate([ds[i] for i in next(batches)])
                k = micro_index(step, micro, accum, world, rank)
                g = step_generator(SEED, k, torch.device("cpu"))
                view = augment(batch, g, 1.0)
                _, mask = mask_tokens(model.adapters["image"].tokenize(view), MaskSpec(), g)
                out[k] = (batch.ids, view.x, mask.idx_keep)
    return out


def test_ranks_and_accumulation_see_the_same_views(png_folder):
    model, _, (ds, _) = build(str(png_folder / "manifest.csv"), {"mae": {}})
    with torch.no_grad():
        single = _views(ds, model, 1)
        assert sorted(single) == list(range(STEPS * GLOBAL))
        for world in (2, 4):
            other = _views(ds, model, world)
            assert sorted(other) == sorted(single)
            for k, (ids, x, keep) in single.items():
                assert other[k][0] == ids, (world, k)
                torch.testing.assert_close(other[k][1], x, rtol=0, atol=0)
                assert torch.equal(other[k][2], keep), (world, k)
    # and they are draws, not constants: micro-batches differ from each other
    assert not torch.equal(single[0][2], single[1][2]) and not torch.equal(single[0][1], single[4][1])
