"""Cost against tokens per sample: MAE step time and peak memory, ours vs Hugging Face
``ViTMAEForPreTraining`` (eager and sdpa attention) at the same width, depth and patching.

Tokens are the encoder's *visible* tokens per sample (64 -> 4,096); with mask ratio 0.75 the
image has 4x as many patches (the decoder's length): 16x16 -> 128x128 patches of 4 px, one
channel, width 128, depth 2, heads 2, decoder 1 x 64 (2 heads), batch 1 -- small, so the
sweep fits a laptop; attention dominates from ~1k tokens on. Both sides run in the precision
``train.precision=auto`` picks on this machine (``--dtype`` to force one).

Time: per length, one fresh process steps every contender in alternation (median of
``--reps`` blocks of >= 0.25 s). Memory: each contender in its own fresh process (address space capped at
``--mem-gib``), peak RSS above the RSS after building the model, (one full step: forward, backward, AdamW). A contender that runs out of memory is reported as OOM and left
out of the timing. Run: ``python -m benchmarks.bench_scaling [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.harness import report

CHILD = r"""
import json, resource, sys
spec = json.loads(sys.argv[1])
if spec["mode"] == "mem":
    lim = int(spec["mem_gib"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
import torch
from benchmarks.bench_scaling import build
from omnipatch.train.precision import resolve
resolve(spec["precision"], "cpu")  # this machine's attention crossover, as in a run (cached)
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
dtype = getattr(torch, spec["dtype"])
fns = {}
try:
    for who in spec["who"]:
        fns[who] = build(who, spec["tokens"], dtype)
    if spec["mode"] == "mem":
        base = hwm()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = hwm()
        fns[spec["who"][0]]()  # one step: activations + gradients + AdamW state
        print(json.dumps({"peak_mib": hwm() - base}))
    else:
        import time
        from benchmarks.harness import interleaved
        f = fns[spec["who"][0]]
        f()
        t = time.perf_counter(); f(); t = time.perf_counter() - t
        inner = max(1, int(0.25 / t))  # short steps: several per timed block, or noise wins
        print(json.dumps(interleaved(fns, repeats=spec["reps"], inner=inner, warmup=1)))
except (MemoryError, RuntimeError) as e:
    if "memory" not in str(e).lower() and not isinstance(e, MemoryError):
        raise
    print(json.dumps({"oom": True}))
"""

WIDTH, DEPTH, HEADS, DDIM, DDEPTH, DHEADS, BATCH, PATCH, MASK = 128, 2, 2, 64, 1, 2, 1, 4, 0.75


def build(who: str, visible: int, dtype):
    """One MAE training step (forward + backward + AdamW) of ``who`` at ``visible`` tokens."""
    import torch

    side = int(round((visible / (1 - MASK)) ** 0.5))  # patches per side
    img = side * PATCH
    torch.manual_seed(0)
    x = torch.randn(BATCH, 1, img, img)
    if who == "ours":
        from omnipatch.adapters import ImageAdapter
        from omnipatch.batch import Batch
        from omnipatch.encoder import EncoderConfig
        from omnipatch.heads import DecoderConfig
        from omnipatch.masking import MaskSpec
        from omnipatch.model import OmniModel

        m = OmniModel({"image": ImageAdapter(in_chans=1, patch_size=PATCH, dim=WIDTH)},
                      EncoderConfig(WIDTH, DEPTH, HEADS), DecoderConfig(DDIM, DDEPTH, DHEADS),
                      {"mae": {"weight": 1.0}}, {"image": MaskSpec("random", MASK)})
        g = torch.Generator().manual_seed(0)
        run = lambda: m([Batch(x=x)], "image", g)["loss"]  # noqa: E731
    else:
        from transformers import ViTMAEConfig, ViTMAEForPreTraining

        cfg = ViTMAEConfig(image_size=img, patch_size=PATCH, num_channels=1, hidden_size=WIDTH,
                           num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=4 * WIDTH,
                           decoder_hidden_size=DDIM, decoder_num_hidden_layers=DDEPTH,
                           decoder_num_attention_heads=DHEADS, decoder_intermediate_size=4 * DDIM,
                           mask_ratio=MASK, norm_pix_loss=False, attn_implementation=who.removeprefix("hf_"))
        m = ViTMAEForPreTraining(cfg)
        run = lambda: m(pixel_values=x).loss  # noqa: E731
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = run()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _child(spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, env=env)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        if r.returncode in (-9, 137) or "memory" in r.stderr.lower():
            return {"oom": True}
        raise RuntimeError(f"child failed ({r.returncode}): {r.stderr[-800:]}")
    return json.loads(lines[-1])


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="64, 256 and 1,024 tokens only")
    ap.add_argument("--tokens", default="64,256,1024,4096")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mem-gib", type=float, default=12.0)
    a = ap.parse_args(argv)
    import torch

    from omnipatch.layers.attention import choose_impl, cpu_crossover
    from omnipatch.train.precision import resolve

    prec = resolve(a.dtype, "cpu")
    dtype = str(prec.dtype).removeprefix("torch.")
    lengths = [int(t) for t in a.tokens.split(",")][: 3 if a.quick else None]
    peers = ["hf_eager", "hf_sdpa"]
    rows = []
    for n in lengths:
        mem = {w: _child({"mode": "mem", "who": [w], "tokens": n, "dtype": dtype, "mem_gib": a.mem_gib,
                          "precision": prec.name})
               for w in ["ours", *peers]}
        alive = [w for w in ["ours", *peers] if not mem[w].get("oom")]
        reps = a.reps if n < 4096 else 1  # the longest: one timed step after a warm-up (tens of seconds each)
        t = _child({"mode": "time", "who": alive, "tokens": n, "dtype": dtype, "reps": reps,
                    "precision": prec.name}) if alive else {}
        impl = "/".join(choose_impl(torch.empty(BATCH, h, L, 1, dtype=prec.dtype))
                        for L, h in ((n, HEADS), (int(n / (1 - MASK)), DHEADS)))
        for p in peers:
            def ms(w):
                return "OOM" if mem[w].get("oom") else t[w] * 1e3

            def mib(w):
                return "OOM" if mem[w].get("oom") else mem[w]["peak_mib"]

            ok = not mem["ours"].get("oom")
            rows.append({"tokens": n, "patches": int(n / (1 - MASK)), "peer": p, "ours_ms": ms("ours"),
                         "peer_ms": ms(p), "time_ratio": (t[p] / t["ours"]) if ok and p in t else None,
                         "ours_MiB": mib("ours"), "peer_MiB": mib(p),
                         "mem_ratio": (mem["ours"]["peak_mib"] / mem[p]["peak_mib"]) if ok and p in t else None,
                         "ours_attn (enc/dec)": impl, "dtype": dtype})
        print(json.dumps(rows[-2:]), file=sys.stderr, flush=True)
    report("scaling", rows, ["tokens", "patches", "peer", "ours_ms", "peer_ms", "time_ratio", "ours_MiB",
                             "peer_MiB", "mem_ratio", "ours_attn (enc/dec)", "dtype"])
    print(f"precision {prec.name} ({prec.reason}); CPU attention crossover {cpu_crossover(prec.dtype)} tokens; "
          f"torch {torch.__version__}; load {os.getloadavg()[0]:.1f}")
    return rows


if __name__ == "__main__":
    main()
