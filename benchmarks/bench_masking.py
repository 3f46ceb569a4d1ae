"""Masking: ours vs Hugging Face ``ViTMAEEmbeddings.random_masking`` on the same noise, the
decoder prologue vs MAE's formulation, and selection (``topk``) vs a full sort.

Tables (each row: ours and a named peer timed in alternation in the same run, ``ratio`` =
peer time / our time, > 1 means we are faster, and an equivalence check):

- ``masking``: keys -> kept tokens, mask and restore index. Ours is the device path of
  ``omnipatch.masking`` (CPU: argsort + scatter inverse + one ``index_select``; CUDA: the
  fused Triton kernel, one launch). The peer argsorts twice and gathers with a materialised
  ``(B, K, D)`` int64 index. ``equal``: same mask, same kept set, same kept rows (ties in
  the noise may legitimately reorder rows; ``restore_equal`` says whether the restore index
  also matches bit for bit). On a GPU, ``bw_frac`` = (bytes moved / measured copy
  bandwidth) / our time: the fraction of the memory roof we reach.
- ``masking_random``: (GPU only) random masking including the key draw: ours draws keys in
  the kernel (Philox), the peer calls ``random_masking`` without noise (``torch.rand``).
- ``masking_prologue``: decoder prologue ``(B, K, D) -> (B, L, D)`` + positional embedding:
  ours (``unshuffle(..., pos=)``) vs MAE / HF (``cat`` + ``gather`` with a repeated index +
  add).
- ``masking_select``: ``topk(K)`` vs ``argsort`` on the keys: what selection would save over
  a full sort (``equal``: same kept set). The reference keeps the sort because the restore
  index must rank the hidden tokens too (to match MAE's ``ids_restore``).

Run: ``python -m benchmarks.bench_masking [--quick]``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.harness import interleaved, report
from omnipatch.masking import gather_tokens, reference, select, unshuffle

SHAPES = [(64, 64, 192, 0.75), (256, 196, 384, 0.75), (32, 1568, 384, 0.9), (8, 4096, 768, 0.75)]


def _hf_embeddings(D: int, ratio: float):
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEConfig, ViTMAEEmbeddings

    return ViTMAEEmbeddings(ViTMAEConfig(hidden_size=D, mask_ratio=ratio, image_size=16, patch_size=16))


def hf_masking(x: torch.Tensor, noise: torch.Tensor | None, ratio: float):
    emb = _hf_embeddings(x.shape[-1], ratio).to(x.device)
    return lambda: emb.random_masking(x, noise=noise)


def ours_masking(x: torch.Tensor, noise: torch.Tensor, ratio: float):
    B, L, _ = x.shape
    K = int(L * (1 - ratio))  # HF's len_keep
    if x.is_cuda:
        from omnipatch.masking import triton as kernels

        def f():
            x_vis, res = kernels.mask_gather(x, K, keys=noise, K=K)
            return x_vis, res.loss_mask, res.idx_restore
    else:
        k = torch.full((B,), K, dtype=torch.long)

        def f():
            res = select(noise, k)
            return gather_tokens(x, res.idx_keep), res.loss_mask, res.idx_restore

    return f


def _rows_by_index(x_vis: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
    """Kept rows reordered by token index (the kept ones are those with restore < K)."""
    K = x_vis.shape[1]
    keep = torch.argsort(restore, dim=1)[:, :K]
    order = torch.argsort(keep, dim=1)
    return torch.gather(x_vis, 1, order.unsqueeze(-1).expand_as(x_vis))


def equivalent(hf, ours) -> tuple[bool, bool]:
    (xa, ma, ra), (xb, mb, rb) = hf, ours
    same = torch.equal(ma, mb) and torch.equal(_rows_by_index(xa, ra), _rows_by_index(xb, rb))
    return same, torch.equal(ra, rb)


def copy_bandwidth(dev: str) -> float:
    """Bytes per second of a large device copy (read + write)."""
    a = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    t = interleaved({"copy": lambda: b.copy_(a)}, repeats=5, inner=3)["copy"]
    return 2 * a.numel() / t


def masking_rows(shapes, dev, repeats) -> list[dict]:
    bw = copy_bandwidth(dev) if dev == "cuda" else None
    rows = []
    for B, L, D, r in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, L, D, generator=g).to(dev)
        noise = torch.rand(B, L, generator=g).to(dev)
        hf, us = hf_masking(x, noise, r), ours_masking(x, noise, r)
        equal, restore_equal = equivalent(hf(), us())
        t = interleaved({"ours": us, "peer": hf}, repeats=repeats, inner=5)
        ties = int(sum(len(row) - len(torch.unique(row)) for row in noise.cpu()))
        row = {"shape (B,L,D,ratio)": f"{B},{L},{D},{r}", "ours_ms": t["ours"] * 1e3, "peer_ms": t["peer"] * 1e3,
               "peer": "HF ViTMAE random_masking", "ratio": t["peer"] / t["ours"], "equal": equal,
               "restore_equal": restore_equal, "noise_ties": ties}
        if bw:
            K = int(L * (1 - r))
            moved = 2 * B * K * D * x.element_size() + B * L * (4 + 8 + 1 + 4) + B * L * 8 + B * K
            row["bw_frac"] = moved / bw / t["ours"]
        rows.append(row)
    return rows


def random_rows(shapes, repeats) -> list[dict]:
    from omnipatch.masking import triton as kernels

    rows = []
    for B, L, D, r in shapes:
        x = torch.randn(B, L, D, device="cuda")
        K = int(L * (1 - r))
        emb = _hf_embeddings(D, r).cuda()
        us = lambda: kernels.mask_gather(x, K, seed=0, K=K)  # noqa: E731
        hf = lambda: emb.random_masking(x)  # noqa: E731
        equal = bool((us()[1].loss_mask.sum(1) == hf()[1].sum(1)).all())  # different streams: same counts
        t = interleaved({"ours": us, "peer": hf}, repeats=repeats, inner=5)
        rows.append({"shape (B,L,D,ratio)": f"{B},{L},{D},{r}", "ours_ms": t["ours"] * 1e3, "peer_ms": t["peer"] * 1e3,
                     "peer": "HF random_masking (torch.rand noise)", "ratio": t["peer"] / t["ours"],
                     "equal": f"counts {equal}"})
    return rows


def prologue_rows(shapes, dev, repeats) -> list[dict]:
    rows = []
    for B, L, D, r in shapes:
        g = torch.Generator().manual_seed(1)
        res = reference.select(torch.rand(B, L, generator=g), torch.full((B,), int(L * (1 - r))))
        res = reference.MaskResult(*(getattr(res, f).to(dev) for f in
                                     ("idx_keep", "idx_mask", "idx_restore", "visible", "keep_valid", "loss_mask")))
        K = res.num_keep
        y = torch.randn(B, K, D, generator=g).to(dev)
        tok = torch.randn(1, 1, D, generator=g).to(dev)
        pos = torch.randn(1, L, D, generator=g).to(dev)

        def mae():  # MAE / HF ViTMAEDecoder
            full = torch.cat([y, tok.repeat(B, L - K, 1)], dim=1)
            full = torch.gather(full, 1, res.idx_restore.unsqueeze(-1).repeat(1, 1, D))
            return full + pos

        us = lambda: unshuffle(y, tok, res, pos)  # noqa: E731
        equal = torch.equal(us(), mae())
        t = interleaved({"ours": us, "peer": mae}, repeats=repeats, inner=5)
        rows.append({"shape (B,L,D,ratio)": f"{B},{L},{D},{r}", "ours_ms": t["ours"] * 1e3, "peer_ms": t["peer"] * 1e3,
                     "peer": "MAE cat + gather(repeat) + pos", "ratio": t["peer"] / t["ours"], "equal": equal})
    return rows


def select_rows(shapes, dev, repeats) -> list[dict]:
    rows = []
    for B, L, _, r in shapes:
        noise = torch.rand(B, L, generator=torch.Generator().manual_seed(2)).to(dev)
        K = int(L * (1 - r))
        topk = lambda: torch.topk(noise, K, dim=1, largest=False, sorted=True).indices  # noqa: E731
        sort = lambda: torch.argsort(noise, dim=1)  # noqa: E731
        stable = lambda: torch.sort(noise, dim=1, stable=True).indices  # noqa: E731
        equal = torch.equal(topk().sort(1).values, sort()[:, :K].sort(1).values)
        t = interleaved({"ours": topk, "peer": sort, "stable": stable}, repeats=repeats, inner=5)
        rows.append({"shape (B,L,ratio)": f"{B},{L},{r}", "topk_ms": t["ours"] * 1e3, "argsort_ms": t["peer"] * 1e3,
                     "stable_sort_ms": t["stable"] * 1e3, "peer": "torch.argsort", "ratio": t["peer"] / t["ours"],
                     "equal": equal})
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="two shapes, fewer repeats")
    a = ap.parse_args(argv)
    shapes = SHAPES[:2] if a.quick else SHAPES
    repeats = 5 if a.quick else 9
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rows = masking_rows(shapes, dev, repeats)
    cols = ["shape (B,L,D,ratio)", "ours_ms", "peer_ms", "ratio", "equal", "restore_equal", "noise_ties"]
    report("masking", rows, cols + (["bw_frac"] if dev == "cuda" else []))
    if dev == "cuda":
        rnd = random_rows(shapes, repeats)
        report("masking_random", rnd, ["shape (B,L,D,ratio)", "ours_ms", "peer_ms", "ratio", "equal"])
        rows += rnd
    pro = prologue_rows(shapes, dev, repeats)
    report("masking_prologue", pro, ["shape (B,L,D,ratio)", "ours_ms", "peer_ms", "ratio", "equal"])
    sel = select_rows(shapes, dev, repeats)
    report("masking_select", sel, ["shape (B,L,ratio)", "topk_ms", "argsort_ms", "stable_sort_ms", "ratio", "equal"])
    return rows + pro + sel


if __name__ == "__main__":
    main()
