"""``omnipatch retrieve index|query|eval``: cross-modal retrieval from the command line
(the library: :mod:`omnipatch.eval.retrieval`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from omnipatch.cli.dataflags import add_data_flags
from omnipatch.errors import OmnipatchError
from omnipatch.eval.retrieval import Index, build_index, evaluate, plot_results


def _space(pre) -> str:
    return "cross" if pre.model.cross is not None else "encoder"


def _cmd_index(a) -> None:
    from omnipatch.api import load
    from omnipatch.cli.dataflags import data_options

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
    from omnipatch.cli.dataflags import data_options

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
    from omnipatch.runspec import modality_list
    from omnipatch.train.paired import PairedDataset

    pre = load(a.checkpoint)
    names = modality_list(a.modality) if a.modality else pre.modalities
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


def add_parser(sub) -> None:
    """Add ``omnipatch retrieve index|query|eval`` to the CLI's subparsers."""
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
