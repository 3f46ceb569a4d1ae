"""Every registered objective, trained for the same budget on the same real images.

Data: scikit-learn's bundled handwritten digits (UCI optdigits: 1,797 real 8x8 scans from 43
writers), written as PNG files with train/test manifests (``omnipatch.modalities.image_demo.write_digits``),
read by the image modality at 16x16. Each objective pretrains a fresh ``mini`` encoder from
the *same* initial weights (same seed), with the same data order, augmentations, masks,
optimiser and number of steps; then the frozen encoder embeds the 1,347 training and 450
held-out digits and a kNN classifier (k=20, cosine) scores the held-out ones. The first row
is the same encoder with no training at all (random init), the baseline to compare with.
Also printed: the embedding-health monitor (``omnipatch.train.monitors``) on the held-out
embeddings: ``rank`` = RankMe effective rank of the centred embeddings, ``rel_std`` = their
spread relative to their norm, and the collapse flag.

Run (about 4 minutes on 2 quiet cores with ``--threads 2``)::

    .venv/bin/python examples/objectives.py [--steps 100] [--out runs/objectives]
        [--objectives mae,contrastive,...] [--linear] [--threads 1]

It printed (100 steps each, batch 128; ``rank`` = centred RankMe, ``rel_std`` = spread/norm)::

    objective          kNN acc   rank rel_std collapsed   loss first->last seconds
    random init          0.622   22.8   0.102     False                  -       0
    mae                  0.556   20.9   0.013     False       1.017->0.453      11
    contrastive          0.844   28.5   0.054     False       5.496->4.688      13
    clip                 0.898   30.1   0.041     False       5.367->3.930      13
    barlow               0.720   19.7   0.039     False   804.000->608.800      14
    vicreg               0.849   25.8   0.209     False     22.615->21.057      15
    sigreg               0.796   26.5   0.039     False       1.124->0.474      14
    mv_infonce           0.887   25.5   0.225     False       4.775->3.530      25
    dhel                 0.924   53.5   0.026     False     20.738->17.200      24
    supcon               0.909   32.2   0.101     False       5.909->4.872      14
    mae+contrastive      0.856   24.4   0.085     False       6.516->5.385      19
    mae+sigreg           0.787   26.5   0.036     False       2.134->1.131      20

(seconds are wall time; ``mv_infonce`` and ``dhel`` draw 4 views per step,
the others 2, ``mae`` 1.) MAE alone needs far more than 100 steps to help a kNN probe (its
features are known to be poor for kNN without fine-tuning); the joint-embedding objectives
pull ahead within this budget, MV-DHEL most.
and writes ``results.json`` in ``--out``. Measured numbers are in the README ("Results").
``supcon`` is supervised (it uses the training split's digit labels): an upper reference, not
a self-supervised competitor.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

#: Rows of the table: name -> objectives config. Single objectives at their defaults, plus the
#: two compositions the seed papers use (CROMA: MAE + contrastive; MAE + SIGReg as a guard).
RECIPES: dict[str, dict] = {
    "mae": {"mae": {"weight": 1.0}},
    "contrastive": {"contrastive": {"weight": 1.0}},
    "clip": {"clip": {"weight": 1.0}},
    "barlow": {"barlow": {"weight": 1.0}},
    "vicreg": {"vicreg": {"weight": 1.0}},
    "sigreg": {"sigreg": {"weight": 1.0}},
    "mv_infonce": {"mv_infonce": {"weight": 1.0}},
    "dhel": {"dhel": {"weight": 1.0}},
    "supcon": {"supcon": {"weight": 1.0}},
    "mae+contrastive": {"mae": {"weight": 1.0}, "contrastive": {"weight": 1.0}},
    "mae+sigreg": {"mae": {"weight": 1.0}, "sigreg": {"weight": 1.0}},
}


def held_out(pre, data: dict, linear: bool) -> dict:
    """kNN (and optionally linear) accuracy + embedding health on the held-out digits."""
    import torch

    from omnipatch.eval import knn_accuracy, linear_accuracy
    from omnipatch.train.monitors import collapsed, health

    _, xtr = pre.embed(data["train"])
    _, xte = pre.embed(data["test"])
    ytr = np.array([e.label for e in pre.open(data["train"]).entries])
    yte = np.array([e.label for e in pre.open(data["test"]).entries])
    h = health(torch.as_tensor(xte))
    out = {"knn": knn_accuracy(xtr.numpy(), ytr, xte.numpy(), yte), "rank": h["rankme_centered"],
           "rel_std": h["rel_std"], "collapsed": collapsed(h)}
    if linear:
        out["linear"] = linear_accuracy(xtr.numpy(), ytr, xte.numpy(), yte)
    return out


def main(argv: list[str] | None = None) -> dict:
    from omnipatch.api import load
    from omnipatch.errors import OmnipatchError
    from omnipatch.modalities.image_demo import demo_config, write_digits
    from omnipatch.train.pretrain import pretrain

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/objectives")
    p.add_argument("--steps", type=int, default=100, help="pretraining steps per objective (same for all)")
    p.add_argument("--objectives", default=",".join(RECIPES), help="comma-separated rows of the table")
    p.add_argument("--linear", action="store_true", help="also a logistic-regression probe (slower)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch's default); 1 is ~5x faster on a CPU shared by other jobs")
    a = p.parse_args(argv)
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    out = Path(a.out)
    data = write_digits(out / "data")
    results: dict[str, dict] = {}
    first_run = None
    for name in a.objectives.split(","):
        cfg = demo_config(data["train"], a.steps)
        cfg.objectives = RECIPES[name]
        t0 = time.time()
        try:
            summary = pretrain(cfg, out / name, quiet=True, overwrite=True)
        except OmnipatchError as e:  # e.g. supcon on data without labels
            print(f"{name:<18} skipped: {e}", flush=True)
            continue
        seconds = time.time() - t0
        first_run = first_run or out / name
        results[name] = {**held_out(load(out / name), data, a.linear), "seconds": round(seconds, 1),
                         "loss_first": summary["first"].get("loss"), "loss_last": summary["last"].get("loss")}
        print(f"{name:<18} kNN {results[name]['knn']:.3f}  ({seconds:.0f} s)", flush=True)
    if first_run is not None:  # same architecture and seed as every run's starting point
        results = {"random init": {**held_out(load(first_run, random_init=True), data, a.linear)}, **results}
    print(f"\n{a.steps} steps per objective, batch 128, preset mini, 16x16 digits; "
          f"held-out kNN (k=20) on 450 digits\n")
    head = f"{'objective':<18} {'kNN acc':>7} " + (f"{'linear':>7} " if a.linear else "") + \
        f"{'rank':>6} {'rel_std':>7} {'collapsed':>9} {'loss first->last':>18} {'seconds':>7}"
    print(head)
    for name, r in results.items():
        loss = f"{r['loss_first']:.3f}->{r['loss_last']:.3f}" if "loss_first" in r else "-"
        print(f"{name:<18} {r['knn']:>7.3f} " + (f"{r['linear']:>7.3f} " if a.linear else "") +
              f"{r['rank']:>6.1f} {r['rel_std']:>7.3f} {str(r['collapsed']):>9} {loss:>18} "
              f"{r.get('seconds', 0):>7.0f}")
    (out / "results.json").write_text(json.dumps({"steps": a.steps, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
