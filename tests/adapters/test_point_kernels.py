"""FPS and kNN kernels (``omnipatch.adapters.point_kernels``) equal their oracles.

FPS: the torch ``point_ops.farthest_point_sample`` (itself open3d index for index) and open3d.
kNN: the exact torch ``knn_reference``; and ``point_ops.knn`` (``cdist`` + ``topk``) on the
neighbour distances. The C kernels (the extension built at install time) run here directly;
the Triton kernels run compiled on CUDA (``gpu`` marker) and, on any machine, in Triton's
interpreter in a child process with ``TRITON_INTERPRET=1`` (``test_parity_in_triton_interpreter``),
so that setting never reaches the other tests.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omnipatch.adapters import point_kernels as K
from omnipatch.adapters import point_ops

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()
not_in_child = pytest.mark.skipif(INTERPRET, reason="runs in the parent process")
COMPILER = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
c_path = pytest.mark.skipif(K._clib() is None, reason="C extension not built (see test_c_extension_built_at_install)")


@pytest.fixture(params=[
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRET, reason="interpreter run: see test_parity_in_triton_interpreter")),
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(INTERPRET or not CUDA, reason="needs CUDA")]),
])
def dev(request):
    return torch.device(request.param)


def test_parity_in_triton_interpreter():
    if INTERPRET:
        pytest.skip("already inside the interpreter run")
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-x", "-p", "no:cacheprovider",
         "-m", "not gpu and not slow"],
        cwd=root, env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and " failed" not in out.stdout


def _cloud(B, N, seed, dtype=torch.float32):
    return torch.rand(B, N, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _ragged(B, N, n_valid):
    return torch.arange(N).expand(B, N) < torch.tensor(n_valid).unsqueeze(1)


# ------------------------------------------------------------------------------ C path
@not_in_child
@pytest.mark.skipif(COMPILER is None or os.environ.get("OMNIPATCH_NO_CKERNELS") == "1",
                    reason="no C compiler here, so the install leaves the extension out")
def test_c_extension_built_at_install():
    lib = K._clib()
    assert lib is not None, ("omnipatch.adapters._point_kernels was not built although a C compiler is present: "
                             "reinstall (pip install -e .) or run `python setup.py build_ext --inplace`")
    assert Path(lib._name).parent == Path(K.__file__).parent  # the package's own, not a cache
    assert lib._name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


@not_in_child
@c_path
def test_loading_compiles_nothing(monkeypatch):
    """Opening the kernels starts no compiler: any subprocess fails the load."""
    def refuse(*a, **k):
        raise AssertionError(f"point kernels ran a subprocess at run time: {a}")
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(K, "_lib", [])
    assert K._clib() is not None


@not_in_child
def test_missing_extension_says_so_once_and_falls_back(monkeypatch, capsys):
    monkeypatch.setattr(K, "_EXT", "omnipatch.adapters._no_such_kernels")
    monkeypatch.setattr(K, "_lib", [])
    x = _cloud(2, 100, 4)
    got = K.farthest_point_sample(x, 10)[0]
    assert torch.equal(K.knn(x[:, :5], x, 4), K.knn_reference(x[:, :5], x, 4))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not built at install time" in err[0] and "torch path" in err[0], err  # once, one line
    assert torch.equal(got, point_ops.farthest_point_sample(x, 10)[0])


@not_in_child
@c_path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_c_equals_torch_oracle(dtype):
    x = _cloud(3, 700, 0, dtype)
    valid = _ragged(3, 700, [700, 90, 700])
    valid[2, :5] = False  # start 2 is padding: the first valid point (5) starts instead
    start = torch.tensor([0, 17, 2])
    got = K.farthest_point_sample(x, 120, valid, start)
    want = point_ops.farthest_point_sample(x, 120, valid, start)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[0][2, 0] == 5 and int(got[0][1, :90].max()) < 90


@not_in_child
@c_path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_c_threads_share_one_big_cloud(dtype, monkeypatch):
    """One cloud split over threads (B < threads) picks exactly the oracle's points,
    including a padded start and more picks than valid points."""
    monkeypatch.setattr(K, "MT_MIN_POINTS", 1000)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # 3 owners, uneven chunk ranges
    x = _cloud(1, 2500, 4, dtype)
    for valid, start, n in ((None, 7, 200), (_ragged(1, 2500, [1800]), 2400, 1900)):
        got = K.farthest_point_sample(x, n, valid, start)
        want = point_ops.farthest_point_sample(x, n, valid, start)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@not_in_child
@c_path
def test_fps_c_matches_open3d_index_for_index():
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(1)
    for n_pts, n, start in ((600, 40, 0), (257, 257, 0), (400, 64, 123)):
        p = rng.random((n_pts, 3))
        out = np.asarray(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)).farthest_point_down_sample(n, start).points)
        where = {tuple(r): i for i, r in enumerate(p)}  # open3d returns the picks in input order
        idx, ok = K.farthest_point_sample(torch.from_numpy(p)[None], n, start=start)
        assert sorted(idx[0].tolist()) == sorted(where[tuple(r)] for r in out) and ok.all()
        assert idx[0, 0] == start


@not_in_child
@c_path
def test_knn_c_equals_exact_reference_and_cdist_distances():
    x = _cloud(3, 400, 2)
    q = _cloud(3, 25, 3)
    valid = _ragged(3, 400, [400, 7, 150])  # cloud 1 has fewer points than k
    for k in (1, 8, 32):
        got = K.knn(q, x, k, valid)
        assert torch.equal(got, K.knn_reference(q, x, k, valid))
        assert bool(valid.gather(1, got.flatten(1)).all()), "padding is never a neighbour"
        # point_ops.knn ranks cdist distances; the neighbour distances agree to rounding
        theirs = point_ops.knn(q, x, k, valid)
        d = lambda i: (point_ops.gather_points(x, i) - q[:, :, None]).square().sum(-1)  # noqa: E731
        assert torch.allclose(d(got), d(theirs), atol=1e-6)
    assert K.knn(q, x, 32, valid)[1, :, 7:].eq(K.knn(q, x, 32, valid)[1, :, :1]).all(), "missing = nearest"


@not_in_child
def test_fallback_without_c_kernels(monkeypatch):
    monkeypatch.setattr(K, "_clib", lambda: None)
    x = _cloud(2, 100, 4)
    assert torch.equal(K.farthest_point_sample(x, 10)[0], point_ops.farthest_point_sample(x, 10)[0])
    assert torch.equal(K.knn(x[:, :5], x, 4), K.knn_reference(x[:, :5], x, 4))


@not_in_child
def test_fps_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        K.farthest_point_sample(torch.zeros(2, 10, 4), 3)


# ------------------------------------------------------------------------- Triton path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_triton_equals_torch_oracle(dev, dtype):
    x = _cloud(3, 300, 5, dtype)
    valid = _ragged(3, 300, [300, 40, 299])
    valid[2, :3] = False
    start = torch.tensor([0, 9, 1])
    want = point_ops.farthest_point_sample(x, 48, valid, start)[0]
    got = K.run_triton_fps(x.to(dev), 48, valid.to(dev), start.to(dev))
    assert torch.equal(got.cpu(), want)
    if dev.type == "cuda":  # the dispatcher takes the Triton path for CUDA tensors
        assert torch.equal(K.farthest_point_sample(x.to(dev), 48, valid.to(dev), start.to(dev))[0].cpu(), want)


@pytest.mark.parametrize("B,k,N", [(1, 5, 40), (2, 20, 12)])  # 3 point chunks; fewer points than k
def test_knn_triton_equals_exact_reference(dev, B, k, N):
    x = _cloud(B, N, 6)
    q = _cloud(B, 4, 7)
    valid = _ragged(B, N, [N, max(1, N // 3)][:B])
    valid[0, 3] = False
    want = K.knn_reference(q, x, k, valid)
    small = dict(block_m=4, chunk=16) if dev.type == "cpu" else {}
    got = K.run_triton_knn(q.to(dev), x.to(dev), k, valid.to(dev), **small)
    assert torch.equal(got.cpu(), want)
    if dev.type == "cuda":
        assert torch.equal(K.knn(q.to(dev), x.to(dev), k, valid.to(dev)).cpu(), want)
