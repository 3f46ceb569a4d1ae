"""Masking: ours (select by argsort + scatter inverse + expand-gather) vs Hugging Face
``ViTMAEEmbeddings.random_masking`` on the same noise (so the results must be equal).

Run: ``python -m benchmarks.bench_masking``.
"""

from __future__ import annotations

import torch

from benchmarks.harness import interleaved, report
from omnipatch.masking import gather_tokens, select

SHAPES = [(64, 64, 192, 0.75), (256, 196, 384, 0.75), (32, 1568, 384, 0.9), (8, 4096, 768, 0.75)]


def hf_masking(x: torch.Tensor, noise: torch.Tensor, ratio: float):
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEConfig, ViTMAEEmbeddings

    emb = ViTMAEEmbeddings(ViTMAEConfig(hidden_size=x.shape[-1], mask_ratio=ratio, image_size=16, patch_size=16))
    return lambda: emb.random_masking(x, noise=noise)


def ours(x: torch.Tensor, noise: torch.Tensor, ratio: float):
    B, L, _ = x.shape
    k = torch.full((B,), int(L * (1 - ratio)), dtype=torch.long)

    def f():
        res = select(noise, k)
        return gather_tokens(x, res.idx_keep), res.loss_mask, res.idx_restore

    return f


def main() -> list[dict]:
    rows = []
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for B, L, D, r in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, L, D, generator=g).to(dev)
        noise = torch.rand(B, L, generator=g).to(dev)
        hf, us = hf_masking(x, noise, r), ours(x, noise, r)
        a, b = hf(), us()
        equal = torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
        t = interleaved({"ours": us, "peer": hf}, repeats=7, inner=5)
        rows.append({"shape (B,L,D,ratio)": f"{B},{L},{D},{r}", "ours_ms": t["ours"] * 1e3,
                     "peer_ms": t["peer"] * 1e3, "peer": "HF ViTMAE random_masking",
                     "ratio": t["peer"] / t["ours"], "equal": equal})
    report("masking", rows, ["shape (B,L,D,ratio)", "ours_ms", "peer_ms", "ratio", "equal"])
    return rows


if __name__ == "__main__":
    main()
