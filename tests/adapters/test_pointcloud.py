import numpy as np
import pytest
import torch

from omnipatch.adapters import PointCloudAdapter
from omnipatch.adapters.point_ops import chamfer_l2, farthest_point_sample, knn, spatial_block_mask
from omnipatch.batch import Batch, Sample, collate
from omnipatch.errors import OmnipatchError
from omnipatch.masking import MaskSpec, make_mask
from tests.adapters.contract import DIM, AdapterContract


def _cloud(n: int, seed: int, c: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, generator=g) * 2 - 1


class TestPointCloudAdapter(AdapterContract):
    # targets are centred kNN groups (overlapping, a subset of the points), not a pure
    # re-arrangement of the input; test_groups_roundtrip below checks the inverse instead
    exact_roundtrip = False

    def make_adapter(self):
        return PointCloudAdapter(dim=DIM, in_chans=6, num_groups=8, group_size=16,
                                 mean=[0.0] * 3, std=[0.5] * 3)

    def make_batch(self, B):
        return Batch(x=torch.stack([_cloud(128, B * 10 + i) for i in range(B)]), ids=[str(i) for i in range(B)])

    def odd_batch(self):  # ragged: 128, 40 and 5 points (5 < group size and < num_groups)
        return collate([Sample(x=_cloud(n, n), id=str(n)) for n in (128, 40, 5)])


def test_groups_roundtrip_and_padding_for_small_clouds():
    a = PointCloudAdapter(dim=DIM, in_chans=3, num_groups=8, group_size=4)
    b = collate([Sample(x=_cloud(64, 0, 3), id="big"), Sample(x=_cloud(5, 1, 3), id="small")])
    t = a.tokenize(b)
    # the small cloud has 5 real centres; its other 3 token slots are padding
    assert t.padding_mask.tolist() == [[False] * 8, [False] * 5 + [True] * 3]
    pts = a.unpatchify(t.targets, t.coords)  # (B, G*k, 3) back on the centres
    assert pts.shape == (2, 32, 3)
    for i, n in ((0, 64), (1, 5)):  # every grouped point is a real point of its own cloud
        real = b.x[i, :n]
        d = (pts[i][:, None] - real[None]).pow(2).sum(-1).min(1).values
        assert float(d.max()) < 1e-10
    # group points are nearest-first: the first point of each valid group is its centre
    torch.testing.assert_close(pts.reshape(2, 8, 4, 3)[:, :, 0][~t.padding_mask], t.coords[~t.padding_mask])


def test_fps_matches_open3d_index_for_index():
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(0)
    for n_pts, n, start in ((500, 32, 0), (300, 300, 0), (400, 50, 17)):
        p = rng.random((n_pts, 3))
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
        out = np.asarray(pc.farthest_point_down_sample(n, start).points)
        # open3d returns the chosen points in input order (SelectByIndex): map them back
        where = {tuple(r): i for i, r in enumerate(p)}
        ref = sorted(where[tuple(r)] for r in out)
        idx, ok = farthest_point_sample(torch.from_numpy(p)[None], n, start=start)
        assert sorted(idx[0].tolist()) == ref and ok.all()
        assert idx[0, 0] == start  # open3d starts at start_index (default 0)


def test_fps_is_batched_and_ignores_padding():
    x = torch.rand(3, 50, 3, dtype=torch.float64)
    valid = torch.ones(3, 50, dtype=torch.bool)
    valid[1, 20:] = False
    x[1, 20:] = 100.0  # far-away padding must never be picked
    idx, ok = farthest_point_sample(x, 25, valid)
    for b in (0, 2):
        ref, _ = farthest_point_sample(x[b: b + 1], 25)
        assert torch.equal(idx[b], ref[0])
    ref1, _ = farthest_point_sample(x[1:2, :20], 25)
    assert torch.equal(idx[1], ref1[0]) and int(idx[1].max()) < 20
    assert ok[1].tolist() == [True] * 20 + [False] * 5
    # picks are distinct while real points remain
    assert len(set(idx[0].tolist())) == 25


def test_knn_matches_brute_force_and_pads_small_clouds():
    x = torch.rand(2, 30, 3)
    q = x[:, :4]
    idx = knn(q, x, 5)
    d = ((q[:, :, None] - x[:, None]) ** 2).sum(-1)
    ref = d.argsort(-1)[..., :5]
    assert torch.equal(idx[..., 0], torch.arange(4).expand(2, 4))
    torch.testing.assert_close(d.gather(-1, idx), d.gather(-1, ref))
    valid = torch.zeros(2, 30, dtype=torch.bool)
    valid[:, :3] = True
    small = knn(q[:, :2], x, 5, valid)  # 3 real points, 5 neighbours asked for
    assert int(small.max()) < 3 and small.shape == (2, 2, 5)


def test_chamfer_zero_symmetric_and_order_free():
    a = torch.rand(4, 8, 3)
    assert float(chamfer_l2(a, a).abs().max()) == 0.0
    perm = a[:, torch.randperm(8)]
    assert float(chamfer_l2(a, perm).abs().max()) < 1e-12
    grid = torch.arange(8.0).view(1, 8, 1).expand(4, 8, 3)  # points 1 apart on a line
    b = grid + torch.tensor([0.1, 0.0, 0.0])  # each point's nearest is its own shifted copy
    torch.testing.assert_close(chamfer_l2(grid, b), chamfer_l2(b, grid))
    torch.testing.assert_close(chamfer_l2(grid, b), torch.full((4,), 2 * 0.01), atol=1e-6, rtol=0)


def test_spatial_block_mask_hides_a_contiguous_region():
    coords = torch.linspace(0, 1, 20).view(1, 20, 1).expand(4, 20, 3).contiguous()
    res = spatial_block_mask(coords, 0.5, generator=torch.Generator().manual_seed(0))
    assert res.idx_keep.shape == (4, 10) and res.loss_mask.sum(1).tolist() == [10.0] * 4
    for b in range(4):  # hidden tokens form one run of consecutive positions on the line
        hidden = torch.nonzero(res.loss_mask[b]).flatten()
        assert int(hidden.max() - hidden.min()) == 9
    a = PointCloudAdapter(dim=DIM, in_chans=3, num_groups=8, group_size=4)
    t = a.tokenize(collate([Sample(x=_cloud(64, 0, 3), id="a"), Sample(x=_cloud(5, 1, 3), id="b")]))
    m = make_mask(t, MaskSpec("spatial_block", 0.5), torch.Generator().manual_seed(1))
    assert not (m.visible & t.padding_mask).any() and not (m.loss_mask.bool() & t.padding_mask).any()


def test_empty_cloud_and_wrong_channels_are_clear_errors():
    a = PointCloudAdapter(dim=DIM, in_chans=3, num_groups=4, group_size=4)
    with pytest.raises(OmnipatchError, match=r"expected points \(B, N, 3\)"):
        a.tokenize(Batch(x=torch.rand(2, 10, 6)))
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1] = True
    with pytest.raises(OmnipatchError, match=r"cloud\(s\) \[1\] of the batch have no points"):
        a.tokenize(Batch(x=torch.rand(2, 10, 3), x_mask=mask))


def test_reconstruct_pictures_and_config_roundtrip():
    a = PointCloudAdapter(dim=DIM, in_chans=6, num_groups=8, group_size=8, mean=[0.1] * 3, std=[2.0] * 3)
    b = PointCloudAdapter(**a.config())
    assert b.config() == a.config()
    t = a.tokenize(Batch(x=torch.rand(2, 64, 6) * 2 - 1))
    mask = torch.zeros(2, 8)
    mask[:, :4] = 1
    pics = a.reconstruct(t.targets, t, mask)
    assert set(pics) == {"original", "masked", "reconstruction"}
    assert pics["original"].shape == (2, 1, 48, 48)
    torch.testing.assert_close(pics["reconstruction"], pics["original"])  # perfect prediction
    assert pics["masked"].sum() < pics["original"].sum()
