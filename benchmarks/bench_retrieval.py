"""Exact cross-modal search: our chunked torch top-k against scikit-learn's brute-force
``NearestNeighbors(metric="cosine")`` (time, same neighbours) and against one full
``(M, N)`` similarity matrix + ``topk`` (peak memory). Each memory measurement runs in a
fresh process; memory is the peak RSS above the RSS once the vectors exist.

Run: ``python -m benchmarks.bench_retrieval [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import torch

from benchmarks.harness import interleaved, report

SHAPES = [(10_000, 2_000, 128), (100_000, 10_000, 128)]  # gallery N, queries M, width D

CHILD = r"""
import json, sys, torch
from omnipatch.eval.retrieval import search
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 1024
kind, n, m, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
g = torch.Generator().manual_seed(0)
index = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
q = torch.randn(m, d, generator=g)
base = rss("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
if kind == "ours":
    s, i = search(index, q, 10)
else:
    s, i = (torch.nn.functional.normalize(q, dim=1) @ index.T).topk(10, dim=1)
print(json.dumps({"peak_mib": rss("VmHWM") - base}))
"""


def peak_mib(kind: str, n: int, m: int, d: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(n), str(m), str(d)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def rows(shapes, repeats: int) -> list[dict]:
    from sklearn.neighbors import NearestNeighbors

    from omnipatch.eval.retrieval import build_index

    out = []
    for n, m, d in shapes:
        g = torch.Generator().manual_seed(0)
        gallery, queries = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)
        idx = build_index(gallery, [str(i) for i in range(n)])
        nn = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(gallery.numpy())
        res = {}
        t = interleaved({"ours": lambda: res.__setitem__("ours", idx.search(queries, 10)),
                         "peer": lambda: res.__setitem__("peer", nn.kneighbors(queries.numpy()))},
                        repeats=repeats)
        ours_i = res["ours"][1].numpy()
        peer_i = res["peer"][1]
        agree = float((ours_i[:, 0] == peer_i[:, 0]).mean())  # top-1 (ties aside) must match
        overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ours_i, peer_i)]))
        mem_ours, mem_full = peak_mib("ours", n, m, d), peak_mib("full", n, m, d)
        out.append({"N x M x D": f"{n} x {m} x {d}", "ours_s": t["ours"], "peer": "sklearn NearestNeighbors brute",
                    "peer_s": t["peer"], "ratio": t["peer"] / t["ours"], "top1_equal": agree,
                    "top10_overlap": overlap, "ours_peak_MiB": mem_ours, "full_matrix_peak_MiB": mem_full,
                    "memory_ratio": mem_full / max(mem_ours, 1e-6)})
    return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small shape only")
    a = ap.parse_args(argv)
    r = rows(SHAPES[:1] if a.quick else SHAPES, 3)
    report("retrieval", r, ["N x M x D", "ours_s", "peer", "peer_s", "ratio", "top1_equal", "top10_overlap",
                            "ours_peak_MiB", "full_matrix_peak_MiB", "memory_ratio"])
    return r


if __name__ == "__main__":
    main()
