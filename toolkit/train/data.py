"""Deterministic batching: the order of step ``s`` depends only on (seed, s).

That is what makes ``--resume`` continue exactly: no loader state to save, the sampler just
starts at the right batch. Bad samples (``Skipped``) are dropped by the collate and
reported to the engine.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from omnipatch.batch import Batch, Sample, collate


class StepSampler(Sampler[list[int]]):
    """Yields index lists for micro-batches ``start, start+1, ...`` forever.

    Epoch ``e`` is a permutation drawn from ``seed + e``; the last partial batch is dropped.
    With ``world > 1`` this rank gets every ``world``-th micro-batch (``i % world == rank``).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        if n < batch_size:
            raise ValueError(f"data set has {n} samples, fewer than the batch size {batch_size}")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        self.rank, self.world = rank, world
        self.per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[int]]:
        i = self.start
        while True:
            epoch, j = divmod(i, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
            while j < self.per_epoch:
                if i % self.world == self.rank:  # micro-batch i belongs to rank i mod world
                    yield perm[j * self.batch_size:(j + 1) * self.batch_size].tolist()
                j += 1
                i += 1

    def __len__(self) -> int:  # endless; len is per epoch for information
        return self.per_epoch


class CollateSkipping:
    """Collate that drops ``Skipped`` entries; returns ``(batch or None, skipped list)``."""

    def __call__(self, items: list) -> tuple[Batch | None, list]:
        good = [s for s in items if isinstance(s, Sample)]
        bad = [s for s in items if not isinstance(s, Sample)]
        return (collate(good) if good else None), bad


class CachedDataset(Dataset):
    """Memoises decoded samples (single-process loading of small data sets)."""

    def __init__(self, base: Dataset):
        self.base, self._cache = base, {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        if i not in self._cache:
            self._cache[i] = self.base[i]
        return self._cache[i]

    def __getattr__(self, name):  # expose the base dataset's attributes (classes, entries)
        if name in ("base", "_cache"):
            raise AttributeError(name)
        return getattr(self.base, name)


def step_loader(dataset: Dataset, batch_size: int, seed: int, start: int = 0, num_workers: int = 0,
                collate=None, rank: int = 0, world: int = 1) -> DataLoader:
    return DataLoader(dataset, batch_sampler=StepSampler(len(dataset), batch_size, seed, start, rank, world),
                      collate_fn=collate or CollateSkipping(), num_workers=num_workers,
                      persistent_workers=num_workers > 0)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """In-order batches over the whole data set (embedding, evaluation)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=CollateSkipping(),
                      num_workers=num_workers)
