"""A full MAE training step (forward + backward + AdamW) vs Hugging Face
``ViTMAEForPreTraining`` at the same configuration, plus model FLOP/s as a fraction of a
large matmul on the same machine (the practical roof).

Configurations: image 64, patch 8, width 192, depth 6, heads 3, decoder 2 x 128, batch 64,
mask 0.75; and ViT-S/16 at 224 px, batch 8. Both sides run under the same autocast (bf16 by
default on CPU; pass --fp32 to compare in float32) with the attention implementation named
in the row. Run: ``python -m benchmarks.bench_mae_step [--quick] [--fp32]``.
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


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="first configuration only")
    ap.add_argument("--fp32", action="store_true")
    a = ap.parse_args(argv)
    dtype = torch.float32 if a.fp32 else torch.bfloat16
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    roof = matmul_flops(dtype)
    rows = []
    for c in CONFIGS[:1] if a.quick else CONFIGS:
        torch.manual_seed(0)
        x = torch.randn(c["batch"], 3, c["img"], c["img"], device=dev)
        ours = ours_model(c)
        g = torch.Generator().manual_seed(0)
        f_ours = step_fn(ours, lambda: ours([Batch(x=x)], "image", g)["loss"], dtype)
        fns = {"ours": f_ours}
        for attn in ("eager", "sdpa"):
            hf = hf_model(c, attn)
            fns[f"hf_{attn}"] = step_fn(hf, (lambda m: lambda: m(pixel_values=x).loss)(hf), dtype)
        t = interleaved(fns, repeats=5 if not a.quick else 3, inner=2, warmup=2)
        n_ours = sum(p.numel() for p in ours.parameters())
        for attn in ("eager", "sdpa"):
            rows.append({"config": c["name"], "peer": f"HF ViTMAEForPreTraining ({attn})",
                         "ours_img_s": c["batch"] / t["ours"], "peer_img_s": c["batch"] / t[f"hf_{attn}"],
                         "ratio": t[f"hf_{attn}"] / t["ours"], "params_M": n_ours / 1e6,
                         "mfu_vs_matmul": model_flops(c) / t["ours"] / roof, "dtype": str(dtype).split(".")[-1]})
    report("mae_step", rows, ["config", "peer", "ours_img_s", "peer_img_s", "ratio", "mfu_vs_matmul", "dtype"])
    return rows


if __name__ == "__main__":
    main()
