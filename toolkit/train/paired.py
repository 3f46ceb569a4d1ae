"""Paired (cross-modal) data and training: one manifest, a column per modality.

A manifest (CSV, Parquet or JSONL) has one column per modality holding a file path
(relative to the manifest) and optional ``pair_id`` / ``label`` / ``id`` columns. A row
missing one side is still used for the other side's own objectives (e.g. its MAE); the
cross-modal CLIP term uses the rows present in every modality.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from omnipatch.batch import Batch, Sample, collate
from omnipatch.errors import OmnipatchError


def read_table(path: str | Path) -> list[dict]:
    """Rows of a CSV / Parquet / JSONL manifest as dicts of strings ('' when missing)."""
    p = Path(path)
    if not p.is_file():
        raise OmnipatchError(f"{path}: manifest not found")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    elif suffix in (".csv", ".parquet"):
        import pandas as pd

        df = pd.read_parquet(p) if suffix == ".parquet" else pd.read_csv(p, dtype=str, keep_default_na=False)
        rows = df.to_dict("records")
    else:
        raise OmnipatchError(f"{path}: a paired manifest must be .csv, .parquet or .jsonl")
    return [{k: "" if v is None or (isinstance(v, float) and v != v) else str(v) for k, v in r.items()} for r in rows]


@dataclass
class PairedBatch:
    """``batches[m]`` holds the rows present in modality m; ``rows[m] (n_m,)`` their positions
    in the pair batch of size ``n``."""

    batches: dict[str, Batch]
    rows: dict[str, Tensor]
    ids: list[str]
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device, non_blocking: bool = False) -> "PairedBatch":
        return PairedBatch({m: b.to(device, non_blocking) for m, b in self.batches.items()},
                           {m: r.to(device) for m, r in self.rows.items()}, self.ids, self.labels)


class PairedDataset(Dataset):
    """Rows of a paired manifest; item = ``{modality: Sample | None}`` plus id and label.

    Args:
        manifest: path of the manifest.
        open_modality: ``(modality, list_of_paths) -> Dataset`` (the modality's own reader
            with the run's options).
        modalities: modality names = manifest columns.
    """

    def __init__(self, manifest: str | Path, open_modality, modalities: list[str]):
        rows = read_table(manifest)
        if not rows:
            raise OmnipatchError(f"{manifest}: manifest is empty")
        missing = [m for m in modalities if m not in rows[0]]
        if missing:
            raise OmnipatchError(f"{manifest}: no column for modality {missing} (columns: {', '.join(rows[0])})")
        base = Path(manifest).parent
        self.modalities = modalities
        self.ids = [r.get("id") or r.get("pair_id") or str(i) for i, r in enumerate(rows)]
        self.labels = [r.get("label", "") for r in rows]
        self.pair_ids = [r.get("pair_id") or self.ids[i] for i, r in enumerate(rows)]
        self.index: dict[str, list[int]] = {}
        self.datasets: dict[str, Dataset] = {}
        for m in modalities:
            where: dict[str, int] = {}  # a file named by several rows is read (and cached) once
            pos = []
            for r in rows:
                v = r[m].strip()
                if v:
                    v = v if os.path.isabs(v) else str(base / v)
                    pos.append(where.setdefault(v, len(where)))
                else:
                    pos.append(-1)
            paths = list(where)
            if not paths:
                raise OmnipatchError(f"{manifest}: column {m!r} has no entries")
            self.datasets[m] = open_modality(m, paths)
            self.index[m] = pos

    def __len__(self) -> int:
        return len(self.ids)

    def cache(self) -> "PairedDataset":
        """Keep each modality's decoded samples in memory (each file decoded once)."""
        from omnipatch.train.data import CachedDataset

        self.datasets = {m: d if isinstance(d, CachedDataset) else CachedDataset(d) for m, d in self.datasets.items()}
        return self

    def __getitem__(self, i: int) -> dict:
        item = {"id": self.ids[i], "label": self.labels[i]}
        for m in self.modalities:
            j = self.index[m][i]
            item[m] = self.datasets[m][j] if j >= 0 else None
        return item


class PairedCollate:
    """Collate paired items; bad samples (not ``Sample``) are dropped from their side and reported."""

    def __init__(self, modalities: list[str]):
        self.modalities = modalities

    def __call__(self, items: list[dict]) -> tuple[PairedBatch | None, list]:
        bad, batches, rows = [], {}, {}
        for m in self.modalities:
            good = [(r, it[m]) for r, it in enumerate(items) if isinstance(it[m], Sample)]
            bad += [it[m] for it in items if it[m] is not None and not isinstance(it[m], Sample)]
            if good:
                batches[m] = collate([s for _, s in good])
                rows[m] = torch.tensor([r for r, _ in good])
        if not batches:
            return None, bad
        return PairedBatch(batches, rows, [it["id"] for it in items], [it["label"] for it in items]), bad


def common_rows(pb: PairedBatch) -> dict[str, Tensor]:
    """Per modality, the positions in its own batch of the rows present in every modality."""
    present = None
    for r in pb.rows.values():
        mask = torch.zeros(len(pb), dtype=torch.bool, device=r.device)
        mask[r] = True
        present = mask if present is None else present & mask
    out = {}
    for m, r in pb.rows.items():
        where = torch.full((len(pb),), -1, dtype=torch.long, device=r.device)
        where[r] = torch.arange(len(r), device=r.device)
        out[m] = where[present]
    return out


def paired_step(model, augment: dict, strength: float = 1.0):
    """``(paired batch, generator) -> terms``: each modality's own objectives on its rows, plus
    the cross-modal CLIP term on rows present in every modality.

    The CLIP term sees, per ``model.cross.views``, either a mildly augmented view (strength
    ``model.cross.augment``) of each sample encoded without masking (``"full"``, the default:
    what retrieval embeds) or the pooled first masked view the modality's own objectives
    already encoded (``"masked"``, as FLIP).

    A :class:`~omnipatch.train.accumulate.SplitStep`: its batch-level parts (the CLIP term, each
    modality's batch-level objectives) score the whole step's batch when accumulating.
    """
    from omnipatch.train.accumulate import SplitStep

    def encode(pb: PairedBatch, g: torch.Generator, with_terms: bool = True):
        terms, total, pooled, labels = {}, 0.0, {}, {}
        cross, common = model.cross, common_rows(pb)
        n_common = len(next(iter(common.values())))
        if cross is None or len(pb.batches) != len(model.adapters) or n_common < 2:
            cross = None  # the CLIP term needs every modality and at least two complete pairs
        for m, batch in pb.batches.items():
            n = model.n_views
            views = [augment[m](batch, g, strength) for _ in range(n)] if n > 1 else [batch]
            encoded = [model.encode_view(v, m, g) for v in views]
            t = model.sample_terms(encoded) if with_terms else {"loss": 0.0}
            terms.update({f"{m}/{k}": v for k, v in t.items() if k != "loss"})
            total = total + t["loss"]
            if model.batch_level:
                pooled[m], labels[m] = torch.stack([v.pooled for v in encoded]), encoded[0].labels
            if cross is None:
                continue
            if cross.views == "full":  # encode only the complete pairs' samples again
                view = batch.select(common[m])
                view = augment[m](view, g, cross.augment) if cross.augment > 0 and m in augment else view
                pooled[CROSS + m] = model.embed(view, m)[None]
            else:
                pooled[CROSS + m] = encoded[0].pooled[common[m]][None]
            labels[CROSS + m] = None
        terms["loss"] = total
        return terms, pooled, labels

    def score(pooled: dict, labels: dict) -> dict:
        terms, total = {}, 0.0
        for m in model.adapters:
            if m in pooled:
                t = model.batch_terms(pooled[m], labels[m])
                terms.update({f"{m}/{k}": v for k, v in t.items() if k != "loss"})
                total = total + t["loss"]
        cross = {k[len(CROSS):]: z[0] for k, z in pooled.items() if k.startswith(CROSS)}
        if cross:
            terms["cross"] = model.cross(cross)
            total = total + model.cross.weight * terms["cross"]
        terms["loss"] = total
        return terms

    step = SplitStep(encode, score, batched=True)
    return step


CROSS = "cross:"  # key prefix of the complete pairs' embeddings in a paired step's pooled dict
