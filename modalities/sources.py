"""Resolve a user's ``SRC`` (folder, glob, or manifest CSV/Parquet) into file entries."""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from omnipatch.errors import OmnipatchError


@dataclass(frozen=True)
class Entry:
    """One file to read: ``path``, ``id`` (defaults to the path), optional ``label``, extras."""

    path: str
    id: str
    label: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.extra).get(key, default)


def _read_manifest(path: Path) -> list[dict]:
    if path.suffix.lower() == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).astype(str).to_dict("records")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def resolve(source: str | os.PathLike | list, extensions: tuple[str, ...]) -> list[Entry]:
    """Files of one modality.

    Args:
        source: a folder (searched recursively), a glob pattern, a manifest (``.csv`` or
            ``.parquet`` with a ``path`` column and optional ``id`` / ``label`` / other
            columns; relative paths are relative to the manifest), or a list of paths.
        extensions: lower-case suffixes accepted when listing a folder or glob.
    Raises:
        OmnipatchError: nothing found, or a manifest without a ``path`` column.
    """
    if isinstance(source, (list, tuple)):
        return [Entry(str(p), str(p)) for p in source]
    src = str(source)
    p = Path(src)
    if p.is_file() and p.suffix.lower() in (".csv", ".parquet"):
        rows = _read_manifest(p)
        if not rows:
            raise OmnipatchError(f"{src}: manifest is empty")
        if "path" not in rows[0]:
            raise OmnipatchError(f"{src}: manifest needs a 'path' column (has: {', '.join(rows[0])})")
        out = []
        for r in rows:
            fp = r["path"] if os.path.isabs(r["path"]) else str(p.parent / r["path"])
            extra = tuple((k, str(v)) for k, v in r.items() if k not in ("path", "id", "label"))
            label = r.get("label")
            out.append(Entry(fp, r.get("id") or r["path"], None if label in (None, "", "nan") else str(label), extra))
        return out
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in extensions)
        where = f"folder {src}"
    elif p.is_file():
        files = [src]
        where = src
    else:
        files = sorted(f for f in glob.glob(src, recursive=True) if Path(f).suffix.lower() in extensions)
        where = f"pattern {src}"
        if not files and not any(c in src for c in "*?["):
            raise OmnipatchError(f"{src}: no such file or folder")
    if not files:
        raise OmnipatchError(f"{where}: no files with extensions {', '.join(extensions)}")
    return [Entry(f, f) for f in files]


def label_index(entries: list[Entry]) -> dict[str, int] | None:
    """Map label strings to class indices (sorted; numeric labels keep numeric order)."""
    labels = {e.label for e in entries if e.label is not None}
    if not labels:
        return None
    try:
        ordered = sorted(labels, key=float)
    except ValueError:
        ordered = sorted(labels)
    return {lab: i for i, lab in enumerate(ordered)}
