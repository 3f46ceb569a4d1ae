"""Tables: CSV / TSV / Parquet -> one sample per row, ``x (F,)`` over the feature columns.

The source (``SRC``) is the table itself, read with pandas (pyarrow for Parquet), imported
lazily. A schema says which columns are features and whether each is ``numeric`` or
``categorical``; it is inferred from the column types unless given (``numeric`` /
``categorical`` options), and the ``id_column`` / ``label_column`` are never features.

Sample layout: ``x (F,)`` float64 in schema order: numeric cells hold their value,
categorical cells a stable 48-bit code of the category's text (:func:`category_code`, exact
in float64), so the vocabulary can live in the adapter (and its checkpoint) and a table
read later maps to the same codes. ``x_mask (F,)`` is True where a cell is missing: it
becomes padding for the adapter, never an imputed value. A row with every feature missing,
or with a numeric cell that is not a number, is a bad sample (``on_bad_sample``).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities import examples, tabular_out
from omnipatch.modalities.base import ON_BAD, Skipped
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

EXTENSIONS = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".parquet", ".pq")
NUMERIC, CATEGORICAL = "numeric", "categorical"


def category_code(value) -> int:
    """Stable 48-bit code of a category's text (integral floats print as integers, so a
    code column read as ``3`` or ``3.0`` maps to the same category)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=6).digest(), "little")


def category_text(value) -> str:
    """The text :func:`category_code` hashes (for vocabularies shown to humans)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def read_table(path: str | Path):
    """A pandas DataFrame from CSV / TSV (optionally gzipped) or Parquet; clear errors."""
    import pandas as pd

    p = Path(path)
    name = p.name.lower()
    if not p.is_file():
        raise OmnipatchError(f"{path}: table not found")
    if not name.endswith(EXTENSIONS):
        raise OmnipatchError(f"{path}: unsupported table type (expected {', '.join(EXTENSIONS)})")
    if p.stat().st_size == 0:
        raise OmnipatchError(f"{path}: empty file (0 bytes)")
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(p)
        else:
            sep = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
            df = pd.read_csv(p, sep=sep)
    except UnicodeDecodeError:
        raise OmnipatchError(f"{path}: not a text table (cannot decode as UTF-8; binary or corrupt file?)") from None
    except pd.errors.EmptyDataError:
        raise OmnipatchError(f"{path}: no columns (empty table)") from None
    except Exception as e:  # noqa: BLE001  ParserError, ArrowInvalid, OSError (truncated Parquet)...
        kind = "Parquet" if name.endswith((".parquet", ".pq")) else "CSV"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OmnipatchError(f"{path}: not a readable {kind} table ({type(e).__name__}: {msg})") from None
    if len(df) == 0:
        raise OmnipatchError(f"{path}: table has a header but no rows")
    return df


def _as_list(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [c.strip() for c in v.split(",") if c.strip()]
    return [str(c) for c in v]


def _check_columns(path, df, names: list[str], what: str) -> None:
    import difflib

    for n in names:
        if n not in df.columns:
            close = difflib.get_close_matches(n, [str(c) for c in df.columns], n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OmnipatchError(f"{path}: {what} {n!r} is not a column{hint} (columns: {', '.join(map(str, df.columns))})")


def infer_kind(series) -> str:
    """``numeric`` for number columns (and text columns that are >= 95 % numbers: the rest
    are then bad cells), ``categorical`` for text / bool / category columns."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype):
        return CATEGORICAL
    if pd.api.types.is_numeric_dtype(series):
        return NUMERIC
    present = series.dropna()
    if len(present) and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.95:
        return NUMERIC
    return CATEGORICAL


class TableDataset(Dataset):
    """Rows of one table as samples.

    Args:
        source: path of a CSV / TSV / Parquet table.
        id_column: column with row ids (default: the row number).
        label_column: column with labels (class names or numbers), excluded from features.
        columns: feature columns (default: every other column).
        numeric, categorical: columns forced to a kind (lists or comma-separated strings);
            the rest are inferred (:func:`infer_kind`).
        on_bad_sample: ``raise`` or ``skip`` for bad rows (all cells missing, non-numbers
            in a numeric column, infinities).
    """

    def __init__(self, source, id_column: str | None = None, label_column: str | None = None,
                 columns=None, numeric=None, categorical=None, on_bad_sample: str = "raise"):
        if on_bad_sample not in ON_BAD:
            raise OmnipatchError(f"on_bad_sample must be one of {ON_BAD}, got {on_bad_sample!r}")
        import pandas as pd

        self.path = str(source)
        self.on_bad_sample = on_bad_sample
        df = read_table(source)
        df.columns = [str(c) for c in df.columns]
        special = [c for c in (id_column, label_column) if c]
        _check_columns(self.path, df, special, "id/label column")
        feats = _as_list(columns) or [c for c in df.columns if c not in special]
        forced_num, forced_cat = _as_list(numeric), _as_list(categorical)
        _check_columns(self.path, df, feats + forced_num + forced_cat, "feature column")
        feats = [c for c in feats if c not in special]
        if not feats:
            raise OmnipatchError(f"{self.path}: no feature columns left (id/label columns are not features)")
        self.columns = feats
        self.kinds = [NUMERIC if c in forced_num else CATEGORICAL if c in forced_cat else infer_kind(df[c])
                      for c in feats]
        n, F = len(df), len(feats)
        x = np.zeros((n, F), dtype=np.float64)
        missing = np.zeros((n, F), dtype=bool)
        self.problems: dict[int, str] = {}
        self.vocab_counts: dict[str, Counter] = {}
        for j, (c, kind) in enumerate(zip(feats, self.kinds)):
            col = df[c]
            miss = col.isna().to_numpy()
            if kind == NUMERIC:
                vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                bad = (np.isnan(vals) & ~miss) | np.isinf(vals)
                for i in np.flatnonzero(bad)[:1000]:
                    self.problems.setdefault(int(i), f"column {c!r}: {col.iloc[i]!r} is not a finite number")
                miss = miss | np.isnan(vals)
                x[:, j] = np.where(miss | bad, 0.0, vals)
            else:  # hash each distinct value once, not each cell
                inverse, uniques = pd.factorize(col, use_na_sentinel=True)
                texts = [category_text(u) for u in uniques]
                codes = np.array([float(category_code(t)) for t in texts] + [0.0])
                x[:, j] = codes[inverse]  # the sentinel -1 (missing) picks the trailing 0.0
                counts = np.bincount(inverse[inverse >= 0], minlength=len(texts))
                self.vocab_counts[c] = Counter()
                for t, k in zip(texts, counts):  # distinct values may share a text (3 and 3.0)
                    self.vocab_counts[c][t] += int(k)
            missing[:, j] = miss
        for i in np.flatnonzero(missing.all(1)):
            self.problems.setdefault(int(i), "every feature is missing")
        self.x, self.missing = x, missing
        self.ids = (df[id_column].astype(str).tolist() if id_column else [str(i) for i in range(n)])
        self.labels, self.classes = self._labels(df, label_column)
        if len(self.problems) == n:
            first = next(iter(self.problems.items()))
            raise OmnipatchError(f"{self.path}: no usable row (row {first[0]}: {first[1]})")

    @staticmethod
    def _labels(df, label_column):
        if not label_column:
            return None, None
        raw = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else category_text(v)
               for v in df[label_column].tolist()]
        names = {r for r in raw if r is not None}
        try:
            ordered = sorted(names, key=float)
        except ValueError:
            ordered = sorted(names)
        classes = {lab: i for i, lab in enumerate(ordered)}
        return [None if r is None else classes[r] for r in raw], classes

    def __len__(self) -> int:
        return len(self.x)

    def source_of(self, i: int) -> str:
        return f"{self.path} [row {i}, id {self.ids[i]}]"

    def numeric_stats(self) -> tuple[list[float], list[float]]:
        """Mean / std per feature column over present cells of good rows (0 / 1 for
        categorical columns and for numeric columns without any value)."""
        good = np.ones(len(self.x), dtype=bool)
        good[list(self.problems)] = False
        mean, std = [], []
        for j, kind in enumerate(self.kinds):
            v = self.x[good & ~self.missing[:, j], j]
            if kind != NUMERIC or len(v) == 0:
                mean.append(0.0), std.append(1.0)
                continue
            mean.append(float(v.mean()))
            std.append(float(v.std()) if len(v) > 1 and v.std() > 1e-12 else 1.0)
        return mean, std

    def vocabularies(self, max_categories: int = 256) -> list[list[str]]:
        """Per feature column, its most frequent categories (ties by text); [] for numeric."""
        out = []
        for c, kind in zip(self.columns, self.kinds):
            if kind != CATEGORICAL:
                out.append([])
                continue
            counts = self.vocab_counts[c]
            out.append([t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]])
        return out

    def __getitem__(self, i: int) -> Sample | Skipped:
        if i in self.problems:
            err = BadSampleError(self.source_of(i), self.problems[i])
            if self.on_bad_sample == "skip":
                return Skipped(err.source, err.reason)
            raise err
        label = None if self.labels is None else self.labels[i]
        return Sample(x=torch.from_numpy(self.x[i].copy()), id=self.ids[i], label=label,
                      x_mask=torch.from_numpy(self.missing[i].copy()))


def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0,
            corruption: float = 0.3) -> Batch:
    """SCARF (Bahri et al., 2022): each cell, with probability ``corruption * strength``, is
    replaced by the same column's cell of a random row of the batch (its empirical marginal),
    missingness included. Rows that would end up all-missing keep their original cells."""
    x = batch.x
    B, F = x.shape
    g, dev = generator, x.device
    m = torch.zeros(B, F, dtype=torch.bool, device=dev) if batch.x_mask is None else batch.x_mask
    corrupt = torch.rand(B, F, generator=g, device=g.device).to(dev) < corruption * strength
    src = torch.randint(0, B, (B, F), generator=g, device=g.device).to(dev)
    x2 = torch.where(corrupt, x.gather(0, src), x)
    m2 = torch.where(corrupt, m.gather(0, src), m)
    empty = m2.all(1, keepdim=True)
    return batch.replace(x=torch.where(empty, x, x2), x_mask=torch.where(empty, m, m2))


@dataclass(frozen=True)
class DataOptions:
    """Which columns of the table are what."""

    id_column: str | None = option(None, "None: the row number, unless the scan finds a column named id / row_id / "
                                   "sample_id / index with a unique value per row", what="the id column (not a feature)", flag=True)
    label_column: str | None = option(None, "None: none, unless the scan finds a column named label / target / class / "
                                      "y / diagnosis / species", what="the label column (not a feature)", flag=True)
    columns: list[str] | None = option(None, "None: every other column is a feature", what="feature columns")
    numeric: list[str] | None = option(None, "None: inferred from the column types", what="columns read as numbers")
    categorical: list[str] | None = option(None, "None: inferred from the column types (text, few integers)",
                                           what="columns read as categories")


@dataclass(frozen=True)
class AdapterOptions:
    """How the tabular adapter embeds cells (FT-Transformer style)."""

    max_categories: int = option(256, "the most frequent 256 per column: a bounded vocabulary and embedding table",
                                 what="categories per column with their own embedding")
    numeric_embedding: str = option("linear", "FT-Transformer's per-column linear embedding",
                                    what="numeric cell embedding")


def _adapter_kwargs(dataset: TableDataset, options: dict) -> dict:
    mean, std = dataset.numeric_stats()
    o = pick(AdapterOptions, options)
    return {"columns": dataset.columns, "kinds": dataset.kinds, "mean": mean, "std": std,
            "vocab": dataset.vocabularies(int(o.max_categories)), "numeric_embedding": o.numeric_embedding}


ID_NAMES = ("id", "row_id", "sample_id", "index")
LABEL_NAMES = ("label", "target", "class", "y", "diagnosis", "species")


def _scan(source, options: dict, explicit: set) -> tuple[dict, dict]:
    """Rows, feature columns by kind, missing cells. Fits ``id_column`` / ``label_column``
    when a column has a conventional name (:data:`ID_NAMES`, with unique values, and
    :data:`LABEL_NAMES`, case-insensitive), so ids and labels never become features."""
    p = Path(str(source[0] if isinstance(source, (list, tuple)) else source))
    df = read_table(p)
    df.columns = [str(c) for c in df.columns]
    lower = {c.lower(): c for c in df.columns}
    fits = {}
    opts = dict(options)
    if "id_column" not in explicit and not opts.get("id_column"):
        for n in ID_NAMES:
            c = lower.get(n)
            if c and c != opts.get("label_column") and df[c].is_unique:
                fits["id_column"] = (c, f"column {c!r} has a unique value per row")
                opts["id_column"] = c
                break
    if "label_column" not in explicit and not opts.get("label_column"):
        for n in LABEL_NAMES:
            c = lower.get(n)
            if c and c != opts.get("id_column"):
                fits["label_column"] = (c, f"column {c!r} is named like a label: not a feature")
                opts["label_column"] = c
                break
    keys = ("id_column", "label_column", "columns", "numeric", "categorical")
    ds = _open(p, on_bad_sample="skip", **{k: opts.get(k) for k in keys})
    if "columns" not in explicit:  # recorded, so a table embedded later is read the same way
        fits["columns"] = (list(ds.columns), "every column but the id and label columns")
    kinds = Counter(ds.kinds)
    facts = {"rows": len(ds), "features": len(ds.columns), "numeric": kinds.get(NUMERIC, 0),
             "categorical": kinds.get(CATEGORICAL, 0), "missing_cells": f"{float(ds.missing.mean()):.1%}",
             "labels": len(ds.classes) if ds.classes else None}
    return facts, fits


def _imputed(sample) -> np.ndarray:
    """The row's cells, missing ones as NaN (the report imputes the column mean)."""
    x = sample.x.double().numpy().copy()
    if sample.x_mask is not None:
        x[sample.x_mask.numpy()] = np.nan
    return x


def _open(source, on_bad_sample: str = "raise", **options) -> TableDataset:
    if isinstance(source, (list, tuple)):
        if len(source) != 1:
            raise OmnipatchError("tabular data: SRC is one table (CSV / TSV / Parquet file)")
        source = source[0]
    return TableDataset(source, on_bad_sample=on_bad_sample, **asdict(pick(DataOptions, options)))


def thumbnail(sample: Sample):
    """``x (F,)`` -> a ``(1, F)`` strip of the row's values; missing cells are NaN (blank)."""
    x = sample.x.float().clone()
    if sample.x_mask is not None:
        x[sample.x_mask] = float("nan")
    return x.reshape(1, -1).cpu().numpy()


SPEC = ModalitySpec(
    name="tabular",
    description="tables (CSV, TSV, Parquet): a row is a sample, one token per column",
    open_dataset=_open,
    adapter="tabular",
    adapter_kwargs=_adapter_kwargs,
    augment=augment,
    default_mask="random",
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    scan=_scan,
    # examples/tabular_breast_cancer.py: MAE + MV-DHEL on SCARF views at half strength
    recipe={"objectives": "mae+dhel", "data.augment_strength": 0.5},
    raw_features=_imputed,
    raw_name="mean-imputed columns",
    model_options=("columns", "numeric", "categorical", "numeric_embedding"),
    thumbnail=thumbnail,
    example=examples.tabular,
    example_options={"id_column": "id", "label_column": "label"},
    outputs=tabular_out.OUTPUTS,
)
MODALITIES.add(SPEC.name, SPEC, SPEC.description)
