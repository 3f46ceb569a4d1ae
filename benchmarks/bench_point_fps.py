"""Farthest-point sampling: ours (batched torch, ``omnipatch.adapters.point_ops``) vs open3d's
``PointCloud.farthest_point_down_sample`` (C++, one cloud per call, so a batch is a loop)
on the same points from the same start index; ``equal`` says the chosen index sets match.

Shapes from issue 5: one cloud of 20,000 points -> 512 centres, and a batch of 32 clouds of
1,024 points -> 64 centres each. Ours runs in float64 (bit-exact with open3d, which works in
double) and float32 (the training path); on a GPU machine ours runs on the GPU.

Run: ``python -m benchmarks.bench_point_fps``.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.harness import interleaved, report
from omnipatch.adapters.point_ops import farthest_point_sample

SHAPES = [(1, 20000, 512), (32, 1024, 64)]


def _open3d_fps(clouds: list, n: int):
    return lambda: [pc.farthest_point_down_sample(n) for pc in clouds]


def _open3d_indices(points: np.ndarray, clouds: list, n: int) -> list[list[int]]:
    out = []
    for p, pc in zip(points, clouds):
        where = {tuple(r): i for i, r in enumerate(p)}
        out.append(sorted(where[tuple(r)] for r in np.asarray(pc.farthest_point_down_sample(n).points)))
    return out


def main() -> list[dict]:
    import open3d as o3d

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for B, N, n in SHAPES:
        pts = np.random.default_rng(0).random((B, N, 3))
        clouds = [o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)) for p in pts]
        ref = _open3d_indices(pts, clouds, n)
        for dtype in (torch.float64, torch.float32):
            x = torch.from_numpy(pts).to(dev, dtype)
            ours = lambda x=x: farthest_point_sample(x, n)  # noqa: E731
            idx = ours()[0].cpu()
            equal = all(sorted(idx[b].tolist()) == ref[b] for b in range(B))
            t = interleaved({"ours": ours, "peer": _open3d_fps(clouds, n)}, repeats=5)
            rows.append({"B x N -> n": f"{B} x {N:,} -> {n}", "ours dtype": f"{str(dtype)[6:]} ({dev})",
                         "ours_ms": t["ours"] * 1e3, "peer_ms": t["peer"] * 1e3,
                         "peer": "open3d farthest_point_down_sample", "ratio": t["peer"] / t["ours"],
                         "equal": equal})
    report("point_fps", rows, ["B x N -> n", "ours dtype", "ours_ms", "peer_ms", "ratio", "equal"])
    return rows


if __name__ == "__main__":
    main()
