"""Point-cloud instance retrieval under rotation: find a mesh again from a rotated, resampled scan.

Command (needs ``make examples-data`` for nilearn's fsaverage5 meshes)::

    .venv/bin/python -m examples.pointcloud_instance_retrieval [--steps 150] [--out runs/pc_retrieval]

Data (real, offline): the brain-surface patches of ``examples/pointcloud_brain_surfaces.py``
(1,500-vertex pieces of nilearn's fsaverage5 cortex on five surfaces). Pretraining sees only
left-hemisphere patches, with nothing but ``--modality/--data/--out`` (and ``--steps``).
The gallery is the 300 right-hemisphere patch meshes; each query is the same patch
**rotated at random in 3-D and resampled** (512 new surface points, another seed), written
as a PLY point cloud. A hit at rank 1 is the query's own patch (chance 1/300).

Pretraining uses the point-cloud defaults (the scan fits 32 groups of 32 points to the 512
points sampled per mesh) with the ``micro`` preset, to stay within CPU minutes. Compared, all
by cosine similarity: the default encoder (files keep their orientation), the
encoder with ``--set data.options.align=pca`` (every cloud turned into its principal-axis
frame before tokenising), each at random init too, and Osada's D2 shape histogram (the
modality's rotation-invariant raw-feature baseline). Several patches are alike by
construction (sphere caps are congruent), so no method reaches 1.0.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

try:
    from examples._cli import cli
    from examples.pointcloud_brain_surfaces import write_patches
except ImportError:  # run as a script
    from _cli import cli
    from pointcloud_brain_surfaces import write_patches


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def write_queries(test_csv: Path, root: Path, points: int = 512, seed: int = 7) -> Path:
    """For each gallery mesh: rotate it at random, sample ``points`` new surface points with
    normals, write a PLY cloud. Manifest ``queries.csv`` with the same ids."""
    import open3d as o3d

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(open(test_csv)))
    out = []
    for k, r in enumerate(rows):
        mesh = o3d.io.read_triangle_mesh(str(test_csv.parent / r["path"]))
        mesh.rotate(random_rotation(rng), center=(0, 0, 0))
        mesh.compute_vertex_normals()
        o3d.utility.random.seed(seed + k)  # other points than the gallery read (seed 0)
        pc = mesh.sample_points_uniformly(number_of_points=points)
        name = f"q_{k:04d}.ply"
        o3d.io.write_point_cloud(str(root / name), pc)
        out.append((name, r["id"]))
    with open(root / "queries.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id"])
        w.writerows(out)
    return root / "queries.csv"


def recall_at_1(gallery: np.ndarray, queries: np.ndarray) -> float:
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    return float((np.argmax(q @ g.T, 1) == np.arange(len(q))).mean())


def features(run: Path, source: Path, random_init: bool = False, raw: bool = False) -> np.ndarray:
    from omnipatch.api import load
    from omnipatch.eval.report import raw_features
    from omnipatch.modality import MODALITIES

    pre = load(run, random_init=random_init)
    ds = pre.open(source)
    if raw:
        return raw_features(MODALITIES.get("pointcloud"), [ds[i] for i in range(len(ds))])
    return pre.embed(ds)[1].numpy()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/pc_retrieval")
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args(argv)
    out = Path(a.out)
    t0 = time.time()
    paths = write_patches(out / "data")
    queries = write_queries(paths["test"], out / "data" / "queries")
    print(f"data: {sum(1 for _ in open(paths['train'])) - 1} training patches, "
          f"{sum(1 for _ in open(paths['test'])) - 1} gallery meshes and as many rotated scans "
          f"({time.time() - t0:.0f} s)")
    res, secs = {}, {}
    for tag, extra in (("default", []), ("align=pca", ["--set", "data.options.align=pca"])):
        run = out / f"run_{tag.replace('=', '_')}"
        t = time.time()
        cli("pretrain", "--modality", "pointcloud", "--data", str(paths["train"]), "--out", str(run),
            "--steps", str(a.steps), "--preset", "micro", "--set", "data.options.mesh_points=512", "--quiet",
            *extra, quiet=True)
        secs[tag] = round(time.time() - t, 1)
        for name, rnd in (("pretrained", False), ("random init", True)):
            res[f"{name}, {tag}"] = recall_at_1(features(run, paths["test"], rnd), features(run, queries, rnd))
    res["D2 shape histogram (raw features)"] = recall_at_1(features(run, paths["test"], raw=True),
                                                           features(run, queries, raw=True))
    print(f"\ninstance retrieval of {len(open(queries).readlines()) - 1} rotated, resampled scans: recall@1")
    for k, v in res.items():
        print(f"  {k:<40} {v:.3f}")
    print(f"pretraining: {a.steps} steps, {secs} s")
    result = {"recall_at_1": res, "pretrain_seconds": secs, "steps": a.steps}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
