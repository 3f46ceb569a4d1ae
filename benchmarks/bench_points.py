"""Point-cloud grouping: our FPS and kNN kernels (``omnipatch.adapters.point_kernels``:
compiled C on CPU, Triton on CUDA) vs named peers, timed in alternation in the same run.

- ``points_fps``: vs open3d ``PointCloud.farthest_point_down_sample`` (C++, one cloud per
  call, so a batch is a loop) from the same start index, in float64 (open3d works in double):
  ``equal`` = identical chosen index sets for every cloud. A float32 row compares with the
  batched torch FPS (``point_ops``, the oracle) and must be index-for-index equal.
- ``points_knn``: vs ``torch.cdist`` + ``topk`` (the usual batched kNN, also
  ``point_ops.knn``). Ours is exact (differences, not ``|a|^2 - 2ab + |b|^2``), so
  ``equal`` compares the neighbour distances (``max_dist_diff``); ``idx_match`` is the
  fraction of identical indices (near-ties may swap under cdist's rounding).

Shapes: issue 5's FPS shapes (one cloud of 20,000 points -> 512 centres; 32 clouds of 1,024
-> 64), and Point-MAE groupings (64 groups x 32 points of 1,024-point clouds; 512 x 32 of 8,192).

Run: ``python -m benchmarks.bench_points [--quick]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.harness import interleaved, report
from omnipatch.adapters import point_kernels, point_ops

FPS_SHAPES = [(1, 20000, 512), (32, 1024, 64), (8, 8192, 256)]
KNN_SHAPES = [(32, 64, 1024, 32), (8, 512, 8192, 32)]


def _open3d_indices(points: np.ndarray, clouds: list, n: int) -> list[list[int]]:
    out = []
    for p, pc in zip(points, clouds):
        where = {tuple(r): i for i, r in enumerate(p)}
        out.append(sorted(where[tuple(r)] for r in np.asarray(pc.farthest_point_down_sample(n, 0).points)))
    return out


def fps_rows(shapes, dev, repeats) -> list[dict]:
    import open3d as o3d

    rows = []
    for B, N, n in shapes:
        pts = np.random.default_rng(0).random((B, N, 3))
        clouds = [o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)) for p in pts]
        ref = _open3d_indices(pts, clouds, n)
        peer = lambda: [pc.farthest_point_down_sample(n, 0) for pc in clouds]  # noqa: E731
        x64 = torch.from_numpy(pts).to(dev)
        ours = lambda: point_kernels.farthest_point_sample(x64, n)  # noqa: E731
        idx = ours()[0].cpu()
        equal = all(sorted(idx[b].tolist()) == ref[b] for b in range(B))
        t = interleaved({"ours": ours, "peer": peer}, repeats=repeats)
        shape = f"{B} x {N:,} -> {n}"
        rows.append({"B x N -> n": shape, "ours": f"float64 ({dev})", "ours_ms": t["ours"] * 1e3,
                     "peer_ms": t["peer"] * 1e3, "peer": "open3d farthest_point_down_sample",
                     "ratio": t["peer"] / t["ours"], "equal": equal, "vs_open3d": ""})
        x32 = x64.float()
        ours32 = lambda: point_kernels.farthest_point_sample(x32, n)  # noqa: E731
        torch32 = lambda: point_ops.farthest_point_sample(x32, n)  # noqa: E731
        equal32 = torch.equal(ours32()[0], torch32()[0])
        t = interleaved({"ours": ours32, "peer": torch32, "open3d": peer}, repeats=repeats)
        rows.append({"B x N -> n": shape, "ours": f"float32 ({dev})", "ours_ms": t["ours"] * 1e3,
                     "peer_ms": t["peer"] * 1e3, "peer": "batched torch FPS (point_ops)",
                     "ratio": t["peer"] / t["ours"], "equal": equal32, "vs_open3d": t["open3d"] / t["ours"]})
    return rows


def knn_rows(shapes, dev, repeats) -> list[dict]:
    rows = []
    for B, M, N, k in shapes:
        g = torch.Generator().manual_seed(1)
        x = torch.rand(B, N, 3, generator=g).to(dev)
        q = point_ops.gather_points(x, torch.randint(0, N, (B, M), generator=g).to(dev))
        ours = lambda: point_kernels.knn(q, x, k)  # noqa: E731
        peer = lambda: torch.cdist(q, x).topk(k, dim=-1, largest=False, sorted=True).indices  # noqa: E731
        a, b = ours(), peer()
        dist = lambda i: (point_ops.gather_points(x, i) - q.unsqueeze(2)).square().sum(-1)  # noqa: E731
        diff = float((dist(a) - dist(b)).abs().max())
        t = interleaved({"ours": ours, "peer": peer}, repeats=repeats)
        rows.append({"B x M x N, k": f"{B} x {M} x {N:,}, {k}", "ours_ms": t["ours"] * 1e3, "peer_ms": t["peer"] * 1e3,
                     "peer": "torch.cdist + topk", "ratio": t["peer"] / t["ours"], "equal": diff < 1e-5,
                     "max_dist_diff": diff, "idx_match": float((a == b).float().mean())})
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="first shapes only, fewer repeats")
    a = ap.parse_args(argv)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    repeats = 3 if a.quick else 5
    fps = fps_rows(FPS_SHAPES[1:2] if a.quick else FPS_SHAPES, dev, repeats)
    report("points_fps", fps, ["B x N -> n", "ours", "ours_ms", "peer", "peer_ms", "ratio", "equal", "vs_open3d"])
    knn = knn_rows(KNN_SHAPES[:1] if a.quick else KNN_SHAPES, dev, repeats)
    report("points_knn", knn, ["B x M x N, k", "ours_ms", "peer_ms", "ratio", "equal", "max_dist_diff", "idx_match"])
    return fps + knn


if __name__ == "__main__":
    main()
