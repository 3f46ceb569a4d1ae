"""Labels for fine-tuning: read, match to sample ids, encode per task, split, score.

A label is a class name (``classification``), a ``;``-separated list of class names
(``classification`` with ``multi_label``), a number (``regression``) or the path of a class
map (``segmentation``: PNG / TIFF / ``.npy`` / NIfTI, relative to the labels CSV; the
integer values in the maps are the classes).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from omnipatch.batch import Sample, collate
from omnipatch.errors import OmnipatchError

MULTI_SEP = ";"
KINDS = {"classification": "class", "regression": "value", "segmentation": "map"}


def read_labels(path) -> dict[str, str]:
    """``{id: label}`` from a CSV with columns ``id`` and ``label``."""
    p = Path(path)
    if not p.is_file():
        raise OmnipatchError(f"{path}: labels file not found")
    try:
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise OmnipatchError(f"{path}: not a readable CSV ({e})") from None
    if not rows or not {"id", "label"} <= set(rows[0]):
        raise OmnipatchError(f"{path}: needs columns 'id' and 'label' and at least one row")
    out: dict[str, str] = {}
    for r in rows:
        if r["id"] in out and out[r["id"]] != r["label"]:
            raise OmnipatchError(f"{path}: id {r['id']!r} has two labels ({out[r['id']]!r}, {r['label']!r})")
        if r["label"] not in (None, ""):
            out[r["id"]] = r["label"]
    return out


def sample_ids(dataset) -> list[str]:
    """Sample ids of a dataset, without decoding when the dataset lists them."""
    n = len(dataset)
    for attr in ("ids", "times"):
        v = getattr(dataset, attr, None)
        if isinstance(v, list) and len(v) == n:
            return [str(x) for x in v]
    entries = getattr(dataset, "entries", None)
    if isinstance(entries, list) and len(entries) == n:
        return [e.id for e in entries]
    return [s.id if isinstance(s, Sample) else f"#{i}" for i, s in ((i, dataset[i]) for i in range(n))]


def _dataset_labels(dataset) -> dict[int, str]:
    n = len(dataset)
    entries = getattr(dataset, "entries", None)
    if isinstance(entries, list) and len(entries) == n and any(getattr(e, "label", None) is not None for e in entries):
        return {i: e.label for i, e in enumerate(entries) if e.label is not None}
    names = {v: k for k, v in (getattr(dataset, "classes", None) or {}).items()}
    out = {}
    for i in range(n):
        s = dataset[i]
        if isinstance(s, Sample) and s.label is not None:
            out[i] = names.get(s.label, str(s.label))
    return out


MATCHES = ("exact", "name", "stem")


def match_ids(ids: list[str], labels: dict, match: str = "exact", report: list | None = None) -> dict[int, object]:
    """Dataset index -> label.

    ``exact`` (the default) matches a sample id, or the id before ``#`` (crops, frames of a
    labelled file), to a label id character for character. ``name`` / ``stem`` are explicit
    fallbacks that compare file names (``a/00001.png`` == ``b/00001.png``) or stems: they refuse
    label ids that share a name, and say how many samples matched (``report`` gets the line).
    """
    if match not in MATCHES:
        raise OmnipatchError(f"--match-ids must be one of {', '.join(MATCHES)}, got {match!r}")
    base = lambda s: str(s).split("#")[0]
    key = {"exact": base, "name": lambda s: Path(base(s)).name, "stem": lambda s: Path(base(s)).stem}[match]
    by: dict[str, object] = {}
    if match == "exact":
        by = {str(k): v for k, v in labels.items()}
    else:
        owner: dict[str, str] = {}
        for k, v in labels.items():
            kk = key(k)
            if kk in owner and owner[kk] != str(k):
                raise OmnipatchError(f"label ids {owner[kk]!r} and {str(k)!r} have the same {match} {kk!r}: "
                                     f"matching by {match} is ambiguous; use exact ids")
            owner[kk], by[kk] = str(k), v
    found = {}
    for i, s in enumerate(ids):
        if s in by:
            found[i] = by[s]
        elif key(s) in by:
            found[i] = by[key(s)]
    if not found:
        hint = "" if match != "exact" else "; ids must match exactly (--match-ids name|stem compares file names)"
        raise OmnipatchError(f"no sample id matches a label id by {match} (data ids look like {ids[0]!r}, "
                             f"label ids like {next(iter(labels))!r}){hint}")
    if report is not None:
        report.append(f"labels: {len(found)} of {len(ids)} samples matched a label id by {match}")
    return found


def read_mask(path: str, read_target=None) -> np.ndarray:
    """An integer class map from ``.npy`` or, through the modality's
    :attr:`~omnipatch.modality.ModalitySpec.read_target`, its own file formats."""
    p = str(path)
    try:
        if p.endswith(".npy"):
            arr = np.load(p, allow_pickle=False)
        elif read_target is not None:
            arr = np.asarray(read_target(p))
        else:
            raise OmnipatchError(f"{p}: this modality reads class maps from .npy files only")
    except OmnipatchError:
        raise
    except FileNotFoundError:
        raise OmnipatchError(f"{p}: class map not found") from None
    except Exception as e:
        raise OmnipatchError(f"{p}: not a readable class map ({type(e).__name__}: {e})") from None
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise OmnipatchError(f"{p}: class map has non-integer values")
    if arr.dtype.kind not in "uifb":
        raise OmnipatchError(f"{p}: class map has unsupported type {arr.dtype}")
    return arr.astype(np.int64)


def _sorted_names(names) -> list[str]:
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


@dataclass
class Labels:
    """Encoded targets of the labelled samples.

    Attributes:
        task: ``classification`` / ``regression`` / ``segmentation``.
        kind: ``class`` (index), ``multi`` (multi-hot), ``value`` (float), ``map`` (class map).
        rows: dataset indices that have a label (position ``j`` = ``rows[j]``).
        targets: per position: class index, multi-hot vector, value or class-index map.
        classes: class names in output order (None for regression).
        scale: regression ``{"mean", "std"}`` of the training targets.
    """

    task: str
    kind: str
    rows: list[int] = field(default_factory=list)
    targets: list = field(default_factory=list)
    classes: list[str] | None = None
    scale: dict | None = None
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: dict) -> "Labels":
        ft = cfg["finetune"]
        kind = "multi" if ft.get("multi_label") else KINDS[ft["task"]]
        return cls(ft["task"], kind, classes=cfg.get("classes"), scale=cfg.get("target_scale"))

    # -- training side ----------------------------------------------------------------------------
    def split(self, fraction: float, seed: int) -> tuple[list[int], list[int]]:
        """Positions ``(train, val)``; stratified by class for single-label classification,
        never leaving a class without a training sample."""
        n = len(self.rows)
        rng = np.random.default_rng(seed)
        if fraction <= 0 or n < 4:
            return list(range(n)), []
        if self.kind == "class":
            val = []
            for c in sorted(set(self.targets)):
                pos = [j for j, t in enumerate(self.targets) if t == c]
                rng.shuffle(pos)
                val += pos[: min(int(round(len(pos) * fraction)), len(pos) - 1)]
        else:
            perm = rng.permutation(n).tolist()
            val = perm[: min(max(1, int(round(n * fraction))), n - 1)]
        vs = set(val)
        return [j for j in range(n) if j not in vs], sorted(vs)

    def fit_scaler(self, positions: list[int]) -> None:
        if self.kind == "value" and self.scale is None:
            v = np.array([self.targets[j] for j in positions], dtype=np.float64)
            self.scale = {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 and v.std() > 0 else 1.0}

    def target(self, j: int, sample: Sample) -> Tensor:
        t = self.targets[j]
        if self.kind == "class":
            return torch.tensor(t, dtype=torch.long)
        if self.kind == "multi":
            return torch.as_tensor(t, dtype=torch.float32)
        if self.kind == "value":
            s = self.scale or {"mean": 0.0, "std": 1.0}
            return torch.tensor((t - s["mean"]) / s["std"], dtype=torch.float32)
        spatial = tuple(sample.x.shape[1:])
        m = torch.from_numpy(t)
        while m.dim() > len(spatial) and 1 in m.shape:  # (H, W, 1) PNGs, (1, H, W) arrays
            m = m.squeeze(list(m.shape).index(1))
        if m.dim() != len(spatial):
            raise OmnipatchError(f"{self.sources[j]}: class map of shape {tuple(t.shape)} does not fit an input "
                                 f"of spatial shape {spatial}")
        if tuple(m.shape) != spatial:
            m = F.interpolate(m[None, None].float(), size=spatial, mode="nearest")[0, 0].long()
        return m

    def head_spec(self, modality: str, dim: int, adapter) -> dict:
        k = 1 if self.kind == "value" else len(self.classes)
        if self.kind != "map":
            return {"kind": "pooled", "dim": dim, "outputs": k, "modality": modality}
        if adapter.dense_patch is None:
            raise OmnipatchError(f"segmentation needs a grid modality (image, volume, ...); the {modality!r} "
                                 "adapter has no regular patch grid")
        return {"kind": "dense", "dim": dim, "outputs": k, "modality": modality,
                "patch_size": list(adapter.dense_patch)}

    # -- outputs ------------------------------------------------------------------------------------
    def decode(self, out: Tensor) -> np.ndarray:
        """Head outputs -> probabilities ``(N, K)``, values ``(N,)`` or class maps."""
        out = out.float()
        if self.kind == "class":
            return out.softmax(-1).numpy()
        if self.kind == "multi":
            return out.sigmoid().numpy()
        if self.kind == "value":
            s = self.scale or {"mean": 0.0, "std": 1.0}
            return (out[:, 0] * s["std"] + s["mean"]).numpy()
        return out.argmax(1).numpy()

    def metrics(self, out: Tensor, y: Tensor) -> dict[str, float]:
        from omnipatch.eval import metrics as M

        if self.kind == "class":
            return M.classification_metrics(y.numpy(), self.decode(out))
        if self.kind == "multi":
            return M.multilabel_metrics(y.numpy(), self.decode(out))
        if self.kind == "value":
            s = self.scale or {"mean": 0.0, "std": 1.0}
            return M.regression_metrics(y.numpy() * s["std"] + s["mean"], self.decode(out))
        return M.segmentation_metrics(y.numpy(), self.decode(out), len(self.classes))


def build_labels(dataset, labels, task: str, multi_label: bool = False, known: Labels | None = None,
                 base_dir=None, match: str = "exact", report: list | None = None, read_target=None) -> Labels:
    """Match and encode labels for ``dataset``.

    Args:
        labels: a ``LABELS.csv`` path, a ``{id: label}`` dict, or None (dataset labels).
        known: labels of a trained model: reuse its classes / scale; unknown classes fail.
        base_dir: folder that relative class-map paths of a dict / the dataset's own label
            column are relative to (a CSV's paths are relative to the CSV).
        match: how sample ids meet label ids (:func:`match_ids`); ``report`` collects its line.
        read_target: the modality's class-map reader
            (:attr:`~omnipatch.modality.ModalitySpec.read_target`); None: ``.npy`` only.
    """
    base = Path(base_dir) if base_dir is not None else Path(".")
    if labels is None:
        raw = _dataset_labels(dataset)
        if not raw:
            raise OmnipatchError("no labels: pass --labels LABELS.csv (id,label) or a manifest with a label column")
    else:
        if isinstance(labels, (str, Path)):
            base = Path(labels).parent
            labels = read_labels(labels)
        if not labels:
            raise OmnipatchError("the labels are empty")
        raw = match_ids(sample_ids(dataset), labels, match, report)
    rows = sorted(raw)
    kind = "multi" if multi_label else KINDS[task]
    lab = Labels(task, kind, rows=rows, classes=known.classes if known else None,
                 scale=known.scale if known else None)
    values = [raw[i] for i in rows]
    if kind == "value":
        for i, v in zip(rows, values):
            try:
                lab.targets.append(float(v))
            except (TypeError, ValueError):
                raise OmnipatchError(f"label {v!r} of sample {i} is not a number (task regression)") from None
        return lab
    if kind == "map":
        maps = []
        for v in values:
            if isinstance(v, np.ndarray):
                maps.append(v.astype(np.int64))
                lab.sources.append("<array>")
            else:
                p = Path(str(v))
                p = p if p.is_absolute() else base / p
                maps.append(read_mask(str(p), read_target))
                lab.sources.append(str(p))
        found = sorted({int(u) for m in maps for u in np.unique(m)})
        if known is None:
            lab.classes = [str(c) for c in found]
        values_of = np.array([int(c) for c in lab.classes])
        extra = set(found) - set(values_of.tolist())
        if extra:
            raise OmnipatchError(f"class map values {sorted(extra)} are not classes of the model {lab.classes}")
        lab.targets = [np.searchsorted(values_of, m) for m in maps]
        if known is None and len(lab.classes) < 2:
            raise OmnipatchError(f"segmentation needs at least 2 classes in the class maps, found {lab.classes}")
        return lab
    lists = [[x.strip() for x in str(v).split(MULTI_SEP) if x.strip()] if kind == "multi" else [str(v)] for v in values]
    if known is None:
        lab.classes = _sorted_names({c for names in lists for c in names})
        if len(lab.classes) < 2 and kind == "class":
            raise OmnipatchError(f"classification needs at least 2 classes, the labels have {lab.classes}")
    index = {c: k for k, c in enumerate(lab.classes)}
    unknown = sorted({c for names in lists for c in names} - set(index))
    if unknown:
        raise OmnipatchError(f"labels {unknown[:5]} are not classes of the model ({lab.classes[:10]})")
    for names in lists:
        if kind == "class":
            lab.targets.append(index[names[0]])
        else:
            v = np.zeros(len(lab.classes), dtype=np.float32)
            v[[index[c] for c in names]] = 1.0
            lab.targets.append(v)
    return lab


class LabelledData(Dataset):
    """``(sample or Skipped, target or None)`` for each labelled position."""

    def __init__(self, dataset, labels: Labels):
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.labels.rows)

    def __getitem__(self, j: int):
        s = self.dataset[self.labels.rows[j]]
        return s, (self.labels.target(j, s) if isinstance(s, Sample) else None)


def collate_labelled(items: list) -> tuple:
    """``(Batch or None, targets or None, positions kept)``; unreadable samples dropped."""
    ok = [k for k, (s, _) in enumerate(items) if isinstance(s, Sample)]
    if not ok:
        return None, None, []
    batch = collate([items[k][0] for k in ok])
    return batch, torch.stack([items[k][1] for k in ok]), ok


def list_skipped(dataset, rows: list[int], out: Path, quiet: bool) -> None:
    """Write ``FT_DIR/skipped.jsonl``: files passed over when opening and labelled samples that
    cannot be read (decoded once here; the cache keeps them for training)."""
    from omnipatch.api import write_skipped
    from omnipatch.batch import Skipped

    bad = list(getattr(dataset, "skipped_files", []))
    bad += [s for s in (dataset[i] for i in rows) if isinstance(s, Skipped)]
    path = out / "skipped.jsonl"
    path.unlink(missing_ok=True)
    if write_skipped(path, bad) and not quiet:
        print(f"skipped {len(bad)} sample(s), listed in {path}", flush=True)
    if len(bad) >= len(rows) + len(getattr(dataset, "skipped_files", [])):
        raise OmnipatchError(f"none of the {len(rows)} labelled samples can be read (listed in {path})")


__all__ = ["Labels", "LabelledData", "build_labels", "collate_labelled", "read_labels", "read_mask", "sample_ids",
           "match_ids", "list_skipped"]
