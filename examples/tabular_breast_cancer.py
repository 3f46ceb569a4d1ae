"""Tabular pretraining on a real table with 30 % of its cells missing, end to end via the CLI.

Data: scikit-learn's bundled Wisconsin diagnostic breast-cancer table (569 patients, 30
numeric measurements of cell nuclei, malignant / benign). 30 % of the feature cells are
removed at random (seeded) and the table is split 75 / 25, stratified, into ``train.csv`` and
``test.csv`` (columns ``id``, ``label``, then the 30 features; a removed cell is an empty
field). Pretraining sees only ``train.csv`` and never its labels; missing cells are padding
tokens, never imputed.

Probe: logistic regression (``omnipatch report``: standardised features, C by 3-fold CV on
the training split) and kNN on frozen embeddings of the held-out rows, for the pretrained
encoder, the same architecture at random init and the table's mean-imputed columns. Reference: the same logistic
regression on the raw features with each missing cell replaced by its training-column mean.

Run (about 2 minutes on 2 CPU cores; the CLI commands it runs are printed)::

    .venv/bin/python examples/tabular_breast_cancer.py [--steps 300] [--out runs/tabular] [--seed 0]

which runs, in short::

    omnipatch pretrain --modality tabular --data train.csv --out run \\
        --set data.options.id_column=id --set data.options.label_column=label \\
        --objective mae+dhel --set data.augment_strength=0.5 --preset micro --steps 300 ...
    omnipatch report run --data train.csv --test-data test.csv --labels labels.csv --out report

and prints (measured on a 2-core AMD EPYC shared with other jobs, load ~2, ``OMP_NUM_THREADS=1``)::

    pretraining: 300 steps in 115 s; masked reconstruction loss 1.2246 -> 0.5571
    held-out rows (143), 30 % of cells missing     linear    kNN
      logistic regression, complete table          0.986      -
      logistic regression, mean-imputed raw        0.937      -
      pretrained encoder                           0.958  0.937
      random-init encoder                          0.937  0.909
      raw features (mean-imputed columns)          0.944  0.741

(the first row, added this session, is the reference on the same rows before any cell was
removed; the last row is ``omnipatch report``'s baseline: the same logistic-regression probe on the
table's columns, missing cells imputed with the training mean). Pretraining beats both, but
random init by only 0.021: on this small, easy table a random tokeniser already separates
the classes well. Neither 600 steps (0.958 / 0.930) nor augmentation strength 1.0 (0.951 /
0.944) moved the linear probe.

Over missing-cell patterns and splits ``--seed 0 / 1 / 2``, the linear probe on pretrained
embeddings scored 0.958 / 0.944 / 0.951 against mean-imputed logistic regression's 0.937 /
0.937 / 0.944 (random init: 0.937 / 0.930 / 0.923). MAE + NT-Xent (the first recipe) gave
0.944 at seed 0; the periodic numeric embedding (``data.options.numeric_embedding=periodic``)
0.923; ``--set model.mask_ratio=0.3`` (fewer cells hidden, since 30 % are already missing)
0.951 / 0.937 (load 9-11, 1170 s wall).

The bar of the issue (linear probe 0.05 above random init, i.e. 0.987 here) is out of reach on
this split: the same logistic regression on the **complete** table, before any cell is removed,
scores 0.986 at seed 0 (0.965 at seeds 1 and 2), and on IterativeImputer-filled columns 0.965
(0.965 / 0.944). Random init already reaches 0.937, so the margin left to any encoder of the
incomplete table is at most about 0.03.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

try:
    from examples._cli import add_recipe_args, cli, probe_run
except ImportError:  # run as a script (python examples/<name>.py): examples/ is on the path
    from _cli import add_recipe_args, cli, probe_run

LABELS = {"pretrained": "pretrained encoder", "random init": "random-init encoder",
          "raw features": "raw features (mean-imputed columns)"}


def write_table(root: Path, missing: float = 0.3, seed: int = 0) -> dict[str, Path]:
    """``train.csv`` / ``test.csv`` (id, label, 30 features with blanks) and ``labels.csv``."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    d = load_breast_cancer(as_frame=True)
    df = d.data.copy()
    rng = np.random.default_rng(seed)
    df = df.mask(rng.random(df.shape) < missing)  # NaN -> an empty CSV field
    names = np.asarray(d.target_names)[d.target.to_numpy()]
    df.insert(0, "label", names)
    df.insert(0, "id", [f"patient_{i:03d}" for i in range(len(df))])
    tr, te = train_test_split(np.arange(len(df)), test_size=0.25, stratify=names, random_state=seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = {"train": root / "train.csv", "test": root / "test.csv", "labels": root / "labels.csv"}
    df.iloc[tr].to_csv(paths["train"], index=False)
    df.iloc[te].to_csv(paths["test"], index=False)
    df[["id", "label"]].to_csv(paths["labels"], index=False)
    return paths


def baseline(paths: dict[str, Path]) -> float:
    """Logistic regression on mean-imputed raw features (means of the training split)."""
    import pandas as pd
    from sklearn.impute import SimpleImputer

    from omnipatch.eval import linear_accuracy

    tr, te = pd.read_csv(paths["train"]), pd.read_csv(paths["test"])
    feats = [c for c in tr.columns if c not in ("id", "label")]
    imp = SimpleImputer(strategy="mean").fit(tr[feats])
    return linear_accuracy(imp.transform(tr[feats]), tr["label"], imp.transform(te[feats]), te["label"])


def complete_table_ceiling(paths: dict[str, Path]) -> float:
    """The same logistic regression on the split's rows with no cell removed: what any
    encoder of the incomplete table can at best approach."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    from omnipatch.eval import linear_accuracy

    full = load_breast_cancer(as_frame=True).data
    rows = lambda split: [int(i.split("_")[1]) for i in pd.read_csv(paths[split])["id"]]  # noqa: E731
    tr, te = pd.read_csv(paths["train"]), pd.read_csv(paths["test"])
    return linear_accuracy(full.iloc[rows("train")], tr["label"], full.iloc[rows("test")], te["label"])


def run(out: Path, steps: int, objective: str = "mae+dhel", extra: list[str] | None = None, seed: int = 0) -> dict:
    from omnipatch.train.engine import read_metrics

    t0 = time.time()
    paths = write_table(out / "data", seed=seed)
    run_dir = out / "run"
    sets = ["data.options.id_column=id", "data.options.label_column=label", "model.mask_ratio=0.5",
            "train.lr=1e-3", f"train.warmup_steps={max(1, steps // 20)}", "train.log_every=10",
            "data.augment_strength=0.5",
            f"train.checkpoint_every={steps}", *(extra or [])]
    cli("pretrain", "--modality", "tabular", "--data", str(paths["train"]), "--out", str(run_dir),
        "--objective", objective, "--preset", "micro", "--steps", str(steps), "--batch-size", "64",
        "--quiet", *[a for s in sets for a in ("--set", s)])
    t_train = time.time() - t0
    res = probe_run(run_dir, paths, out)
    base, ceiling = baseline(paths), complete_table_ceiling(paths)
    recs = [r for r in read_metrics(run_dir / "metrics.jsonl") if "mae" in r]
    first, last = recs[0]["mae"], float(np.mean([r["mae"] for r in recs[-3:]]))
    n_test = sum(1 for _ in csv.reader(open(paths["test"]))) - 1
    print(f"\npretraining: {steps} steps in {t_train:.0f} s; masked reconstruction loss {first:.4f} -> {last:.4f}")
    print(f"held-out rows ({n_test}), 30 % of cells missing     linear    kNN")
    print(f"  {'logistic regression, complete table':<40} {ceiling:>7.3f}      -")
    print(f"  {'logistic regression, mean-imputed raw':<40} {base:>7.3f}      -")
    for name, r in res.items():
        print(f"  {LABELS[name]:<40} {r['linear']:>7.3f}  {r['knn']:>5.3f}")
    result = {"steps": steps, "seconds": round(time.time() - t0, 1), "mae_first": first, "mae_last": last,
              "baseline_mean_imputed_logreg": base, "complete_table_logreg": ceiling, **res}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default="runs/tabular")
    add_recipe_args(p, "mae+dhel")
    p.add_argument("--seed", type=int, default=0, help="which cells go missing, and the split")
    a = p.parse_args()
    run(Path(a.out), a.steps, a.objective, a.set, a.seed)


if __name__ == "__main__":
    main()
