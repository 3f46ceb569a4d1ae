"""A contrastive batch larger than fits at once, through gradient-cached accumulation.

SimCLR's NT-Xent (``--objective contrastive``) on 1,024 real digit images (scikit-learn's
``load_digits``, written as 32x32 PNGs and read by the image modality) with the ``micro``
encoder, one optimiser step, three ways, each in a fresh process:

- ``big batch``: one autograd graph over all 1,024 samples (every activation held at once),
  the definition of the large-batch gradient;
- ``cached 8 x 128``: ``train.grad_accum=8`` micro-batches of 128 through
  :func:`omnipatch.train.accumulate.backward_cached` (the engine's path), the loss over all 1,024;
- ``one micro-batch``: a single 128-sample step, the memory a micro-batch needs.

Printed: peak RSS above the RSS after building the model and reading the data (MiB), the
ratio to the big batch, seconds, the loss, and the largest gradient difference to the big
batch (the cached step must match it; a plain accumulation would not).

Run: ``python -m benchmarks.bench_accum [--quick]`` (``--quick``: 256 = 4 x 64).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import report


def write_digits(root: Path, n: int) -> Path:
    """The first ``n`` digits as 32x32 PNGs plus a manifest (no labels)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rows = []
    for i in range(n):
        img = Image.fromarray((d.images[i] * (255 / 16)).astype(np.uint8)).resize((32, 32), Image.BILINEAR)
        img.save(root / f"d{i:04d}.png")
        rows.append(f"d{i:04d}.png,d{i}\n")
    (root / "manifest.csv").write_text("path,id\n" + "".join(rows))
    return root / "manifest.csv"


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def child(mode: str, manifest: str, total: int, micro: int, out: str) -> dict:
    """One step in this process; returns the measurements and saves the gradients."""
    from contextlib import nullcontext

    import torch

    from omnipatch.batch import collate
    from omnipatch.config import Config
    from omnipatch.modality import MODALITIES
    from omnipatch.train.accumulate import backward_cached, backward_plain
    from omnipatch.train.build import build_model, open_data
    from omnipatch.train.engine import StepModule, step_generator
    from omnipatch.train.steps import single_modality_step
    from omnipatch.train.strategy import Strategy

    torch.set_num_threads(1)
    cfg = Config()
    cfg.data.options = {"image_size": 32, "patch_size": 4, "channels": 1}
    cfg.model.preset = "micro"
    cfg.objectives = {"contrastive": {"weight": 1.0}}
    spec = MODALITIES.get("image")
    ds = open_data(spec, manifest, cfg.data.options)
    model = build_model(cfg, {"image": ds})
    step = single_modality_step(model, "image", spec.augment)
    module = StepModule(model, step).train()
    n_micro = total // micro if mode != "micro" else 1
    micros = [(collate([ds[i] for i in range(k * micro, (k + 1) * micro)]), step_generator(0, k, torch.device("cpu")))
              for k in range(n_micro)]
    base = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    t = time.perf_counter()
    if mode == "big":  # one graph over every micro-batch's views: all activations at once
        pooled = []
        for batch, g in micros:
            _, z, _ = step.encode(batch, g)
            pooled.append(z)
        loss = model.batch_terms(torch.cat(pooled, 1))["loss"]
        loss.backward()
        loss = float(loss.detach())
    else:
        backward = backward_cached if mode == "cached" else backward_plain
        terms = backward(module, micros, Strategy("single"), len(micros), 0, nullcontext(), _NoScaler())
        loss = float(terms[0]["loss"])
    seconds = time.perf_counter() - t
    peak = _status_mib("VmHWM") - base
    torch.save({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, out)
    return {"peak_mib": peak, "seconds": seconds, "loss": loss}


class _NoScaler:
    def scale(self, x):
        return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=5, metavar=("MODE", "MANIFEST", "TOTAL", "MICRO", "OUT"))
    a = ap.parse_args()
    if a.child:
        mode, manifest, total, micro, out = a.child
        print(json.dumps(child(mode, manifest, int(total), int(micro), out)))
        return
    import torch

    total, micro = (256, 64) if a.quick else (1024, 128)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_digits(Path(tmp), total)
        res, grads = {}, {}
        for mode in ("big", "cached", "micro"):
            out = f"{tmp}/{mode}.pt"
            p = subprocess.run([sys.executable, "-m", "benchmarks.bench_accum", "--child", mode, str(manifest),
                                str(total), str(micro), out], capture_output=True, text=True, check=True)
            res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
            grads[mode] = torch.load(out, weights_only=True)
    n = total // micro
    names = {"big": f"big batch {total}", "cached": f"cached {n} x {micro}", "micro": f"one micro-batch {micro}"}
    for mode, r in res.items():
        diff = max(float((grads[mode][k] - g).abs().max()) for k, g in grads["big"].items()) if mode != "micro" else None
        rows.append({"step": names[mode], "peak MiB": r["peak_mib"], "vs big batch": r["peak_mib"] / res["big"]["peak_mib"],
                     "seconds": r["seconds"], "loss": r["loss"], "max |grad - big|": diff})
    report("bench_accum", rows, ["step", "peak MiB", "vs big batch", "seconds", "loss", "max |grad - big|"])


if __name__ == "__main__":
    main()
