"""Point-cloud reading on tiny real files written by open3d in tmp_path, corrupt ones included."""

import csv

import numpy as np
import pytest
import torch

from omnipatch.batch import Batch, Sample, collate
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.base import Skipped
from omnipatch.modalities.pointcloud import PointCloudDataset, augment, extra_stats, read_points

o3d = pytest.importorskip("open3d")


def _cloud(path, n=200, normals=True, colors=True, seed=0, offset=(5.0, -2.0, 1.0), scale=3.0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3)) * scale + np.array(offset)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    if normals:
        nrm = rng.normal(size=(n, 3))
        pc.normals = o3d.utility.Vector3dVector(nrm / np.linalg.norm(nrm, axis=1, keepdims=True))
    if colors:
        pc.colors = o3d.utility.Vector3dVector(rng.random((n, 3)))
    assert o3d.io.write_point_cloud(str(path), pc)
    return p


def _mesh(path):
    m = o3d.geometry.TriangleMesh.create_box(2.0, 1.0, 0.5)
    if str(path).endswith(".stl"):
        m.compute_triangle_normals()
    assert o3d.io.write_triangle_mesh(str(path), m)


def test_formats_channels_and_unit_sphere(tmp_path):
    _cloud(tmp_path / "a.ply")
    _cloud(tmp_path / "b.pcd", seed=1)
    ds = PointCloudDataset(tmp_path)
    assert ds.features == ["normals", "colors"] and ds.channels == 9
    x = ds[0].x
    assert x.shape == (200, 9) and x.dtype == torch.float32
    xyz = x[:, :3].double()
    torch.testing.assert_close(xyz.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert abs(float(xyz.norm(dim=1).max()) - 1.0) < 1e-5  # unit sphere
    torch.testing.assert_close(x[:, 3:6].norm(dim=1), torch.ones(200), atol=1e-5, rtol=0)
    assert 0 <= float(x[:, 6:].min()) and float(x[:, 6:].max()) <= 1
    mean, std = extra_stats(ds)
    assert len(mean) == len(std) == 6


def test_xyz_and_pts_and_pcd_intensity(tmp_path):
    _cloud(tmp_path / "a.xyz", normals=False, colors=False)
    ds = PointCloudDataset(tmp_path / "a.xyz")
    assert ds.features == [] and ds[0].x.shape == (200, 3)
    # a PCD with an intensity field (tensor API); intensity brings estimated normals along
    t = o3d.t.geometry.PointCloud(o3d.core.Tensor(np.random.default_rng(0).random((50, 3)).astype(np.float32)))
    t.point.intensity = o3d.core.Tensor(np.linspace(0, 1, 50, dtype=np.float32)[:, None])
    assert o3d.t.io.write_point_cloud(str(tmp_path / "i.pcd"), t)
    ds = PointCloudDataset(tmp_path / "i.pcd")
    assert ds.features == ["normals", "intensity"] and ds.channels == 7
    x = ds[0].x
    torch.testing.assert_close(x[:, 6], torch.linspace(0, 1, 50))
    torch.testing.assert_close(x[:, 3:6].norm(dim=1), torch.ones(50), atol=1e-5, rtol=0)
    # .pts (x y z intensity r g b) read as points with all extras
    _cloud(tmp_path / "c.pts", normals=False)
    assert PointCloudDataset(tmp_path / "c.pts", features="xyz")[0].x.shape == (200, 3)


@pytest.mark.parametrize("ext", [".obj", ".stl", ".off", ".ply"])
def test_meshes_are_sampled_reproducibly(tmp_path, ext):
    _mesh(tmp_path / f"box{ext}")
    ds = PointCloudDataset(tmp_path, mesh_points=300)
    assert ds.features == ["normals"]
    a, b = ds[0].x, ds[0].x
    assert a.shape == (300, 6) and torch.equal(a, b)
    # samples lie on the box surface: some coordinate sits on a face (box centred, scaled)
    d = read_points(str(tmp_path / f"box{ext}"), mesh_points=300)
    assert d.is_mesh
    lo, hi = d.points.min(0), d.points.max(0)
    on_face = (np.isclose(d.points, lo, atol=1e-9) | np.isclose(d.points, hi, atol=1e-9)).any(1)
    assert on_face.all()


def test_max_points_subsample_and_ragged_batch(tmp_path):
    _cloud(tmp_path / "big.ply", n=500, colors=False)
    _cloud(tmp_path / "small.ply", n=7, colors=False, seed=3)  # fewer points than a group
    ds = PointCloudDataset(tmp_path, max_points=128)
    big, small = ds[0], ds[1]
    assert big.x.shape == (128, 6) and torch.equal(big.x, ds[0].x)  # same subset every read
    assert small.x.shape == (7, 6)
    b = collate([big, small])
    assert b.x.shape == (2, 128, 6) and b.x_mask[1].sum() == 121 and not b.x_mask[0].any()
    from omnipatch.adapters import PointCloudAdapter

    t = PointCloudAdapter(dim=16, in_chans=6, num_groups=16, group_size=8).tokenize(b)
    assert t.padding_mask[1].sum() == 9 and torch.isfinite(t.tokens).all()


def test_manifest_labels(tmp_path):
    for i in range(4):
        _cloud(tmp_path / f"c{i}.ply", n=30, seed=i, colors=False)
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id", "label"])
        w.writerows([f"c{i}.ply", f"cloud{i}", "ab"[i % 2]] for i in range(4))
    ds = PointCloudDataset(tmp_path / "m.csv")
    assert ds.classes == {"a": 0, "b": 1} and ds[1].label == 1 and ds[1].id == "cloud1"


def test_corrupt_truncated_empty_and_missing_files(tmp_path):
    _cloud(tmp_path / "good.ply", colors=False)
    raw = (tmp_path / "good.ply").read_bytes()
    (tmp_path / "trunc.ply").write_bytes(raw[: len(raw) // 2])  # header intact, data cut
    (tmp_path / "garbage.pcd").write_bytes(b"\x00\x01 not a point cloud" * 20)
    (tmp_path / "zero.xyz").write_bytes(b"")
    (tmp_path / "novertex.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\n"
                                           "property float y\nproperty float z\nend_header\n")
    (tmp_path / "nan.xyz").write_text("0 0 0\nnan 1 2\n1 1 1\n")
    (tmp_path / "bad.stl").write_text("solid x\nfacet garbage\n")
    cases = {"trunc.ply": "open3d could not read it", "garbage.pcd": "open3d could not read it",
             "zero.xyz": "empty file", "novertex.ply": "no points", "nan.xyz": "contains NaN or infinite",
             "bad.stl": "open3d could not read it|no points"}
    ds = PointCloudDataset(tmp_path, features=["normals"])
    names = [e.path.rsplit("/", 1)[1] for e in ds.entries]
    for name, msg in cases.items():
        with pytest.raises(BadSampleError, match=f"{name}: ({msg})"):
            ds[names.index(name)]
    skip = PointCloudDataset(tmp_path, features=["normals"], on_bad_sample="skip")
    out = [skip[i] for i in range(len(skip))]
    assert [isinstance(s, Sample) for s in out].count(True) == 1
    assert all(isinstance(s, Skipped) for s, n in zip(out, names) if n != "good.ply")
    with pytest.raises(BadSampleError, match="file not found"):
        read_points(str(tmp_path / "absent.ply"))


def test_min_points_missing_colours_and_unknown_feature(tmp_path):
    _cloud(tmp_path / "a.ply", n=3, colors=False)
    with pytest.raises(BadSampleError, match="has 3 points, fewer than min_points=5"):
        PointCloudDataset(tmp_path, min_points=5, features="normals")[0]
    with pytest.raises(BadSampleError, match="has no colors"):
        PointCloudDataset(tmp_path, features="normals+colors")[0]
    with pytest.raises(OmnipatchError, match="unknown point feature"):
        PointCloudDataset(tmp_path, features=["curvature"])
    (tmp_path / "a.ply").unlink()
    (tmp_path / "x.ply").write_bytes(b"")
    with pytest.raises(OmnipatchError, match="none of the first 1 point files could be read"):
        PointCloudDataset(tmp_path)


def test_augment_batched_seeded_and_keeps_normals_unit():
    g = torch.Generator().manual_seed(0)
    xyz = torch.nn.functional.normalize(torch.randn(4, 64, 3), dim=-1)
    x = torch.cat([xyz, xyz], -1)  # points on the sphere with outward normals
    mask = torch.zeros(4, 64, dtype=torch.bool)
    mask[3, 10:] = True
    b = Batch(x=x, ids=list("abcd"), x_mask=mask)
    v1 = augment(b, torch.Generator().manual_seed(1))
    v2 = augment(b, torch.Generator().manual_seed(1))
    v3 = augment(b, g)
    assert torch.equal(v1.x, v2.x) and torch.equal(v1.x_mask, v2.x_mask)
    assert not torch.equal(v1.x, v3.x)
    assert v1.x.shape == x.shape
    torch.testing.assert_close(v1.x[..., 3:6].norm(dim=-1), torch.ones(4, 64), atol=1e-5, rtol=0)
    assert v1.x_mask[3, 10:].all() and (~v1.x_mask).sum(1).min() >= 1  # padding stays padding
    # rotation only (no scale/jitter at strength ~0): distances to the origin are kept
    v0 = augment(b, torch.Generator().manual_seed(2), strength=1e-6)
    torch.testing.assert_close(v0.x[..., :3].norm(dim=-1), xyz.norm(dim=-1), atol=1e-4, rtol=0)


def test_pca_alignment_removes_the_rotation(tmp_path):
    """``align="pca"``: the same cloud in another orientation reads (nearly) the same."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(400, 3)) * [3.0, 1.5, 0.5]  # distinct principal axes
    pts[:, 0] += 0.5 * pts[:, 0] ** 2 / 3  # skewed, so the axis signs are defined
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    for name, p in (("a.ply", pts), ("b.ply", pts @ q.T + [5.0, -2.0, 1.0])):
        o3d.io.write_point_cloud(str(tmp_path / name), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)))
    files = [str(tmp_path / "a.ply"), str(tmp_path / "b.ply")]
    aligned = PointCloudDataset(files, features="xyz", align="pca")
    np.testing.assert_allclose(aligned[0].x.numpy(), aligned[1].x.numpy(), atol=1e-4)
    raw = PointCloudDataset(files, features="xyz")
    assert np.abs(raw[0].x.numpy() - raw[1].x.numpy()).max() > 0.1  # default: orientation kept
    with pytest.raises(OmnipatchError, match="align must be one of"):
        PointCloudDataset(files, align="spin")
