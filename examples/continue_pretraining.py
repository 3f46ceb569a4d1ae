"""Continued pretraining: pretrain run A on natural-image patches, continue it on handwritten
digits with ``--init A``, and compare with a from-scratch digits run of the same length.

Command::

    OMP_NUM_THREADS=1 .venv/bin/python -m examples.continue_pretraining [--out runs/continue] [--steps 200]

Data (real, offline): A = 16 x 16 grey crops of the two photographs bundled with
scikit-learn (``load_sample_images``: a temple in China, a flower; 3000 random 48 x 48
crops, downscaled); B = scikit-learn's handwritten digits (``omnipatch.demo.write_digits``,
1347 train / 450 held-out, upscaled 8 -> 16 px). Both use the demo's recipe (mini preset,
patch 4, MAE + contrastive). Probes: kNN (k=20) and a linear probe on frozen embeddings of
the held-out digits, as the demo.

Prints the first / last logged MAE loss of each run and the probe table (README, "Start from
a public checkpoint").
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def write_photo_crops(root: Path, n: int = 3000, seed: int = 0) -> Path:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.fromarray(im).convert("L")) for im in load_sample_images().images]
    (root / "png").mkdir(parents=True, exist_ok=True)
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id"])
        for i in range(n):
            im = photos[i % len(photos)]
            y, x = rng.integers(0, im.shape[0] - 48), rng.integers(0, im.shape[1] - 48)
            name = f"png/crop_{i:04d}.png"
            Image.fromarray(im[y:y + 48, x:x + 48]).resize((16, 16), Image.BILINEAR).save(root / name)
            w.writerow([name, f"crop_{i:04d}"])
    return root / "train.csv"


def main(argv=None) -> dict:
    from omnipatch.api import load
    from omnipatch.demo import demo_config, probe, write_digits
    from omnipatch.pretrain import pretrain

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/continue")
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args(argv)
    out = Path(a.out)
    digits = write_digits(out / "digits")
    crops = write_photo_crops(out / "photos")
    runs = {}
    runs["A: photo crops"] = pretrain(demo_config(crops, a.steps), out / "A", quiet=True, overwrite=True)
    runs["B from A (--init A)"] = pretrain(demo_config(digits["train"], a.steps), out / "B_init", quiet=True, overwrite=True,
                                           init=str(out / "A"))
    runs["B from scratch"] = pretrain(demo_config(digits["train"], a.steps), out / "B_scratch", quiet=True, overwrite=True)
    res = {}
    print(f"{'run':<22} {'first mae':>9} {'last mae':>9} {'kNN':>6} {'linear':>7}   (held-out digits)")
    for name, d in (("A: photo crops", "A"), ("B from A (--init A)", "B_init"), ("B from scratch", "B_scratch")):
        s = runs[name]
        p = probe(load(out / d), digits["train"], digits["test"])
        res[name] = {"mae_first": s["first"].get("mae"), "mae_last": s["last"].get("mae"),
                     "knn": p["knn"], "linear": p["linear"]}
        r = res[name]
        print(f"{name:<22} {r['mae_first']:>9.4f} {r['mae_last']:>9.4f} {r['knn']:>6.3f} {r['linear']:>7.3f}")
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
