"""A full MAE training step (forward + backward + AdamW) vs Hugging Face
``ViTMAEForPreTraining`` at the same configuration, plus model FLOP/s as a fraction of a
large matmul on the same machine (the practical roof).

Configurations: image 64, patch 8, width 192, depth 6, heads 3, decoder 2 x 128, batch 64,
mask 0.75; and ViT-S/16 at 224 px, batch 8. Both sides run under the same autocast, in fp32
and in bf16 (``--dtype`` for one), with the attention implementation named in the row; the
last table says what ``train.precision=auto`` picks on this machine (its cached probe) and
whether that is the faster of the two, measured side by side. ``--compile`` adds our step
with the blocks through ``torch.compile`` (``train.compile=true``).
Run: ``python -m benchmarks.bench_mae_step [--quick] [--dtype fp32|bf16] [--compile]``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.harness import interleaved, report
from omnipatch.adapters import ImageAdapter
from omnipatch.batch import Batch
from omnipatch.encoder import EncoderConfig
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MaskSpec
from omnipatch.model import OmniModel

CONFIGS = [
    dict(name="64px p8 w192 d6 b64", img=64, patch=8, dim=192, depth=6, heads=3, ddim=128, ddepth=2, dheads=4, batch=64),
    dict(name="ViT-S/16 224px b8", img=224, patch=16, dim=384, depth=12, heads=6, ddim=256, ddepth=4, dheads=8, batch=8),
]
# the GPU run (benchmarks/gpu.sh): MAE ViT-B/16 at 224 px with He et al.'s 8 x 512 decoder
VITB = dict(name="ViT-B/16 224px b128", img=224, patch=16, dim=768, depth=12, heads=12, ddim=512, ddepth=8, dheads=16,
            batch=128)
# dense bf16 peak TFLOP/s (vendor sheets) for MFU against the chip, not only against a matmul
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}


def ours_model(c) -> OmniModel:
    a = ImageAdapter(in_chans=3, patch_size=c["patch"], dim=c["dim"])
    return OmniModel({"image": a}, EncoderConfig(c["dim"], c["depth"], c["heads"]),
                     DecoderConfig(c["ddim"], c["ddepth"], c["dheads"]), {"mae": {"weight": 1.0}},
                     {"image": MaskSpec("random", 0.75)})


def hf_model(c, attn: str):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    cfg = ViTMAEConfig(image_size=c["img"], patch_size=c["patch"], num_channels=3, hidden_size=c["dim"],
                       num_hidden_layers=c["depth"], num_attention_heads=c["heads"], intermediate_size=4 * c["dim"],
                       decoder_hidden_size=c["ddim"], decoder_num_hidden_layers=c["ddepth"],
                       decoder_num_attention_heads=c["dheads"], decoder_intermediate_size=4 * c["ddim"],
                       mask_ratio=0.75, norm_pix_loss=False, attn_implementation=attn)
    return ViTMAEForPreTraining(cfg)


def step_fn(model, run, dtype):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(dev).train()

    def f():
        with torch.autocast(dev, dtype=dtype, enabled=dtype != torch.float32):
            loss = run()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return f


def matmul_flops(dtype, n: int = 2048) -> float:
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    t = interleaved({"mm": lambda: a @ b}, repeats=5, inner=3)["mm"]
    return 2 * n**3 / t


def model_flops(c) -> float:
    """Training FLOPs per step (3x forward) for encoder on 25 % tokens + decoder on all."""
    L = (c["img"] // c["patch"]) ** 2
    k = L // 4

    def tf(n, d, depth):  # per token: 24 d^2 (qkv, proj, mlp 4x) + 4 n d (attention)
        return depth * n * (24 * d * d + 4 * n * d)

    fwd = tf(k, c["dim"], c["depth"]) + tf(L, c["ddim"], c["ddepth"]) + L * 3 * c["patch"] ** 2 * (c["dim"] + c["ddim"])
    return 3 * fwd * c["batch"]


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="first configuration only")
    ap.add_argument("--dtype", choices=["both", *DTYPES], default="both")
    ap.add_argument("--compile", action="store_true", help="also time our step with torch.compile'd blocks")
    ap.add_argument("--vitb", action="store_true", help="MAE ViT-B/16 224 px only (the GPU run)")
    a = ap.parse_args(argv)
    from omnipatch.train.precision import resolve

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    auto = resolve("auto", dev)  # the probe (cached per machine) a run with train.precision=auto uses
    names = list(DTYPES) if a.dtype == "both" else [a.dtype]
    rows, picks = [], []
    peak = next((v for k, v in PEAK_TFLOPS.items() if dev == "cuda" and k in torch.cuda.get_device_name(0)), None)
    for c in [VITB] if a.vitb else CONFIGS[:1] if a.quick else CONFIGS:
        torch.manual_seed(0)
        x = torch.randn(c["batch"], 3, c["img"], c["img"], device=dev)
        fns = {}
        for dn in names:  # every dtype and contender alternated in one interleaved run
            dtype = DTYPES[dn]
            ours = ours_model(c)
            g = torch.Generator(device=dev if dev == "cuda" else "cpu").manual_seed(0)
            fns[f"ours/{dn}"] = step_fn(ours, (lambda m, g: lambda: m([Batch(x=x)], "image", g)["loss"])(ours, g), dtype)
            if a.compile:
                from omnipatch.train.compiled import compile_blocks

                oc = ours_model(c)
                compile_blocks(oc)
                gc = torch.Generator(device=dev if dev == "cuda" else "cpu").manual_seed(0)
                fns[f"ours_compiled/{dn}"] = step_fn(oc, (lambda m, g: lambda: m([Batch(x=x)], "image", g)["loss"])(oc, gc),
                                                     dtype)
            for attn in ("eager", "sdpa"):
                hf = hf_model(c, attn)
                fns[f"hf_{attn}/{dn}"] = step_fn(hf, (lambda m: lambda: m(pixel_values=x).loss)(hf), dtype)
        t = interleaved(fns, repeats=5 if not a.quick else 3, inner=2, warmup=2)
        for dn in names:
            roof = matmul_flops(DTYPES[dn])
            variants = ["ours", "ours_compiled"] if a.compile else ["ours"]
            for v in variants:
                for attn in ("eager", "sdpa"):
                    key = f"{v}/{dn}"
                    rows.append({"config": c["name"], "ours": v, "peer": f"HF ViTMAEForPreTraining ({attn})",
                                 "ours_img_s": c["batch"] / t[key], "peer_img_s": c["batch"] / t[f"hf_{attn}/{dn}"],
                                 "ratio": t[f"hf_{attn}/{dn}"] / t[key],
                                 "mfu_vs_matmul": model_flops(c) / t[key] / roof, "dtype": dn,
                                 "mfu_vs_peak": model_flops(c) / t[key] / (peak * 1e12) if peak else None})
        if len(names) == 2:
            best = min(names, key=lambda dn: t[f"ours/{dn}"])
            picks.append({"config": c["name"], "auto_picks": auto.name, "why": auto.reason,
                          "fp32_img_s": c["batch"] / t["ours/fp32"], "bf16_img_s": c["batch"] / t["ours/bf16"],
                          "auto_vs_best": t[f"ours/{best}"] / t[f"ours/{auto.name}"] if auto.name in names else None,
                          "auto_is_best": auto.name == best})
    report("mae_step", rows, ["config", "ours", "peer", "ours_img_s", "peer_img_s", "ratio", "mfu_vs_matmul",
                              *(["mfu_vs_peak"] if peak else []), "dtype"])
    if picks:
        report("mae_step_precision", picks, ["config", "auto_picks", "why", "fp32_img_s", "bf16_img_s",
                                             "auto_vs_best", "auto_is_best"])
    return rows + picks


if __name__ == "__main__":
    main()
