"""Did pretraining help? ``omnipatch report RUN`` (and the end of every ``pretrain`` with labels).

On a held-out split of the labelled samples, three representations are probed the same
way (kNN, k=20 cosine vote, and a linear probe, logistic regression with its strength
cross-validated on the training split only):

- the pretrained encoder;
- the same architecture at random init (same seed as the run);
- the modality's raw-feature baseline (``ModalitySpec.raw_features``: pixels, log-mel
  statistics, mean frame, voxel histogram, per-cell values, D2 shape histogram, imputed
  columns), the bar a learned encoder has to clear to be worth it.

The split is stratified by label, or holds out whole groups when the labels file has a
``group`` column (speakers, patients, objects, years): random rows of one recording or one
patient on both sides flatter every method. Health monitors (RankMe, spread) of the
pretrained embeddings are added. Written to ``report.md``, ``report.json`` and
``report_map.png`` (a 2-D map of the held-out pretrained embeddings).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from omnipatch.batch import Sample
from omnipatch.errors import OmnipatchError

#: raw feature vectors longer than this are average-pooled down to it (probe cost)
MAX_RAW_DIM = 2048


def read_label_file(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """``(id -> label, id -> group)`` from a CSV with ``id,label`` (and optional ``group``)."""
    p = Path(path)
    if not p.is_file():
        raise OmnipatchError(f"{path}: labels file not found")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "label"} <= set(rows[0]):
        raise OmnipatchError(f"{path}: needs columns 'id' and 'label' (optional 'group')")
    labels = {r["id"]: r["label"] for r in rows if r["label"] not in ("", None)}
    groups = {r["id"]: r["group"] for r in rows if r.get("group") not in ("", None)}
    return labels, groups


def raw_features(spec, samples: list[Sample]) -> np.ndarray:
    """``(N, F)`` raw-feature baseline: the modality's, or the flattened samples; NaN
    imputed with the column mean; longer vectors average-pooled to :data:`MAX_RAW_DIM`."""
    f = spec.raw_features or (lambda s: s.x.float().flatten().numpy())
    x = np.stack([np.asarray(f(s), dtype=np.float64).ravel() for s in samples])
    if x.shape[1] > MAX_RAW_DIM:
        edges = np.linspace(0, x.shape[1], MAX_RAW_DIM + 1).astype(int)
        x = np.stack([np.nanmean(x[:, a:b], 1) for a, b in zip(edges[:-1], edges[1:])], 1)
    col = np.nanmean(np.where(np.isfinite(x), x, np.nan), 0)
    x = np.where(np.isfinite(x), x, np.nan_to_num(col)[None])
    return x


def _split(ids: list[str], y: np.ndarray, groups: dict[str, str], seed: int, holdout: float):
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    idx = np.arange(len(ids))
    if groups and all(i in groups for i in ids):
        g = np.array([groups[i] for i in ids])
        if len(set(g)) >= 2:
            tr, te = next(GroupShuffleSplit(1, test_size=holdout, random_state=seed).split(idx, y, g))
            return tr, te, f"held-out groups ({len(set(g[te]))} of {len(set(g))})"
    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    tr, te = train_test_split(idx, test_size=holdout, random_state=seed, stratify=strat)
    return tr, te, "stratified random split" if strat is not None else "random split"


def _probe(x: np.ndarray, y: np.ndarray, tr, te) -> dict[str, float]:
    from omnipatch.eval import knn_accuracy, linear_accuracy

    k = int(min(20, max(1, len(tr) // 5)))  # k=20, fewer on small training sets (not a majority vote)
    return {"knn": knn_accuracy(x[tr], y[tr], x[te], y[te], k), "linear": linear_accuracy(x[tr], y[tr], x[te], y[te])}


class _Listed(torch.utils.data.Dataset):
    def __init__(self, items: list):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def _read(dataset, max_samples: int, seed: int) -> list[Sample]:
    n = len(dataset)
    order = np.arange(n) if n <= max_samples else np.sort(np.random.default_rng(seed).choice(n, max_samples, False))
    return [s for s in (dataset[int(i)] for i in order) if isinstance(s, Sample)]


def report(run_dir, labels: str | None = None, data=None, out=None, seed: int = 0, holdout: float = 0.25,
           max_samples: int = 4000, test_data=None) -> dict:
    """Probe pretrained vs random init vs raw features; write ``report.md`` in ``out``
    (default: the run directory). ``test_data``: a held-out source of its own (then
    ``data`` is the training side and nothing is split). Returns the numbers, a
    one-paragraph ``summary`` and the report's ``path``."""
    from omnipatch.api import load
    from omnipatch.modality import MODALITIES
    from omnipatch.train.monitors import health

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir
    pre = load(run_dir)
    if len(pre.modalities) > 1:
        raise OmnipatchError("report compares single-modality runs; for a paired run use `omnipatch retrieve eval`")
    spec = MODALITIES.get(pre.modality)
    source = data or pre.spec.source
    dataset = pre.open(source, "skip")
    samples = _read(dataset, max_samples, seed)
    n_train = len(samples)
    if test_data is not None:
        test_set = pre.open(test_data, "skip")
        samples += _read(test_set, max_samples, seed)
    label_of, groups = read_label_file(labels) if labels else ({}, {})
    if not labels:  # the data's own labels (a manifest's label column, a table's label column)
        label_of = {}
        for ds, part in ((dataset, samples[:n_train]), (test_set if test_data else None, samples[n_train:])):
            names = {v: k for k, v in (getattr(ds, "classes", None) or {}).items()}
            label_of.update({s.id: names.get(s.label, str(s.label)) for s in part if s.label is not None})
    is_test = [i >= n_train for i in range(len(samples))]
    keep = [i for i, s in enumerate(samples) if s.id in label_of]
    samples, is_test = [samples[i] for i in keep], np.array([is_test[i] for i in keep])
    y = np.array([str(label_of[s.id]) for s in samples])
    if len(samples) < 10 or len(set(y)) < 2:
        raise OmnipatchError(f"{labels or source}: the report needs at least 10 labelled samples of 2 or more "
                             f"labels; {len(samples)} sample(s) with labels {sorted(set(y))[:5]} matched")
    ids = [s.id for s in samples]
    if test_data is not None:
        tr, te, how = np.flatnonzero(~is_test), np.flatnonzero(is_test), f"the held-out set {test_data}"
        if len(te) == 0 or len(tr) == 0:
            raise OmnipatchError(f"{test_data}: no labelled held-out samples")
    else:
        tr, te, how = _split(ids, y, groups, seed, holdout)
    seed_run = int(pre.spec.train.seed)
    rnd = load(run_dir, random_init=True, seed=seed_run)
    listed = _Listed(samples)
    feats = {"pretrained": pre.embed(listed, modality=pre.modality)[1].numpy(),
             "random init": rnd.embed(listed, modality=pre.modality)[1].numpy(),
             f"raw features ({spec.raw_name})": raw_features(spec, samples)}
    res = {name: _probe(x, y, tr, te) for name, x in feats.items()}
    z = torch.from_numpy(feats["pretrained"][te]).float()
    hl = {k: round(v, 4) for k, v in health(z).items()}
    from omnipatch.plots import save_embedding_map

    out.mkdir(parents=True, exist_ok=True)
    pic = save_embedding_map(feats["pretrained"][te], y[te], out / "report_map.png",
                             f"held-out {spec.name} samples, pretrained encoder (PCA)")
    raw_key = next(k for k in res if k.startswith("raw"))
    p, r, w = res["pretrained"], res["random init"], res[raw_key]
    verdict = _verdict(p, r, w)
    summary = (f"did pretraining help? held-out {len(te)} of {len(y)} labelled samples ({how}): "
               f"linear {p['linear']:.3f} pretrained / {r['linear']:.3f} random init / {w['linear']:.3f} raw; "
               f"kNN {p['knn']:.3f} / {r['knn']:.3f} / {w['knn']:.3f}. {verdict}")
    result = {"modality": spec.name, "source": str(source), "labels": labels, "split": how, "seed": seed,
              "n_train": int(len(tr)), "n_test": int(len(te)), "classes": int(len(set(y))), "probes": res,
              "health": hl, "verdict": verdict, "summary": summary, "map": str(pic)}
    (out / "report.json").write_text(json.dumps(result, indent=2))
    path = out / "report.md"
    path.write_text(_markdown(result, run_dir))
    result["path"] = str(path)
    return result


def _verdict(p: dict, r: dict, w: dict) -> str:
    gain_r, gain_w = p["linear"] - r["linear"], p["linear"] - w["linear"]
    lin = (p["linear"], r["linear"], w["linear"])
    if min(lin) >= 0.98 and max(lin) - min(lin) < 0.01:
        return ("Cannot tell from the linear probe: every representation is (nearly) perfect on this split "
                "(the task is too easy to compare); look at kNN.")
    if gain_r >= 0.05 and gain_w > 0:
        return f"Yes: the linear probe beats random init by {gain_r:+.3f} and the raw features by {gain_w:+.3f}."
    if gain_r > 0 and gain_w <= 0:
        return (f"Partly: better than random init ({gain_r:+.3f}) but not than the raw features ({gain_w:+.3f}); "
                f"train longer, try the modality's other recipes, or use the raw features.")
    if gain_r <= 0:
        return (f"No: the linear probe is not above random init ({gain_r:+.3f}); check the loss curve, "
                f"the health monitors and the recipe.")
    return f"Slightly: {gain_r:+.3f} over random init, {gain_w:+.3f} over the raw features."


def _markdown(r: dict, run_dir: Path) -> str:
    rows = "\n".join(f"| {name} | {v['knn']:.3f} | {v['linear']:.3f} |" for name, v in r["probes"].items())
    health = ", ".join(f"{k} {v:g}" for k, v in r["health"].items())
    return f"""# Did pretraining help?

Run `{run_dir}` ({r['modality']}), data `{r['source']}`{f", labels `{r['labels']}`" if r['labels'] else ""}.
Held-out split: {r['split']}; {r['n_train']} train / {r['n_test']} test samples, {r['classes']} labels.

| representation | kNN | linear probe |
|---|---|---|
{rows}

**{r['verdict']}**

Health of the held-out pretrained embeddings: {health}.

![held-out embeddings]({Path(r['map']).name})
"""
