"""Fused masking kernels (``omnipatch.masking.triton``) equal the plain-torch reference.

The kernels run two ways: compiled on a CUDA device (``gpu`` marker) and, on any machine, in
Triton's interpreter on CPU tensors. The interpreter needs ``TRITON_INTERPRET=1`` before Triton
is first imported, so in a normal run ``test_parity_in_triton_interpreter`` re-runs this file
in a child process with that variable set; the setting never reaches the other tests.

Ties: the kernels rank ``(key, index)`` pairs, i.e. a stable sort. The reference uses an
unstable ``argsort``, so where keys tie (padding at ``+inf``, tubes, groups) the *order* of
tied indices may differ while every mask, count and the kept set agree. Such cases are
checked against the reference on masks and sets, and exactly against a stable sort.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from omnipatch.masking import MaskSpec
from omnipatch.masking import reference as R
from omnipatch.tokens import PatchTokens

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()
FIELDS = ("idx_keep", "idx_mask", "idx_restore", "visible", "keep_valid", "loss_mask")


@pytest.fixture(params=[
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRET, reason="interpreter run: see test_parity_in_triton_interpreter")),
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(INTERPRET or not CUDA, reason="needs CUDA")]),
])
def dev(request):
    return torch.device(request.param)


@pytest.fixture
def T():
    from omnipatch.masking import triton as kernels

    return kernels


def test_parity_in_triton_interpreter():
    if INTERPRET:
        pytest.skip("already inside the interpreter run")
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-x", "-p", "no:cacheprovider",
         "-m", "not gpu and not slow"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and " failed" not in out.stdout


# ----------------------------------------------------------------------------- oracles
def stable_select(keys, k, padding_mask=None):
    """The reference ``select`` with a stable sort: the kernels' exact contract."""
    orig = torch.argsort
    torch.argsort = lambda x, dim=-1: torch.sort(x, dim=dim, stable=True).indices
    try:
        return R.select(keys, k, padding_mask)
    finally:
        torch.argsort = orig


def assert_same(a, b, fields=FIELDS):
    for f in fields:
        x, y = getattr(a, f).cpu(), getattr(b, f).cpu()
        assert x.dtype == y.dtype and x.shape == y.shape, f"{f}: {x.dtype}{tuple(x.shape)} vs {y.dtype}{tuple(y.shape)}"
        assert torch.equal(x, y), f"{f} differs"


def assert_same_sets(a, b):
    """Equal masks and visible sets; which tied padding slots fill the flagged kept slots of a
    ragged batch, and the order of ties, may differ."""
    assert_same(a, b, ("visible", "keep_valid", "loss_mask"))
    for ka, kb, va in zip(a.idx_keep.cpu(), b.idx_keep.cpu(), a.keep_valid.cpu()):
        assert torch.equal(ka[va].sort().values, kb[va].sort().values), "visible sets differ"


def ragged_padding(B, L, n_valid, dev):
    pad = torch.arange(L).expand(B, L) >= torch.tensor(n_valid).unsqueeze(1)
    return pad.to(dev)


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize("B,L,ratio", [(2, 7, 0.5), (3, 50, 0.75), (1, 260, 0.9)])
def test_select_equals_reference(dev, T, B, L, ratio):
    g = torch.Generator().manual_seed(L)
    keys = torch.rand(B, L, generator=g)
    k = R.budget(torch.ones(B, L, dtype=torch.bool), ratio)
    want = R.select(keys, k)
    assert_same(T.select(keys.to(dev), k.to(dev)), want)  # K = max(k)
    assert_same(T.select(keys.to(dev), int(k[0]), K=int(k[0])), want)  # uniform budget, no sync


def test_select_padding_ragged_budgets(dev, T):
    B, L = 4, 40
    pad = ragged_padding(B, L, [40, 13, 1, 0], "cpu")
    keys, k = R.prepare(torch.rand(B, L, generator=torch.Generator().manual_seed(1)), 0.6, pad)
    got = T.select(keys.to(dev), k.to(dev), pad.to(dev))
    want = R.select(keys, k, pad)
    assert_same_sets(got, want)
    assert_same(got, stable_select(keys, k, pad))
    assert got.keep_valid.sum(1).tolist() == k.tolist()
    assert not (got.visible.cpu() & pad).any() and not (got.loss_mask.cpu().bool() & pad).any()


def test_select_special_keys(dev, T):
    # -0.0 and +0.0 tie (torch orders them equal), +inf slots go last, duplicates by index
    keys = torch.tensor([[0.5, -0.0, 0.0, float("inf"), -1.0, 0.5, 3e38, -3e38]])
    k = torch.tensor([5])
    assert_same(T.select(keys.to(dev), k.to(dev)), stable_select(keys, k))


@pytest.mark.parametrize("strategy", ["block", "tube", "group"])
def test_structured_keys_with_ties(dev, T, strategy):
    g = torch.Generator().manual_seed(3)
    B, grid, r = 3, (4, 3, 5), 0.6
    pad = ragged_padding(B, 60, [60, 47, 20], "cpu")
    if strategy == "block":
        keys, k = R.prepare(R.block_keys(B, grid, 2, generator=g), r, pad)
    elif strategy == "tube":
        keys, k = R.tube_keys(B, grid, r, padding_mask=pad, generator=g)
        keys, k = R.prepare(keys, r, pad, k)
    else:
        groups = torch.arange(5).repeat_interleave(12)
        keys, k = R.group_keys(groups, r, B=B, padding_mask=pad, generator=g)
        keys, k = R.prepare(keys, r, pad, k)
    got = T.select(keys.to(dev), k.to(dev), pad.to(dev))
    want = R.select(keys, k, pad)
    if strategy == "tube":  # a padded sample's budget cuts a tube: which of its tied tokens
        # stay visible is the sort's choice (earliest time first here, unspecified in argsort)
        assert_same(got, want, ("keep_valid",))
        assert torch.equal(got.visible.sum(1).cpu(), want.visible.sum(1))
    else:
        assert_same_sets(got, want)
    assert_same(got, stable_select(keys, k, pad))


# ------------------------------------------------------------------ fused mask + gather
@pytest.mark.parametrize("pos_batch,dtype", [(None, torch.float32), (1, torch.float16), (3, torch.float32)])
def test_mask_gather_forward_backward(dev, T, pos_batch, dtype):
    B, L, D = 3, 45, 20
    g = torch.Generator().manual_seed(0)
    pad = ragged_padding(B, L, [45, 30, 7], "cpu")
    keys, k = R.prepare(torch.rand(B, L, generator=g), 0.7, pad)
    x = torch.randn(B, L, D, generator=g).to(dtype)
    pos = None if pos_batch is None else torch.randn(pos_batch, L, D, generator=g)
    want_res = stable_select(keys, k, pad)
    x_r = x.clone().requires_grad_()
    pos_r = None if pos is None else pos.clone().requires_grad_()
    want = R.gather_tokens(x_r, want_res.idx_keep, pos_r)

    x_d = x.to(dev).requires_grad_()
    pos_d = None if pos is None else pos.to(dev).requires_grad_()
    got, res = T.mask_gather(x_d, k.to(dev), keys=keys.to(dev), padding_mask=pad.to(dev), pos=pos_d)
    assert_same(res, want_res)
    assert got.dtype == want.dtype and torch.equal(got.cpu(), want.detach())

    go = torch.randn(want.shape, generator=g).to(want.dtype)
    inputs_r = [x_r] + ([pos_r] if pos is not None else [])
    inputs_d = [x_d] + ([pos_d] if pos is not None else [])
    for a, b in zip(torch.autograd.grad(got, inputs_d, go.to(dev)), torch.autograd.grad(want, inputs_r, go)):
        assert a.dtype == b.dtype and torch.allclose(a.cpu().float(), b.float(), atol=1e-5), "gradient differs"


def test_mask_gather_seed_mode_is_one_launch_and_deterministic(dev, T):
    B, L, D = 2, 70, 8
    x = torch.randn(B, L, D, device=dev)
    a, ra = T.mask_gather(x, 17, seed=1234)
    b, rb = T.mask_gather(x, 17, seed=1234)
    _, rc = T.mask_gather(x, 17, seed=99)
    assert_same(ra, rb) and torch.equal(a, b)
    assert not torch.equal(ra.idx_keep, rc.idx_keep)
    keys = T.random_keys(B, L, 1234, dev)
    assert keys.shape == (B, L) and bool((keys >= 0).all() and (keys < 1).all())
    want = R.select(keys.cpu(), torch.full((B,), 17))
    assert_same(ra, want)
    assert torch.equal(a.cpu(), R.gather_tokens(x.cpu(), want.idx_keep))


def test_mask_gather_seed_mode_padding(dev, T):
    B, L, D = 3, 33, 4
    pad = ragged_padding(B, L, [33, 10, 2], dev)
    k = R.budget(~pad, 0.5)
    x = torch.randn(B, L, D, device=dev)
    got, res = T.mask_gather(x, k, seed=7, padding_mask=pad)
    keys, _ = R.prepare(T.random_keys(B, L, 7, dev).cpu(), 0.5, pad.cpu())
    assert_same(res, stable_select(keys, k.cpu(), pad.cpu()))


# ---------------------------------------------------------------- gather / unshuffle ops
def test_gather_tokens_any_distinct_index(dev, T):
    g = torch.Generator().manual_seed(5)
    B, L, D = 2, 19, 33  # D not a power of two, beyond one column block when small
    x = torch.randn(B, L, D, generator=g)
    idx = torch.stack([torch.randperm(L, generator=g)[:6] for _ in range(B)])
    x_d = x.to(dev).requires_grad_()
    got = T.gather_tokens(x_d, idx.to(dev))
    x_r = x.clone().requires_grad_()
    want = torch.gather(x_r, 1, idx.unsqueeze(-1).repeat(1, 1, D))  # MAE's formulation
    assert torch.equal(got.cpu(), want.detach())
    go = torch.randn(want.shape, generator=g)
    (a,), (b,) = torch.autograd.grad(got, [x_d], go.to(dev)), torch.autograd.grad(want, [x_r], go)
    assert torch.equal(a.cpu(), b)


@pytest.mark.parametrize("with_pos", [False, True])
def test_unshuffle_decoder_prologue(dev, T, with_pos):
    g = torch.Generator().manual_seed(2)
    B, L, D = 3, 26, 12
    pad = ragged_padding(B, L, [26, 9, 4], "cpu")
    res = R.random_mask(B, L, 0.6, padding_mask=pad, generator=g)  # ragged: flagged kept slots
    assert not res.keep_valid.all()
    y = torch.randn(B, res.num_keep, D, generator=g)
    tok = torch.randn(D, generator=g)
    pos = torch.randn(1, L, D, generator=g) if with_pos else None
    leaves_r = [t.clone().requires_grad_() if t is not None else None for t in (y, tok, pos)]
    want = R.unshuffle(leaves_r[0], leaves_r[1], res, leaves_r[2])
    res_d = R.MaskResult(*(getattr(res, f).to(dev) for f in FIELDS))
    leaves_d = [t.to(dev).requires_grad_() if t is not None else None for t in (y, tok, pos)]
    got = T.unshuffle(leaves_d[0], leaves_d[1], res_d, leaves_d[2])
    assert torch.equal(got.cpu(), want.detach())
    go = torch.randn(want.shape, generator=g)
    lr = [t for t in leaves_r if t is not None]
    ld = [t for t in leaves_d if t is not None]
    for a, b in zip(torch.autograd.grad(got, ld, go.to(dev)), torch.autograd.grad(want, lr, go)):
        assert torch.allclose(a.cpu(), b, atol=1e-5)


# ------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize("strategy,padded", [("random", False), ("random", True), ("block", True),
                                              ("tube", False), ("group", True)])
def test_dispatch_device_path(dev, T, monkeypatch, strategy, padded):
    """``mask_tokens`` / ``make_mask`` through the device path (forced for CPU tensors in the
    interpreter): a valid partition at the reference's ratio, the reference's kept count, the
    gather equal to the reference gather, and the same mask for the same generator state."""
    import omnipatch.masking as M

    if dev.type == "cpu":
        monkeypatch.setattr(M, "_fused", lambda t: True)
    B, grid = 3, (4, 3, 5)
    L, D = 60, 6
    pad = ragged_padding(B, L, [60, 41, 15], dev) if padded else None
    x = torch.randn(B, L, D, device=dev)
    t = PatchTokens(tokens=x, grid=grid, padding_mask=pad, groups=torch.arange(5).repeat_interleave(12).to(dev),
                    modality="x")
    spec = MaskSpec(strategy, 0.6, block_size=2)
    x_vis, res = M.mask_tokens(t, spec, torch.Generator().manual_seed(0))
    x_vis2, res2 = M.mask_tokens(t, spec, torch.Generator().manual_seed(0))
    assert_same(res, res2) and torch.equal(x_vis, x_vis2)
    assert torch.equal(x_vis.cpu(), R.gather_tokens(x.cpu(), res.idx_keep.cpu()))
    cpu_t = t.replace(tokens=x.cpu(), padding_mask=None if pad is None else pad.cpu(), groups=t.groups.cpu())
    monkeypatch.setattr(M, "_fused", lambda t: False)
    want = M.make_mask(cpu_t, spec, torch.Generator().manual_seed(0))
    assert res.num_keep == want.num_keep
    if strategy != "group":  # group budgets depend on which groups are drawn
        assert res.visible.sum(1).tolist() == want.visible.sum(1).tolist()
    both = torch.cat([res.idx_keep, res.idx_mask], 1).cpu()
    assert torch.equal(both.sort(1).values, torch.arange(L).expand(B, L))
    assert torch.equal(torch.gather(both, 1, res.idx_restore.cpu()), torch.arange(L).expand(B, L))
    if pad is not None:
        assert not (res.visible.cpu() & pad.cpu()).any()


# ------------------------------------------------------------------ CPU (reference) side
cpu_only = pytest.mark.skipif(INTERPRET, reason="runs in the parent process")


@cpu_only
def test_cpu_mask_tokens_is_make_mask_plus_gather():
    import omnipatch.masking as M

    x = torch.randn(2, 16, 5)
    pos = torch.randn(1, 16, 5)
    t = PatchTokens(tokens=x, grid=(4, 4), modality="x")
    x_vis, res = M.mask_tokens(t, MaskSpec("block", 0.5), torch.Generator().manual_seed(0), pos=pos)
    want = M.make_mask(t, MaskSpec("block", 0.5), torch.Generator().manual_seed(0))
    assert_same(res, want)
    assert torch.equal(x_vis, torch.gather(x + pos, 1, want.idx_keep.unsqueeze(-1).expand(-1, -1, 5)))


@cpu_only
def test_reference_pos_and_one_pass_unshuffle_match_mae():
    g = torch.Generator().manual_seed(4)
    B, L, D = 3, 12, 4
    pad = ragged_padding(B, L, [12, 5, 9], "cpu")
    res = R.random_mask(B, L, 0.5, padding_mask=pad, generator=g)
    x, pos_b, pos_1 = (torch.randn(s, L, D, generator=g) for s in (B, B, 1))
    for pos in (pos_b, pos_1):
        assert torch.equal(R.gather_tokens(x, res.idx_keep, pos), R.gather_tokens(x + pos, res.idx_keep))
    y = torch.randn(B, res.num_keep, D, generator=g)
    tok = torch.randn(D, generator=g)
    full = torch.cat([y, tok.expand(B, L - res.num_keep, D)], 1)  # MAE: cat + gather + mask
    mae = torch.gather(full, 1, res.idx_restore.unsqueeze(-1).repeat(1, 1, D))
    mae = torch.where(res.visible.unsqueeze(-1), mae, tok)
    assert torch.equal(R.unshuffle(y, tok, res), mae)
    assert torch.equal(R.unshuffle(y, tok, res, pos_1), mae + pos_1)
