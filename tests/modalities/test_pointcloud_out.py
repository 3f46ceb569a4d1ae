"""Point-cloud embeddings per group centre: Parquet rows at the FPS centres, in the file's frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omnipatch.modality import MODALITIES
from omnipatch.outputs import read_provenance, write
from tests.modalities.tiny_run import tiny_run, tokens_of

OPTS = {"num_groups": 8, "group_size": 8, "point_hidden": 16, "max_points": 96}


@pytest.fixture(scope="module")
def clouds(tmp_path_factory):
    """Three PLY clouds far from the origin and not unit-sized; one has fewer points than groups."""
    import open3d as o3d

    folder, rng = tmp_path_factory.mktemp("clouds"), np.random.default_rng(0)
    pts = {"a.ply": rng.normal(size=(120, 3)) * [30.0, 5.0, 2.0] + [100.0, -20.0, 5.0],
           "b.ply": rng.normal(size=(64, 3)) * 0.01 + [-3.0, 0.0, 7.0],
           "c.ply": rng.normal(size=(5, 3)) + 50.0}
    for name, p in pts.items():
        assert o3d.io.write_point_cloud(str(folder / name), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)))
    return folder, {name: np.asarray(o3d.io.read_point_cloud(str(folder / name)).points) for name in pts}


@pytest.mark.parametrize("align", ["none", "pca"])
def test_to_file_frame_undoes_centring_alignment_and_scaling(clouds, align):
    folder, pts = clouds
    spec = MODALITIES.get("pointcloud")
    ds = spec.open_dataset(str(folder), **{**spec.options, **OPTS, "align": align})
    for i, e in enumerate(ds.entries):
        x = ds[i].x[:, :3].numpy().astype(np.float64)
        back = ds.to_file_frame(i, x)
        file_pts = pts[e.path.rsplit("/", 1)[-1]]
        dist = np.linalg.norm(back[:, None] - file_pts[None], axis=-1).min(1)
        assert dist.max() < 1e-3 * max(1.0, np.abs(file_pts).max())  # float32 unit sphere -> file units


def test_parquet_rows_are_the_group_centres_in_the_files_frame(clouds, tmp_path):
    folder, pts = clouds
    spec = MODALITIES.get("pointcloud")
    ds = spec.open_dataset(str(folder), **{**spec.options, **OPTS})
    pre = tiny_run("pointcloud", ds, OPTS)
    out = tmp_path / "groups.parquet"
    write(spec, pre.embeddings(ds, "patch", bf16=False), out)
    df = pd.read_parquet(out)
    assert list(df.columns) == ["id", "group", "x", "y", "z", "embedding"]
    assert read_provenance(out)["level"] == "patch"
    for i, e in enumerate(ds.entries):
        rows = df[df["id"] == e.id].sort_values("group")
        t, enc = tokens_of(pre, ds, i)
        valid = np.ones(8, bool) if t.padding_mask is None else ~t.padding_mask[0].numpy()
        assert list(rows["group"]) == list(np.nonzero(valid)[0])  # padding groups have no row
        centres = ds.to_file_frame(i, t.coords[0, valid].double().numpy())
        xyz = rows[["x", "y", "z"]].to_numpy()
        np.testing.assert_allclose(xyz, centres, rtol=1e-6, atol=1e-6)
        file_pts = pts[e.path.rsplit("/", 1)[-1]]  # FPS centres are points of the cloud
        dist = np.linalg.norm(xyz[:, None] - file_pts[None], axis=-1).min(1)
        assert dist.max() < 1e-3 * max(1.0, np.abs(file_pts).max())
        np.testing.assert_allclose(np.stack(rows["embedding"]), enc[valid].numpy(), atol=1e-4)
    assert (df.groupby("id").size() <= 8).all() and df.groupby("id").size().min() == 5  # the 5-point cloud
    labelled = pre.embed(ds, level="patch")
    assert isinstance(labelled, pd.DataFrame) and len(labelled) == len(df)
