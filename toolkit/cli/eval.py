"""``omnipatch eval knn|linear``: probes on an embeddings file with a labels CSV."""

from __future__ import annotations

import json
from pathlib import Path

from omnipatch.errors import OmnipatchError


def _read_labels(path: str) -> dict[str, str]:
    from omnipatch.eval.report import read_label_file

    return read_label_file(path)[0]


def _labelled(emb_path: str, labels: dict[str, str]):
    import numpy as np

    from omnipatch.api import read_embeddings

    ids, x = read_embeddings(emb_path)
    keep = [i for i, id_ in enumerate(ids) if id_ in labels]
    if not keep:
        raise OmnipatchError(f"{emb_path}: no embedding id appears in the labels file")
    return x[keep], np.array([labels[ids[i]] for i in keep])


def run(a) -> None:
    from omnipatch.config import check_range
    from omnipatch.eval import cross_val_accuracy, knn_accuracy, linear_accuracy
    from omnipatch.plots import save_embedding_map

    check_range("--k", a.k, "int", 1)

    labels = _read_labels(a.labels)
    x, y = _labelled(a.embeddings, labels)
    if a.test_embeddings:
        tx, ty = _labelled(a.test_embeddings, labels)
        acc = (knn_accuracy(x, y, tx, ty, a.k) if a.method == "knn" else linear_accuracy(x, y, tx, ty))
        how = f"train {len(y)} / test {len(ty)}"
    else:
        acc = cross_val_accuracy(x, y, a.method)
        how = f"stratified cross-validation (up to 5 folds) over {len(y)}"
    plot = Path(a.plot) if a.plot else Path(a.embeddings).with_suffix(".map.png")
    save_embedding_map(x, y, plot, title=f"{Path(a.embeddings).name} ({a.method} acc {acc:.3f})")
    result = {"method": a.method, "accuracy": acc, "protocol": how, "map": str(plot)}
    print(json.dumps(result) if a.json else f"{a.method} accuracy {acc:.4f} ({how}); map: {plot}")


def add_parser(sub) -> None:
    """Add ``omnipatch eval`` to the CLI's subparsers."""
    s = sub.add_parser("eval", help="kNN or linear probe on embeddings")
    s.add_argument("method", choices=["knn", "linear"])
    s.add_argument("--embeddings", required=True)
    s.add_argument("--labels", required=True, help="CSV with id,label")
    s.add_argument("--test-embeddings")
    s.add_argument("--k", type=int, default=20)
    s.add_argument("--plot", help="where to write the 2-D embedding map (PNG)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run)
