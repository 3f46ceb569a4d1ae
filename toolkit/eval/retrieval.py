"""Cross-modal retrieval: an exact index over L2-normalised vectors, top-k queries, and
recall@k / mAP / median rank with instance- or class-level relevance.

An index folder holds ``vectors.safetensors`` (``(N, D)`` float32, unit rows), ``ids.json``
(ids and, when known, labels / pair ids) and ``index.json`` (modality, checkpoint). Search is
an exact inner product in torch, in chunks so memory stays proportional to the index;
faiss (``IndexFlatIP``) is used instead when it is installed and the index is large.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from omnipatch.errors import OmnipatchError

FAISS_MIN = 200_000  # below this, torch's exact matmul is as fast and has no extra dependency
SCORE_BUDGET = 1 << 25  # similarities held at once (128 MiB of float32): queries per chunk = this / N


@dataclass
class Index:
    vectors: Tensor  # (N, D) unit rows
    ids: list[str]
    meta: dict

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": self.vectors.contiguous()}, str(folder / "vectors.safetensors"))
        (folder / "ids.json").write_text(json.dumps(self.ids))
        (folder / "index.json").write_text(json.dumps(self.meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Index":
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "vectors.safetensors").is_file():
            raise OmnipatchError(f"{folder}: not a retrieval index (no vectors.safetensors)")
        try:
            vec = load_file(str(folder / "vectors.safetensors"))["vectors"]
            ids, meta = json.loads((folder / "ids.json").read_text()), json.loads((folder / "index.json").read_text())
        except Exception as e:
            raise OmnipatchError(f"{folder}: corrupt retrieval index ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
        if vec.dim() != 2 or len(ids) != vec.shape[0] or not isinstance(meta, dict):
            raise OmnipatchError(f"{folder}: corrupt retrieval index ({len(ids)} ids for vectors {tuple(vec.shape)})")
        if not bool(torch.isfinite(vec).all()):
            raise OmnipatchError(f"{folder}: the index holds non-finite (NaN/Inf) vectors; rebuild it")
        return cls(vec, ids, meta)

    def search(self, queries: Tensor, k: int = 10, chunk: int | None = None) -> tuple[Tensor, Tensor]:
        """Top-``k`` (scores, indices) ``(M, k)`` by cosine similarity."""
        return search(self.vectors, queries, k, chunk)


def build_index(vectors: Tensor | np.ndarray, ids: list[str], meta: dict | None = None) -> Index:
    v = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    if v.dim() != 2 or v.shape[0] != len(ids):
        raise OmnipatchError(f"index needs (N, D) vectors and N ids, got {tuple(v.shape)} and {len(ids)}")
    bad = [ids[i] for i in torch.nonzero(~torch.isfinite(v).all(dim=1)).flatten().tolist()]
    if bad:
        raise OmnipatchError(f"non-finite (NaN/Inf) vectors for {len(bad)} item(s): {', '.join(map(str, bad[:3]))}")
    return Index(F.normalize(v, dim=1), list(ids), dict(meta or {}))


def search(index: Tensor, queries: Tensor, k: int = 10, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` cosine neighbours of each query row in ``index (N, D)`` (unit rows).

    Queries go through in chunks of ``chunk`` rows (default: ``SCORE_BUDGET // N``), so the
    similarities held at once stay under ~128 MiB however many queries there are; memory
    is the index plus that budget.
    """
    q = F.normalize(torch.as_tensor(np.asarray(queries), dtype=torch.float32), dim=1)
    if q.shape[1] != index.shape[1]:
        raise OmnipatchError(f"query width {q.shape[1]} differs from the index width {index.shape[1]}")
    k = min(k, index.shape[0])
    if index.shape[0] >= FAISS_MIN:
        try:
            import faiss  # type: ignore

            fi = faiss.IndexFlatIP(index.shape[1])
            fi.add(index.numpy())
            s, i = fi.search(q.numpy(), k)
            return torch.from_numpy(s), torch.from_numpy(i).long()
        except ImportError:
            pass
    chunk = chunk or max(1, SCORE_BUDGET // max(1, index.shape[0]))
    scores, idx = [], []
    for start in range(0, q.shape[0], chunk):  # (chunk, N) similarities at a time
        s, i = (q[start:start + chunk] @ index.T).topk(k, dim=1)
        scores.append(s)
        idx.append(i)
    return torch.cat(scores), torch.cat(idx)


def ranking_metrics(sim: Tensor | np.ndarray, relevant: Tensor | np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Retrieval metrics for queries (rows) against a gallery (columns).

    Args:
        sim: ``(M, N)`` similarity, higher is better.
        relevant: ``(M, N)`` bool, True where gallery item n is relevant to query m.
    Returns:
        ``recall@k`` (fraction of queries with a relevant item in the top k), ``mAP`` (mean
        average precision over queries with at least one relevant item) and ``median_rank``
        (1-based rank of the first relevant item).
    """
    sim = torch.as_tensor(np.asarray(sim), dtype=torch.float64)
    rel = torch.as_tensor(np.asarray(relevant), dtype=torch.bool)
    if sim.shape != rel.shape:
        raise OmnipatchError(f"similarity {tuple(sim.shape)} and relevance {tuple(rel.shape)} differ in shape")
    has = rel.any(dim=1)
    if not has.any():
        raise OmnipatchError("no query has a relevant item")
    sim, rel = sim[has], rel[has]
    order = sim.argsort(dim=1, descending=True, stable=True)
    hits = torch.gather(rel, 1, order).double()  # (M, N) relevance in ranked order
    first = hits.argmax(dim=1) + 1  # 1-based rank of the first hit
    out = {f"recall@{k}": float((first <= k).double().mean()) for k in ks}
    cum = hits.cumsum(1)
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
    ap = (hits * cum / ranks).sum(1) / hits.sum(1)
    out["mAP"] = float(ap.mean())
    out["median_rank"] = float(first.double().median())
    out["queries"] = int(has.sum())
    return out


def relevance(query_keys: list, gallery_keys: list) -> Tensor:
    """``(M, N)`` bool: query m and gallery n share a key (pair id or class label)."""
    qk, gk = np.asarray(query_keys, dtype=object), np.asarray(gallery_keys, dtype=object)
    return torch.from_numpy(qk[:, None] == gk[None, :])


def evaluate(emb_a: Tensor, keys_a: list, emb_b: Tensor, keys_b: list, ks=(1, 5, 10)) -> dict[str, dict]:
    """Metrics in both directions (a -> b and b -> a) with relevance by shared key."""
    a, b = F.normalize(torch.as_tensor(emb_a).float(), dim=1), F.normalize(torch.as_tensor(emb_b).float(), dim=1)
    sim = a @ b.T
    rel = relevance(keys_a, keys_b)
    return {"a->b": ranking_metrics(sim, rel, ks), "b->a": ranking_metrics(sim.T, rel.T, ks)}


def plot_results(query_data, query_modality: str, gallery_data, gallery_modality: str, scores: Tensor,
                 nn: Tensor, out: str | Path, n_queries: int = 6, k: int = 5) -> Path:
    """Thumbnails of ``n_queries`` queries (evenly spread) and their top-``k`` results.

    ``query_data`` / ``gallery_data`` are the datasets that were embedded (row i of ``nn``
    is query i, its entries index the gallery). When both sides carry labels a result
    framed green shares the query's label, red does not.
    """
    from omnipatch.modality import MODALITIES
    from omnipatch.plots import save_retrieval, thumbnail

    qspec, gspec = MODALITIES.get(query_modality), MODALITIES.get(gallery_modality)
    rows = []
    for qi in np.unique(np.linspace(0, len(query_data) - 1, min(n_queries, len(query_data))).round().astype(int)):
        q = query_data[int(qi)]
        results = []
        for j, sc in zip(nn[qi, :k].tolist(), scores[qi, :k].tolist()):
            g = gallery_data[j]
            hit = None if q.label is None or g.label is None else str(g.label) == str(q.label)
            cap = f"{sc:.2f}" + ("" if g.label is None else f" [{g.label}]")
            results.append((thumbnail(g, gspec), cap, hit))
        qcap = Path(str(q.id)).name[:18] + ("" if q.label is None else f" [{q.label}]")
        rows.append((thumbnail(q, qspec), qcap, results))
    return save_retrieval(rows, out, f"{query_modality} queries -> top-{k} {gallery_modality} results")
