"""Farthest-point sampling: ours (``omnipatch.adapters.point_kernels``, the path the point-cloud
adapter runs: compiled C on the CPU, split over the cores; Triton on CUDA) vs open3d's
``PointCloud.farthest_point_down_sample`` and ``fpsample`` (Rust/C++; vanilla ``fps_sampling``
and the bucket / QuickFPS ``bucket_fps_kdline_sampling``), one cloud per call on their side,
so a batch is a loop; same points, same start; ``equal`` says the chosen index sets match.

All three peers are exact FPS. fpsample 1.0.2's bucket variant reads ``start_idx`` in its own
kd-tree order (``start_idx=0`` starts elsewhere), so its indices are checked against ours
started from the bucket's first pick; the times are from start 0 for everyone else.

Shapes from issue 5: one cloud of 20,000 points -> 512 centres, 32 clouds of 1,024 -> 64
each, and 8 x 8,192 -> 256. Ours runs in float64 (bit-exact with open3d, which works in
double) and float32 (the training path; fpsample computes in float32); on a GPU machine ours
runs on the GPU. Run: ``python -m benchmarks.bench_point_fps``.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.harness import interleaved, report
from omnipatch.adapters.point_kernels import farthest_point_sample

SHAPES = [(1, 20000, 512), (32, 1024, 64), (8, 8192, 256)]


def _open3d_fps(clouds: list, n: int):
    return lambda: [pc.farthest_point_down_sample(n) for pc in clouds]


def _open3d_indices(points: np.ndarray, clouds: list, n: int) -> list[list[int]]:
    out = []
    for p, pc in zip(points, clouds):
        where = {tuple(r): i for i, r in enumerate(p)}
        out.append(sorted(where[tuple(r)] for r in np.asarray(pc.farthest_point_down_sample(n).points)))
    return out


def _bucket_height(N: int) -> int:
    return 3 if N <= 2048 else 5 if N <= 10000 else 7  # fpsample's advice: 3 small, 5-7 medium


def main() -> list[dict]:
    peers = {}
    try:
        import open3d as o3d

        peers["open3d"] = o3d
    except ImportError:
        print("open3d not installed: its rows are left out")
    try:
        import fpsample

        peers["fpsample"] = fpsample
    except ImportError:
        print("fpsample not installed (pip install fpsample): its rows are left out")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for B, N, n in SHAPES:
        pts = np.random.default_rng(0).random((B, N, 3))
        fns, refs = {}, {}
        if "open3d" in peers:
            o3d = peers["open3d"]
            clouds = [o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)) for p in pts]
            fns["open3d farthest_point_down_sample"] = _open3d_fps(clouds, n)
            refs["open3d farthest_point_down_sample"] = (_open3d_indices(pts, clouds, n), 0)
        if "fpsample" in peers:
            fs, h = peers["fpsample"], _bucket_height(N)
            fns["fpsample fps_sampling"] = lambda: [fs.fps_sampling(p, n, start_idx=0) for p in pts]
            refs["fpsample fps_sampling"] = ([sorted(i.tolist()) for i in fns["fpsample fps_sampling"]()], 0)
            name = f"fpsample bucket_fps_kdline (QuickFPS, h={h})"
            fns[name] = lambda h=h: [fs.bucket_fps_kdline_sampling(p, n, h=h, start_idx=0) for p in pts]
            got = fns[name]()
            refs[name] = ([sorted(i.tolist()) for i in got], torch.tensor([int(i[0]) for i in got]))
        for dtype in (torch.float64, torch.float32):
            x = torch.from_numpy(pts).to(dev, dtype)
            ours = lambda x=x: farthest_point_sample(x, n)  # noqa: E731
            t = interleaved({"ours": ours, **fns}, repeats=5)
            for peer in fns:
                ref, start = refs[peer]
                idx = farthest_point_sample(x, n, start=start.to(dev) if torch.is_tensor(start) else start)[0].cpu()
                equal = all(sorted(idx[b].tolist()) == ref[b] for b in range(B))
                rows.append({"B x N -> n": f"{B} x {N:,} -> {n}", "ours dtype": f"{str(dtype)[6:]} ({dev})",
                             "peer": peer, "ours_ms": t["ours"] * 1e3, "peer_ms": t[peer] * 1e3,
                             "ratio": t[peer] / t["ours"], "equal": equal})
    report("point_fps", rows, ["B x N -> n", "ours dtype", "peer", "ours_ms", "peer_ms", "ratio", "equal"])
    return rows


if __name__ == "__main__":
    main()
