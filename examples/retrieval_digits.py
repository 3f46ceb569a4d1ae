"""Cross-modal retrieval: handwritten digit images <-> spoken digits, in one embedding space.

Command (needs flite, installed by ``make examples-data``)::

    .venv/bin/python -m examples.retrieval_digits [--out runs/retrieval_digits] [--steps 300]

Data (real, offline): scikit-learn's 1,797 handwritten digits (8x8 scans, 43 writers) and
flite's spoken digits (750 clips: 5 voices x 5 rates x 3 pitches x 10 words, see
``examples/audio_digits.py``). Each split (75 % / 25 %, stratified, seed 0, so no image and no
clip is shared between splits) is paired at class level: every image is paired with a
spoken clip of the same digit drawn at random from the same split. Pairing is the only
supervision; labels are never given to the model.

Training: ``--modality image,audio`` on the paired manifest: one shared encoder, each
modality's MAE, and the CLIP loss between the pooled embeddings of the two sides
(``omnipatch.paired``). Evaluation: held-out images and clips embedded in the shared space;
class-level recall@1/5/10, mAP and median rank in both directions (a hit = same digit;
chance recall@1 = 10 %), for the trained model and for the same architecture at random
initialisation. Also exercises ``omnipatch retrieve index`` / ``query`` through the CLI.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def paired_manifest(images_csv: Path, audio_csv: Path, out_csv: Path, seed: int = 0) -> Path:
    """One row per image, paired with a random clip of the same digit (absolute paths)."""
    rng = np.random.default_rng(seed)
    imgs = list(csv.DictReader(open(images_csv)))
    clips = list(csv.DictReader(open(audio_csv)))
    by_label: dict[str, list[dict]] = {}
    for c in clips:
        by_label.setdefault(c["label"], []).append(c)
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "audio", "pair_id", "label"])
        for im in imgs:
            c = by_label[im["label"]][rng.integers(len(by_label[im["label"]]))]
            ip = (images_csv.parent / im["path"]).resolve()
            ap = (audio_csv.parent / c["path"]).resolve()
            w.writerow([ip, ap, im["id"], im["label"]])
    return out_csv


def config(manifest: Path, steps: int):
    from omnipatch.config import Config

    cfg = Config()
    cfg.data.modality = "image,audio"
    cfg.data.source = str(manifest)
    cfg.data.options = {"image": {"image_size": 16, "patch_size": 4, "channels": 1},
                        "audio": {"sample_rate": 16000, "seconds": 1.0, "n_mels": 64, "patch_size": [4, 16]}}
    cfg.model.preset = "mini"
    cfg.model.mask_ratio = 0.5
    cfg.model.cross_weight = 1.0
    cfg.objectives = {"mae": {"weight": 1.0}}
    cfg.train.steps = steps
    cfg.train.batch_size = 128
    cfg.train.lr = 1e-3
    cfg.train.warmup_steps = max(1, steps // 20)
    cfg.train.checkpoint_every = steps
    return cfg


def evaluate_run(run: Path, manifest: Path, random_init: bool) -> dict:
    from omnipatch.api import load
    from omnipatch.paired import PairedDataset
    from omnipatch.retrieval import evaluate

    pre = load(run, random_init=random_init)
    ds = PairedDataset(manifest, lambda m, paths: pre.open(paths, modality=m), ["image", "audio"])
    _, ei = pre.embed(ds.datasets["image"], modality="image", space="cross")
    _, ea = pre.embed(ds.datasets["audio"], modality="audio", space="cross")
    # class-level: the gallery is every held-out clip / image, a hit is the same digit
    res = evaluate(ei, ds.labels, ea, ds.labels)
    return {"image->audio": res["a->b"], "audio->image": res["b->a"]}


def main(argv: list[str] | None = None) -> dict:
    from examples.audio_digits import synthesise
    from omnipatch.cli import main as cli
    from omnipatch.demo import write_digits
    from omnipatch.pretrain import pretrain

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/retrieval_digits")
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    t0 = time.time()
    images = write_digits(out / "images")
    audio = synthesise(out / "audio")
    pairs = {s: paired_manifest(images[s], audio[s], out / f"pairs_{s}.csv") for s in ("train", "test")}
    print(f"data: {sum(1 for _ in open(pairs['train'])) - 1} train / {sum(1 for _ in open(pairs['test'])) - 1} "
          f"held-out image-speech pairs ({time.time() - t0:.0f} s)")
    t1 = time.time()
    summary = pretrain(config(pairs["train"], a.steps), out / "run", quiet=True)
    t_train = time.time() - t1
    first, last = summary["first"], summary["last"]
    print(f"\npretraining: {a.steps} steps in {t_train:.0f} s; CLIP loss {first['cross']:.3f} -> {last['cross']:.3f}; "
          f"image MAE {first['image/mae']:.3f} -> {last['image/mae']:.3f}; audio MAE {first['audio/mae']:.3f} -> "
          f"{last['audio/mae']:.3f}")
    res = {name: evaluate_run(out / "run", pairs["test"], rnd) for name, rnd in (("trained", False), ("random init", True))}
    print("\nheld-out class-level retrieval (chance recall@1 = 0.10)")
    print(f"  {'':<14} {'direction':<14} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'mAP':>6} {'medR':>6}")
    for name, r in res.items():
        for d, m in r.items():
            print(f"  {name:<14} {d:<14} {m['recall@1']:>6.3f} {m['recall@5']:>6.3f} {m['recall@10']:>6.3f} "
                  f"{m['mAP']:>6.3f} {m['median_rank']:>6.0f}")
    # the same through the command line: index the held-out images, query with held-out speech
    test_imgs, test_clips = out / "index_images.csv", out / "query_audio.csv"
    rows = list(csv.DictReader(open(pairs["test"])))
    test_imgs.write_text("path,id\n" + "".join(f"{r['image']},{r['pair_id']}\n" for r in rows))
    test_clips.write_text("path,id\n" + "".join(f"{r['audio']},{r['pair_id']}\n" for r in rows))
    t2 = time.time()
    cli(["retrieve", "index", "--checkpoint", str(out / "run"), "--modality", "image", "--data", str(test_imgs),
         "--out", str(out / "index")])
    cli(["retrieve", "query", "--index", str(out / "index"), "--modality", "audio", "--data", str(test_clips),
         "--k", "10", "--out", str(out / "results.csv")])
    print(f"index + query of {len(rows)} items each through the CLI: {time.time() - t2:.1f} s")
    result = {**res, "steps": a.steps, "train_seconds": round(t_train, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
