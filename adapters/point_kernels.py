"""Farthest-point sampling and kNN grouping kernels, dispatched by device.

Same contracts as :mod:`omnipatch.adapters.point_ops` (plain torch, the oracle):

- CUDA tensors: Triton kernels. FPS runs one program per cloud with the whole cloud and its
  running distances in registers (``N <= 16384``; larger clouds fall back to torch); kNN runs
  one program per block of queries, streaming the points in chunks and keeping a running
  top-k of ``(distance, index)`` pairs packed into one int64 (``tl.topk``), so the
  ``(B, M, N)`` distance matrix of ``cdist`` + ``topk`` is never written.
- CPU tensors: C kernels (``_point_kernels.c``), built at install time as the optional
  extension ``omnipatch.adapters._point_kernels`` and called through ctypes, one thread per slice
  of the batch, or, for batches of fewer large clouds than threads, all threads on each
  cloud (each owns a range of points; one spin barrier per FPS step). When the extension was not
  built (no C compiler at install time; one line on stderr says so) or with
  ``OMNIPATCH_NO_CKERNELS=1``, the torch oracle runs. Nothing is compiled at run time.

Both FPS paths compute ``((dx^2 + dy^2) + dz^2)`` in the input dtype with no fused
multiply-add, like open3d and the torch oracle, so float64 input reproduces open3d's
``farthest_point_down_sample`` index for index. kNN is exact: squared distances in float32
from differences (not ``|a|^2 - 2ab + |b|^2`` as ``cdist`` does for large inputs), ties to
the lower index.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from omnipatch.adapters import point_ops

try:  # Triton ships with torch on Linux; elsewhere the CUDA path is the torch oracle
    import triton
    import triton.language as tl

    from omnipatch.masking.triton import interpreter_compat

    interpreter_compat()
except ImportError:  # pragma: no cover - platform without triton
    triton = None

FPS_MAX_POINTS = 16384
KNN_BLOCK_M = 16
KNN_CHUNK = 128


# ------------------------------------------------------------------------------ oracles
def knn_reference(query: Tensor, xyz: Tensor, k: int, valid: Tensor | None = None) -> Tensor:
    """Exact kNN in plain torch: the kernels' contract (``(B, M, k)`` long, nearest first,
    ties to the lower index, padding never a neighbour, missing neighbours = the nearest)."""
    q, p = query.float(), xyz.float()
    d = (q[:, :, None, 0] - p[:, None, :, 0]).square()
    d = d + (q[:, :, None, 1] - p[:, None, :, 1]).square()
    d = d + (q[:, :, None, 2] - p[:, None, :, 2]).square()
    if valid is not None:
        d = d.masked_fill(~valid[:, None, :], float("inf"))
    order = torch.sort(d, dim=-1, stable=True)
    kk = min(k, d.shape[-1])
    idx, dist = order.indices[..., :kk], order.values[..., :kk]
    idx = torch.where(torch.isfinite(dist), idx, idx[..., :1])
    if kk < k:
        idx = torch.cat([idx, idx[..., :1].expand(-1, -1, k - kk)], -1)
    return idx


# ------------------------------------------------------------------------------ dispatch
def farthest_point_sample(xyz: Tensor, n: int, valid: Tensor | None = None,
                          start: int | Tensor = 0) -> tuple[Tensor, Tensor]:
    """Farthest-point sampling; see :func:`omnipatch.adapters.point_ops.farthest_point_sample`.

    Args:
        xyz: ``(B, N, 3)`` float32 or float64.
        n: centres to pick.
        valid: ``(B, N)`` bool, True for real points (at least one per cloud).
        start: first index, int or ``(B,)`` long; an invalid start becomes the first valid point.
    Returns:
        ``idx (B, n)`` long in pick order and ``idx_valid (B, n)`` bool.
    """
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"farthest_point_sample expects xyz (B, N, 3), got {tuple(xyz.shape)}")
    B, N, _ = xyz.shape
    fast = xyz.dtype in (torch.float32, torch.float64) and N > 0 and n > 0
    if xyz.is_cuda and triton is not None and fast and N <= FPS_MAX_POINTS:
        run = _fps_triton
    elif not xyz.is_cuda and fast and _clib() is not None:
        run = _fps_c
    else:
        return point_ops.farthest_point_sample(xyz, n, valid, start)
    idx = run(xyz.contiguous(), None if valid is None else valid.contiguous(), _start(valid, start, B, xyz.device), n)
    n_valid = torch.full((B,), N, device=xyz.device) if valid is None else valid.sum(1)
    return idx, torch.arange(n, device=xyz.device).unsqueeze(0) < n_valid.unsqueeze(1)


def run_triton_fps(xyz: Tensor, n: int, valid: Tensor | None = None, start: int | Tensor = 0) -> Tensor:
    """The Triton FPS on any tensor (CPU tensors only under ``TRITON_INTERPRET=1``): ``(B, n)``."""
    B = xyz.shape[0]
    far = _start(valid, start, B, xyz.device)
    return _fps_triton(xyz.contiguous(), None if valid is None else valid.contiguous(), far, n)


def _start(valid: Tensor | None, start: int | Tensor, B: int, device) -> Tensor:
    """``(B,)`` long first picks; an invalid start becomes the cloud's first valid point."""
    far = torch.as_tensor(start, dtype=torch.long, device=device).expand(B).contiguous()
    if valid is not None:
        ok = valid.gather(1, far[:, None])[:, 0]
        far = torch.where(ok, far, valid.long().argmax(1))
    return far


def knn(query: Tensor, xyz: Tensor, k: int, valid: Tensor | None = None) -> Tensor:
    """Exact k nearest points of ``xyz (B, N, 3)`` to each ``query (B, M, 3)``: ``(B, M, k)``
    long, nearest first (contract of :func:`knn_reference`)."""
    if query.is_cuda and triton is not None and xyz.shape[1] > 0 and k > 0:
        return run_triton_knn(query, xyz, k, valid)
    if not query.is_cuda and _clib() is not None and xyz.shape[1] > 0 and k > 0:
        return _knn_c(query, xyz, k, valid)
    return knn_reference(query, xyz, k, valid)


# ------------------------------------------------------------------------ triton kernels
if triton is not None:

    @triton.jit
    def _fps_kernel(xyz_ptr, valid_ptr, start_ptr, out_ptr, N, n,
                    HAS_VALID: tl.constexpr, BLOCK_N: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK_N)
        inb = offs < N
        base = xyz_ptr + b * N * 3
        x = tl.load(base + offs * 3, mask=inb, other=0.0)
        y = tl.load(base + offs * 3 + 1, mask=inb, other=0.0)
        z = tl.load(base + offs * 3 + 2, mask=inb, other=0.0)
        ok = inb
        if HAS_VALID:
            ok = ok & (tl.load(valid_ptr + b * N + offs, mask=inb, other=0) != 0)
        dist = tl.where(ok, float("inf"), float("-inf")).to(x.dtype)  # padding: never farthest
        far = tl.load(start_ptr + b)
        for i in range(n):
            tl.store(out_ptr + b * n + i, far)
            dx = x - tl.load(base + far * 3)
            dy = y - tl.load(base + far * 3 + 1)
            dz = z - tl.load(base + far * 3 + 2)
            d = dx * dx
            d = d + dy * dy
            d = d + dz * dz
            dist = tl.minimum(dist, d)
            far = tl.argmax(dist, 0, tie_break_left=True).to(tl.int64)

    @triton.jit
    def _knn_kernel(q_ptr, xyz_ptr, valid_ptr, out_ptr, M, N, k,
                    HAS_VALID: tl.constexpr, BLOCK_M: tl.constexpr, CHUNK: tl.constexpr, KP: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        om = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        in_m = om < M
        qb = q_ptr + (b * M + om) * 3
        qx = tl.load(qb, mask=in_m, other=0.0).to(tl.float32)
        qy = tl.load(qb + 1, mask=in_m, other=0.0).to(tl.float32)
        qz = tl.load(qb + 2, mask=in_m, other=0.0).to(tl.float32)
        # running best, as bitwise complements so that tl.topk (largest first) keeps the
        # smallest (distance bits << 32 | index) keys; -2^63 = ~INT64_MAX = "nothing yet"
        best = tl.full([BLOCK_M, KP], -0x7FFFFFFFFFFFFFFF - 1, dtype=tl.int64)
        for n0 in range(0, N, CHUNK):
            on = n0 + tl.arange(0, CHUNK)
            in_n = on < N
            pb = xyz_ptr + (b * N + on) * 3
            px = tl.load(pb, mask=in_n, other=0.0).to(tl.float32)
            py = tl.load(pb + 1, mask=in_n, other=0.0).to(tl.float32)
            pz = tl.load(pb + 2, mask=in_n, other=0.0).to(tl.float32)
            ok = in_n
            if HAS_VALID:
                ok = ok & (tl.load(valid_ptr + b * N + on, mask=in_n, other=0) != 0)
            dx = qx[:, None] - px[None, :]
            dy = qy[:, None] - py[None, :]
            dz = qz[:, None] - pz[None, :]
            d = dx * dx
            d = d + dy * dy
            d = d + dz * dz
            key = (d.to(tl.int32, bitcast=True).to(tl.int64) << 32) | on.to(tl.int64)[None, :]
            key = tl.where(ok[None, :], key, 0x7FFFFFFFFFFFFFFF)
            top = tl.topk(~key, KP)  # (BLOCK_M, KP)
            best = tl.topk(tl.reshape(tl.join(best, top), [BLOCK_M, 2 * KP]), KP)
        key = ~best  # ascending
        idx = key & 0xFFFFFFFF
        col = tl.arange(0, KP)
        nearest = tl.sum(tl.where(col[None, :] == 0, idx, 0), axis=1)
        found = (key >> 32) < 0x7F800000  # a finite distance: a real, valid neighbour
        idx = tl.where(found, idx, nearest[:, None])
        out = out_ptr + ((b * M + om) * k)[:, None] + col[None, :]
        tl.store(out, idx, mask=in_m[:, None] & (col[None, :] < k))


def _fps_triton(xyz: Tensor, valid: Tensor | None, far: Tensor, n: int) -> Tensor:
    B, N, _ = xyz.shape
    out = torch.empty(B, n, dtype=torch.long, device=xyz.device)
    block = triton.next_power_of_2(N)
    warps = 4 if block <= 1024 else 8 if block <= 4096 else 16
    _fps_kernel[(B,)](xyz, valid if valid is not None else far, far, out, N, n,
                      HAS_VALID=valid is not None, BLOCK_N=block, num_warps=warps, enable_fp_fusion=False)
    return out


def run_triton_knn(query: Tensor, xyz: Tensor, k: int, valid: Tensor | None = None, *,
                   block_m: int = KNN_BLOCK_M, chunk: int = KNN_CHUNK) -> Tensor:
    """The Triton kNN on any tensor (CPU tensors only under ``TRITON_INTERPRET=1``, where small
    ``block_m`` / ``chunk`` keep the interpreted ``tl.topk`` affordable)."""
    B, M, _ = query.shape
    N = xyz.shape[1]
    out = torch.empty(B, M, k, dtype=torch.long, device=query.device)
    kp = max(16, triton.next_power_of_2(k))
    chunk = max(min(chunk, triton.next_power_of_2(N)), kp)
    if B * M:
        _knn_kernel[(B, triton.cdiv(M, block_m))](
            query.contiguous(), xyz.contiguous(), valid.contiguous() if valid is not None else out, out, M, N, k,
            HAS_VALID=valid is not None, BLOCK_M=block_m, CHUNK=chunk, KP=kp, num_warps=4,
            enable_fp_fusion=False,
        )
    return out


# ----------------------------------------------------------------------------- C kernels
# adapters/_point_kernels.c, built at install time by setup.py (an optional extension);
# nothing is compiled at run time.
_EXT = "omnipatch.adapters._point_kernels"
_lock = threading.Lock()
_lib: list = []  # [ctypes.CDLL | None] once tried


def _clib():
    """The C kernels built at install time; None when not built or disabled."""
    if _lib:
        return _lib[0]
    with _lock:
        if not _lib:
            _lib.append(None if os.environ.get("OMNIPATCH_NO_CKERNELS") == "1" else _load())
    return _lib[0]


def _load():
    """Open the installed extension's shared object (plain C, loaded with ctypes, never
    imported); without it, say once that the torch path runs."""
    spec = importlib.util.find_spec(_EXT)
    try:
        if spec is None or not spec.origin:
            raise OSError("not built at install time; reinstall with a C compiler (gcc or clang) present")
        lib = ctypes.CDLL(spec.origin)
    except OSError as e:  # once per process (the result is kept), one line like omnipatch's other notes
        print(f"omnipatch: C point kernels unavailable ({e}); FPS/kNN on the CPU use the slower torch path",
              file=sys.stderr)
        return None
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    for name in ("fps_f32", "fps_f64"):
        getattr(lib, name).argtypes = [P, P, P, I64, I64, I64, I64, P]
    lib.knn_f32.argtypes = [P, P, P, I64, I64, I64, I64, I64, P]
    for name in ("fps_mt_f32", "fps_mt_f64"):
        getattr(lib, name).argtypes = [P, P, I64, I64, I64, ctypes.c_int, P]
    for name in ("fps_f32", "fps_f64", "knn_f32", "fps_mt_f32", "fps_mt_f64"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


_pool: list = []  # one lazily created executor, reused (creating threads per call costs ~ms)


def _split(B: int, call, work: int, min_work: int = 2_000_000) -> None:
    """Run ``call(b0, b1)`` over slices of the batch on up to ``torch.get_num_threads()``
    threads (ctypes releases the GIL) when there is enough ``work`` (point updates) to pay
    for the hand-off; raise if a slice failed."""
    n = max(1, min(B, torch.get_num_threads(), work // min_work))
    bounds = [(B * i // n, B * (i + 1) // n) for i in range(n)]
    if n == 1:
        rcs = [call(*bounds[0])]
    else:
        with _lock:
            if not _pool or _pool[0]._max_workers < n:
                _pool[:] = [ThreadPoolExecutor(n, thread_name_prefix="omnipatch-points")]
        rcs = list(_pool[0].map(lambda ab: call(*ab), bounds))
    if any(rcs):
        raise MemoryError("point kernel could not allocate its buffers")


MT_MIN_POINTS = 8192  # float64 clouds this large (float32: twice) are split over threads when B < threads


def _fps_c(xyz: Tensor, valid: Tensor | None, far: Tensor, n: int) -> Tensor:
    B, N, _ = xyz.shape
    out = torch.empty(B, n, dtype=torch.long)
    fn = _clib().fps_f64 if xyz.dtype == torch.float64 else _clib().fps_f32
    v = None if valid is None else valid.to(torch.uint8).contiguous()
    far = far.contiguous()
    nt = torch.get_num_threads()
    # few big clouds: the threads share each cloud (1 x 20k -> 512 float64: 3.4 -> 2.2 ms on 2 cores;
    # below ~8k float64 / 16k float32 points per cloud the per-step barrier costs more than it saves)
    if B < nt and N * xyz.element_size() >= MT_MIN_POINTS * 8 and n > 1:
        mt = _clib().fps_mt_f64 if xyz.dtype == torch.float64 else _clib().fps_mt_f32
        size = xyz.element_size()
        for b in range(B):
            rc = mt(xyz.data_ptr() + b * N * 3 * size, None if v is None else v.data_ptr() + b * N,
                    int(far[b]), N, n, min(nt, 64), out.data_ptr() + b * n * 8)
            if rc == -1:
                raise MemoryError("point kernel could not allocate its buffers")
            if rc:  # no threads: the single-threaded kernel for this cloud
                fn(xyz.data_ptr(), None if v is None else v.data_ptr(), far.data_ptr(), b, b + 1, N, n,
                   out.data_ptr())
        return out
    _split(B, lambda b0, b1: fn(xyz.data_ptr(), None if v is None else v.data_ptr(), far.data_ptr(),
                                b0, b1, N, n, out.data_ptr()), B * N * n)
    return out


def _knn_c(query: Tensor, xyz: Tensor, k: int, valid: Tensor | None) -> Tensor:
    B, M, _ = query.shape
    N = xyz.shape[1]
    q, p = query.float().contiguous(), xyz.float().contiguous()
    v = None if valid is None else valid.to(torch.uint8).contiguous()
    out = torch.empty(B, M, k, dtype=torch.long)
    _split(B, lambda b0, b1: _clib().knn_f32(q.data_ptr(), p.data_ptr(), None if v is None else v.data_ptr(),
                                             b0, b1, M, N, k, out.data_ptr()), B * M * N, 500_000)
    return out


__all__ = ["farthest_point_sample", "knn", "knn_reference", "run_triton_fps", "run_triton_knn"]
