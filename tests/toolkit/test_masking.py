import math

import pytest
import torch

from omnipatch.masking import (
    MaskSpec,
    block_mask,
    gather_tokens,
    group_mask,
    make_mask,
    random_mask,
    tube_mask,
    unshuffle,
)
from omnipatch.tokens import PatchTokens


def _check_partition(res, L):
    both = torch.cat([res.idx_keep, res.idx_mask], 1)
    assert torch.equal(both.sort(1).values, torch.arange(L).expand_as(both)), "keep/mask must partition 0..L-1"
    # idx_restore inverts the shuffle
    assert torch.equal(torch.gather(both, 1, res.idx_restore), torch.arange(L).expand_as(both))


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_random_mask_partition_and_ratio(ratio):
    g = torch.Generator().manual_seed(0)
    res = random_mask(4, 50, ratio, generator=g)
    _check_partition(res, 50)
    k = round(50 * (1 - ratio))
    assert res.num_keep == k
    assert res.visible.sum(1).tolist() == [k] * 4
    assert res.loss_mask.sum(1).tolist() == [50 - k] * 4
    assert res.keep_valid.all()


def test_random_mask_deterministic_and_varies_across_samples():
    a = random_mask(3, 64, 0.75, generator=torch.Generator().manual_seed(1))
    b = random_mask(3, 64, 0.75, generator=torch.Generator().manual_seed(1))
    c = random_mask(3, 64, 0.75, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.idx_keep, b.idx_keep)
    assert not torch.equal(a.idx_keep, c.idx_keep)
    assert not torch.equal(a.visible[0], a.visible[1])


def test_padding_never_visible_and_never_scored():
    L = 20
    pad = torch.zeros(3, L, dtype=torch.bool)
    pad[0, 10:] = True  # 10 valid
    pad[1, 4:] = True  # 4 valid
    res = random_mask(3, L, 0.5, padding_mask=pad, generator=torch.Generator().manual_seed(0))
    _check_partition(res, L)
    assert not (res.visible & pad).any(), "padding must never be visible"
    assert not (res.loss_mask.bool() & pad).any(), "padding must never be scored"
    assert res.visible.sum(1).tolist() == [5, 2, 10]
    assert res.loss_mask.sum(1).tolist() == [5, 2, 10]
    # kept slots beyond a sample's budget are flagged, not visible
    assert res.keep_valid.sum(1).tolist() == [5, 2, 10]


def test_all_padding_sample_keeps_nothing_and_scores_nothing():
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[1] = True
    res = random_mask(2, 8, 0.5, padding_mask=pad, generator=torch.Generator().manual_seed(0))
    assert res.visible[1].sum() == 0 and res.loss_mask[1].sum() == 0


def test_block_mask_is_blocky_and_exact():
    grid = (16, 16)
    res = block_mask(8, grid, 0.75, block_size=4, generator=torch.Generator().manual_seed(0))
    _check_partition(res, 256)
    assert res.visible.sum(1).tolist() == [64] * 8
    vis = res.visible.view(8, *grid).float()
    # neighbours agree far more often than under random masking
    agree = (vis[:, 1:, :] == vis[:, :-1, :]).float().mean()
    rnd = random_mask(8, 256, 0.75, generator=torch.Generator().manual_seed(0)).visible.view(8, *grid).float()
    agree_rnd = (rnd[:, 1:, :] == rnd[:, :-1, :]).float().mean()
    assert agree > agree_rnd + 0.15


def test_block_mask_3d_grid():
    res = block_mask(2, (4, 6, 5), 0.6, block_size=(2, 2, 2), generator=torch.Generator().manual_seed(3))
    _check_partition(res, 120)
    assert res.visible.sum(1).tolist() == [48, 48]


def test_tube_mask_same_spatial_mask_over_time():
    T, H, W = 4, 3, 5
    res = tube_mask(3, (T, H, W), 0.6, generator=torch.Generator().manual_seed(0))
    _check_partition(res, T * H * W)
    vis = res.visible.view(3, T, H * W)
    assert torch.equal(vis, vis[:, :1].expand_as(vis)), "each spatial position hidden at every time or none"
    assert vis[:, 0].sum(1).tolist() == [round(15 * 0.4)] * 3


def test_group_mask_hides_whole_groups():
    groups = torch.arange(5).repeat_interleave(6)  # 5 groups x 6 tokens
    res = group_mask(groups, 0.6, B=4, generator=torch.Generator().manual_seed(0))
    _check_partition(res, 30)
    for b in range(4):
        for gid in range(5):
            v = res.visible[b, groups == gid]
            assert v.all() or not v.any(), "a group is either wholly visible or wholly hidden"
        assert int(res.visible[b].sum()) == 2 * 6  # round(5 * 0.4) = 2 groups visible


def test_make_mask_dispatch_and_errors():
    t = PatchTokens(tokens=torch.zeros(2, 16, 8), grid=(4, 4), modality="x")
    assert make_mask(t, MaskSpec("block", 0.5), torch.Generator().manual_seed(0)).visible.sum() == 16
    from omnipatch.errors import OmnipatchError

    with pytest.raises(OmnipatchError, match="needs token groups"):
        make_mask(t, MaskSpec("group", 0.5))
    with pytest.raises(OmnipatchError, match="did you mean 'block'"):
        make_mask(t, MaskSpec("blok", 0.5))
    with pytest.raises(ValueError, match="mask_ratio"):
        random_mask(1, 4, 1.0)


def test_gather_matches_mae_reference_and_unshuffle_restores():
    # MAE reference: x_masked = gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, D))
    x = torch.randn(3, 10, 4)
    res = random_mask(3, 10, 0.7, generator=torch.Generator().manual_seed(0))
    ref = torch.gather(x, 1, res.idx_keep.unsqueeze(-1).repeat(1, 1, 4))
    assert torch.equal(gather_tokens(x, res.idx_keep), ref)
    token = torch.full((4,), -7.0)
    full = unshuffle(ref, token, res)
    vis = res.visible.unsqueeze(-1)
    assert torch.equal(torch.where(vis, full, x), x)  # visible slots back in place
    assert (full[~res.visible] == -7.0).all()  # mask token elsewhere


def test_no_python_loop_scale():
    # batched: a large batch is fast and exact
    res = random_mask(512, 196, 0.75, generator=torch.Generator().manual_seed(0))
    assert res.idx_keep.shape == (512, 49) and math.isclose(float(res.loss_mask.mean()), 147 / 196)
