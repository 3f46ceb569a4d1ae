"""Embeddings leave omnipatch in the field's own formats, picked by the ``--out`` suffix.

The core knows no format but Parquet. It collects an :class:`Embeddings` record (one vector
per sample, or per token with the adapter's coordinates), hands it to the modality's
:class:`Outputs` (declared on its :class:`~omnipatch.modality.ModalitySpec`), which labels it
with the field's coordinates (time / latitude / longitude, an affine, xyz, column names) and
writes it (NetCDF, Zarr, NIfTI, TIFF, Parquet, ...). What every modality gets from the core:

- sample level ``.parquet``: columns ``id, embedding`` (the default, unchanged);
- patch level ``.parquet``: one row per data token, columns ``id, token, embedding`` (plus
  ``coords`` when the adapter gives token coordinates), unless the modality writes its own.

Each file keeps the provenance of :func:`provenance` (checkpoint, data source, omnipatch
version, config hash) as attributes or metadata.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from omnipatch.errors import OmnipatchError

LEVELS = ("sample", "patch")

#: ``(labelled object, path, provenance) -> paths written``
Writer = Callable[[Any, Path, dict], list]


@dataclass
class Embeddings:
    """Encoder outputs of a data set, before a modality labels them.

    Shapes (N samples, L tokens, D width, C coordinates per token):

    Attributes:
        level: ``"sample"`` (``features (N, D)``, pooled) or ``"patch"`` (``features (N, L, D)``).
        modality: registered modality name.
        ids: the N sample ids.
        index: the N positions in ``dataset`` of those samples (skipped ones are absent).
        features: float32 array, see ``level``.
        padding: ``(N, L)`` bool, True where a token slot is padding (patch level), or None.
        coords: ``(N, L, C)`` the adapter's token coordinates (``PatchTokens.coords``), or None.
        grid: the token grid when regular and the same for every sample, or None.
        dataset: the data set read (the modality's own class: its coordinates, affines, ...).
        adapter: the model's adapter for this modality (patch sizes, variables, columns).
        provenance: see :func:`provenance`.
    """

    level: str
    modality: str
    ids: list[str]
    index: list[int]
    features: np.ndarray
    padding: np.ndarray | None = None
    coords: np.ndarray | None = None
    grid: tuple[int, ...] | None = None
    dataset: Any = None
    adapter: Any = None
    provenance: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Outputs:
    """How a modality labels its embeddings and writes them in its field's formats.

    Attributes:
        label_patches: ``(Embeddings) -> labelled object`` at patch level, one vector per token
            with the field's coordinates (``xarray.DataArray`` for grids, ``pandas.DataFrame``
            for point groups or table columns); what ``run.embed(..., level="patch")`` returns.
            None: the :class:`Embeddings` record itself.
        label_samples: the same at sample level, for :attr:`sample_writers`; None: the record.
        patch_writers: ``{suffix: writer}`` for patch-level objects (``.nc``, ``.nii.gz``, ...);
            a writer is ``(labelled, path, provenance) -> [paths written]``.
        sample_writers: the same at sample level; ``.parquet`` is the core's unless given here.
    """

    label_patches: Callable[[Embeddings], Any] | None = None
    label_samples: Callable[[Embeddings], Any] | None = None
    patch_writers: dict[str, Writer] = field(default_factory=dict)
    sample_writers: dict[str, Writer] = field(default_factory=dict)


def config_hash(config: dict) -> str:
    """sha256 of the run's saved config (canonical JSON): the same run gives the same hash."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def provenance(checkpoint: str | None, config: dict, data, modality: str, level: str) -> dict:
    """Where embeddings came from, as flat string attributes every format can store."""
    from omnipatch import __version__

    src = data if isinstance(data, (str, Path)) else getattr(data, "source", None) or type(data).__name__
    return {"checkpoint": str(checkpoint) if checkpoint else "none (random or --init weights)",
            "data_source": str(src), "omnipatch_version": __version__, "config_hash": config_hash(config),
            "modality": modality, "level": level}


# -- labelling and writing ----------------------------------------------------------------------
def label(spec, emb: Embeddings):
    """The modality's labelled object for ``emb`` (or ``emb`` itself when it declares none)."""
    out = spec.outputs
    fn = None if out is None else (out.label_patches if emb.level == "patch" else out.label_samples)
    return emb if fn is None else fn(emb)


def _core_writers(level: str) -> dict[str, Callable[[Embeddings, Path], list]]:
    return {".parquet": _sample_parquet if level == "sample" else _patch_parquet}


def formats(spec, level: str) -> list[str]:
    """Suffixes ``--out`` may end with for this modality at this level."""
    out = spec.outputs
    own = {} if out is None else (out.patch_writers if level == "patch" else out.sample_writers)
    return sorted(set(own) | set(_core_writers(level)))


def _suffix(path: str | Path, known: list[str]) -> str | None:
    name = str(path).rstrip("/").lower()
    hits = [s for s in known if name.endswith(s.lower())]
    return max(hits, key=len) if hits else None


def _shown_suffix(path: str | Path) -> str:
    sfx = Path(str(path).rstrip("/")).suffixes
    return "".join(sfx[-2:]) if len(sfx) > 1 and sfx[-1].lower() == ".gz" else (sfx[-1] if sfx else "(no suffix)")


def check_format(spec, level: str, path: str | Path) -> str:
    """The suffix of ``path`` this modality writes at ``level``, or a one-line error naming
    the formats it does write (checked before any data is read)."""
    if level not in LEVELS:
        raise OmnipatchError(f"--level must be one of {', '.join(LEVELS)}, got {level!r}")
    known = formats(spec, level)
    sfx = _suffix(path, known)
    if sfx is None:
        other = "patch" if level == "sample" else "sample"
        extra = [s for s in formats(spec, other) if s not in known]
        hint = f" (at --level {other}: {', '.join(extra)})" if extra else ""
        raise OmnipatchError(f"{path}: modality {spec.name} cannot write {_shown_suffix(path)} at --level {level}; "
                             f"it writes: {', '.join(known)}{hint}")
    return sfx


def write(spec, emb: Embeddings, path: str | Path) -> list[Path]:
    """Write ``emb`` to ``path`` in the format its suffix names; returns the paths written."""
    sfx = check_format(spec, emb.level, path)
    out = spec.outputs
    own = {} if out is None else (out.patch_writers if emb.level == "patch" else out.sample_writers)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if sfx in own:
        return [Path(q) for q in own[sfx](label(spec, emb), p, dict(emb.provenance))]
    return _core_writers(emb.level)[sfx](emb, p)


def per_sample_paths(path: Path, suffix: str, ids: list[str]) -> list[Path]:
    """One file per sample for formats that hold one sample (a NIfTI map, ...): ``path`` itself
    for one sample, else ``<stem>_<k><suffix>`` beside it and a manifest ``<stem>.csv``
    (columns ``path, id``: the project's own manifest format)."""
    if len(ids) == 1:
        return [path]
    stem = path.name[: len(path.name) - len(suffix)]
    width = max(4, len(str(len(ids) - 1)))
    files = [path.with_name(f"{stem}_{k:0{width}d}{suffix}") for k in range(len(ids))]
    import pandas as pd

    pd.DataFrame({"path": [f.name for f in files], "id": list(ids)}).to_csv(path.with_name(stem + ".csv"),
                                                                             index=False)
    return files


# -- the core's Parquet ---------------------------------------------------------------------
def _with_meta(df, path: Path, prov: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"omnipatch"] = json.dumps(prov).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)


def write_frame(df, path: Path, prov: dict) -> list[Path]:
    """A pandas DataFrame to Parquet, the provenance under the schema metadata key ``omnipatch``."""
    _with_meta(df, path, prov)
    return [path]


def read_provenance(path: str | Path) -> dict:
    """The provenance stored in a Parquet file written here (``{}`` when there is none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[b"omnipatch"]) if b"omnipatch" in meta else {}


def sample_frame(ids: list[str], features):
    """The sample-level table: columns ``id`` (str) and ``embedding`` (list of float32)."""
    import pandas as pd

    return pd.DataFrame({"id": list(ids), "embedding": list(np.asarray(features, dtype=np.float32))})


def _sample_parquet(emb: Embeddings, path: Path) -> list[Path]:
    return write_frame(sample_frame(emb.ids, emb.features), path, emb.provenance)


def token_rows(emb: Embeddings) -> tuple[np.ndarray, np.ndarray]:
    """``(sample k, token l)`` of every data (non-padding) token, in sample then token order."""
    N, L = emb.features.shape[:2]
    keep = np.ones((N, L), bool) if emb.padding is None else ~emb.padding
    return np.nonzero(keep)


def _patch_parquet(emb: Embeddings, path: Path) -> list[Path]:
    import pandas as pd

    k, t = token_rows(emb)
    cols = {"id": [emb.ids[i] for i in k], "token": t.astype(np.int64)}
    if emb.coords is not None:
        cols["coords"] = list(emb.coords[k, t].astype(np.float32))
    cols["embedding"] = list(emb.features[k, t].astype(np.float32))
    return write_frame(pd.DataFrame(cols), path, emb.provenance)
