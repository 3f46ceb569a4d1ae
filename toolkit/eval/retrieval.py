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


# -- command line: omnipatch retrieve index | query | eval -----------------------------------
def _space(pre) -> str:
    return "cross" if pre.model.cross is not None else "encoder"


def _cmd_index(a) -> None:
    from omnipatch.api import load
    from omnipatch.dataflags import data_options

    pre = load(a.checkpoint)
    ids, emb = pre.embed(pre.open(a.data, modality=a.modality, options=data_options(a)), modality=a.modality,
                         space=_space(pre),
                         batch_size=a.batch_size)
    data = str(Path(a.data).resolve()) if Path(a.data).exists() else a.data
    from omnipatch.train.checkpoint import content_hash

    idx = build_index(emb, ids, {"modality": a.modality, "checkpoint": str(Path(a.checkpoint).resolve()),
                                 "checkpoint_sha256": content_hash(a.checkpoint),
                                 "checkpoint_modalities": pre.modalities, "space": _space(pre), "data": data})
    idx.save(a.out)
    print(f"indexed {len(ids)} {a.modality} items ({emb.shape[1]}-d, {_space(pre)} space) in {a.out}")


def _checked_checkpoint(idx: Index, where) -> str:
    """The index's checkpoint, refused when its weights changed since the index was built."""
    from omnipatch.train.checkpoint import content_hash

    run = idx.meta.get("checkpoint")
    if not run:
        raise OmnipatchError(f"{where}: the index does not record its checkpoint; rebuild it")
    want = idx.meta.get("checkpoint_sha256")
    if want is None:
        raise OmnipatchError(f"{where}: the index does not record its checkpoint's content hash (built by an "
                             f"older omnipatch); rebuild it with retrieve index")
    if content_hash(run) != want:
        raise OmnipatchError(f"{where}: checkpoint {run} changed since the index was built (weights hash "
                             f"{want[:12]} -> {content_hash(run)[:12]}); rebuild the index")
    return run


def _cmd_query(a) -> None:
    import csv

    from omnipatch.api import load

    if a.k < 1:
        raise OmnipatchError(f"--k must be at least 1, got {a.k}")
    if a.plot and a.plot_queries < 1:
        raise OmnipatchError(f"--plot-queries must be at least 1, got {a.plot_queries}")
    if Path(a.out).suffix.lower() not in (".csv", ".json"):
        raise OmnipatchError(f"--out {a.out}: results are written as .csv or .json")
    idx = Index.load(a.index)
    if a.plot and "data" not in idx.meta:
        raise OmnipatchError(f"{a.index}: the index does not record its data source; rebuild it to plot results")
    pre = load(_checked_checkpoint(idx, a.index))
    from omnipatch.dataflags import data_options

    qds = pre.open(a.data, modality=a.modality, options=data_options(a))
    ids, q = pre.embed(qds, modality=a.modality, space=idx.meta.get("space", "encoder"), batch_size=a.batch_size)
    scores, nn = idx.search(q, a.k)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps([{"query": qi, "results": [{"id": idx.ids[j], "score": float(s)}
                                                            for j, s in zip(nn[r].tolist(), scores[r].tolist())]}
                                   for r, qi in enumerate(ids)], indent=1))
    else:
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["query", "rank", "id", "score"])
            for r, qi in enumerate(ids):
                for rank, (j, s) in enumerate(zip(nn[r].tolist(), scores[r].tolist()), 1):
                    w.writerow([qi, rank, idx.ids[j], f"{s:.6f}"])
    print(f"top-{a.k} results for {len(ids)} {a.modality} queries written to {out}")
    if a.plot:
        gm = idx.meta["modality"]
        gds = pre.open(idx.meta["data"], modality=gm)
        if len(gds) != len(idx.ids):
            raise OmnipatchError(f"{idx.meta['data']}: now has {len(gds)} items but the index has {len(idx.ids)}")
        plot_results(qds, a.modality, gds, gm, scores, nn, a.plot, a.plot_queries, min(a.k, 8))
        print(f"picture of the top results for {min(a.plot_queries, len(ids))} queries: {a.plot}")


def _cmd_eval(a) -> None:
    from omnipatch.api import load
    from omnipatch.train.paired import PairedDataset

    pre = load(a.checkpoint)
    names = a.modality.split(",") if a.modality else pre.modalities
    if len(names) != 2:
        raise OmnipatchError(f"retrieve eval needs two modalities, got {names}")
    ds = PairedDataset(a.data, lambda m, paths: pre.open(paths, modality=m), names)
    keys = ds.labels if a.relevance == "label" else ds.pair_ids
    emb, key = {}, {}
    for m in names:
        rows = [i for i, j in enumerate(ds.index[m]) if j >= 0]
        _, unique = pre.embed(ds.datasets[m], modality=m, space=_space(pre), batch_size=a.batch_size)
        emb[m] = unique[torch.tensor([ds.index[m][i] for i in rows])]  # one row per manifest row
        key[m] = [keys[i] for i in rows]
    res = evaluate(emb[names[0]], key[names[0]], emb[names[1]], key[names[1]])
    res = {f"{names[0]}->{names[1]}": res["a->b"], f"{names[1]}->{names[0]}": res["b->a"], "relevance": a.relevance}
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))


def add_commands(sub) -> None:
    from omnipatch.dataflags import add_data_flags

    r = sub.add_parser("retrieve", help="cross-modal retrieval: build an index, query it, evaluate recall@k")
    rs = r.add_subparsers(dest="retrieve_command", required=True)
    s = rs.add_parser("index", help="embed a modality's items into an index")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--modality", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help="index folder")
    s.add_argument("--batch-size", type=int, default=256)
    add_data_flags(s)
    s.set_defaults(func=_cmd_index)
    s = rs.add_parser("query", help="top-k index items for each query item (CSV or JSON)")
    s.add_argument("--index", required=True)
    s.add_argument("--modality", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--out", required=True, help="RESULTS.csv or RESULTS.json")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--plot", help="PNG: thumbnails of some queries and their top results")
    s.add_argument("--plot-queries", type=int, default=6, help="queries shown in --plot")
    add_data_flags(s)
    s.set_defaults(func=_cmd_query)
    s = rs.add_parser("eval", help="recall@1/5/10, mAP, median rank in both directions on a paired manifest")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True, help="paired manifest (a column per modality, pair_id / label)")
    s.add_argument("--modality", help="A,B (default: the run's modalities)")
    s.add_argument("--relevance", choices=["pair", "label"], default="pair",
                   help="instance level (same pair_id / row) or class level (same label)")
    s.add_argument("--out", help="write the metrics as JSON")
    s.add_argument("--batch-size", type=int, default=256)
    s.set_defaults(func=_cmd_eval)
