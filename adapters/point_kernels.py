"""Farthest-point sampling and kNN grouping kernels, dispatched by device.

Same contracts as :mod:`omnipatch.adapters.point_ops` (plain torch, the oracle):

- CUDA tensors: Triton kernels. FPS runs one program per cloud with the whole cloud and its
  running distances in registers (``N <= 16384``; larger clouds fall back to torch); kNN runs
  one program per block of queries, streaming the points in chunks and keeping a running
  top-k of ``(distance, index)`` pairs packed into one int64 (``tl.topk``), so the
  ``(B, M, N)`` distance matrix of ``cdist`` + ``topk`` is never written.
- CPU tensors: a small C kernel, compiled on first use with the system C compiler into the
  user cache (``$XDG_CACHE_HOME/omnipatch``) and called through ctypes, one thread per slice
  of the batch, or, for batches of fewer large clouds than threads, all threads on each
  cloud (each owns a range of points; one spin barrier per FPS step). Without a compiler (or with ``OMNIPATCH_NO_CKERNELS=1``) the torch oracle runs.

Both FPS paths compute ``((dx^2 + dy^2) + dz^2)`` in the input dtype with no fused
multiply-add, like open3d and the torch oracle, so float64 input reproduces open3d's
``farthest_point_down_sample`` index for index. kNN is exact: squared distances in float32
from differences (not ``|a|^2 - 2ab + |b|^2`` as ``cdist`` does for large inputs), ties to
the lower index.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
_C_SRC = r"""
#include <stdint.h>
#include <stdlib.h>
#include <float.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* Farthest-point sampling of clouds [b0, b1): the loop of open3d's FarthestPointDownSample
   (running minimum of squared distances, next = first index of the maximum), vectorised:
   one array per coordinate, chunks of CH points that each record their maximum so that the
   first index of the overall maximum is found by scanning chunk maxima, then one chunk.
   Sentinels are finite (+-MAX) so the max reductions vectorise under -ffinite-math-only;
   target_clones picks AVX-512 / AVX2 / baseline code at load time. */
#define CH 64
#define FPS_UPDATE(T, NAME, BIG)                                                             \
__attribute__((target_clones("avx512f", "avx2", "default")))                                 \
static T NAME##_update(T* x, T* y, T* z, T* d, T* cm, int64_t c0, int64_t c1, T fx, T fy, T fz) { \
    T best = -BIG;                                                                           \
    for (int64_t c = c0; c < c1; ++c) {                                                      \
        T lm = -BIG;                                                                         \
        T *xc = x + c * CH, *yc = y + c * CH, *zc = z + c * CH, *dc = d + c * CH;            \
        for (int64_t i = 0; i < CH; ++i) {                                                   \
            T dx = xc[i] - fx, dy = yc[i] - fy, dz = zc[i] - fz;                             \
            T dd = dx * dx;                                                                  \
            dd = dd + dy * dy;                                                               \
            dd = dd + dz * dz;                                                               \
            T m = dd < dc[i] ? dd : dc[i];                                                   \
            dc[i] = m;                                                                       \
            lm = m > lm ? m : lm;                                                            \
        }                                                                                    \
        cm[c] = lm;                                                                          \
        best = lm > best ? lm : best;                                                        \
    }                                                                                        \
    return best;                                                                             \
}                                                                                            \
/* points [i0, i1) into per-axis arrays; running distance +BIG, or -BIG for padding */      \
static void NAME##_load(const T* p, const uint8_t* v, int64_t N, int64_t i0, int64_t i1,     \
                        T* x, T* y, T* z, T* d) {                                            \
    for (int64_t i = i0; i < i1; ++i) {                                                      \
        int ok = i < N;                                                                      \
        x[i] = ok ? p[3 * i] : 0; y[i] = ok ? p[3 * i + 1] : 0; z[i] = ok ? p[3 * i + 2] : 0; \
        d[i] = (ok && (!v || v[i])) ? BIG : -BIG;                                            \
    }                                                                                        \
}
FPS_UPDATE(float, fps_f32, FLT_MAX)
FPS_UPDATE(double, fps_f64, DBL_MAX)

#define FPS(T, NAME, BIG)                                                                    \
int NAME(const T* xyz, const uint8_t* valid, const int64_t* start, int64_t b0, int64_t b1,  \
         int64_t N, int64_t n, int64_t* out) {                                               \
    int64_t nc = (N + CH - 1) / CH, Np = nc * CH;                                            \
    T* buf = (T*)malloc(sizeof(T) * (4 * (size_t)Np + (size_t)nc));                          \
    if (!buf) return -1;                                                                     \
    T *x = buf, *y = buf + Np, *z = buf + 2 * Np, *d = buf + 3 * Np, *cm = buf + 4 * Np;     \
    for (int64_t b = b0; b < b1; ++b) {                                                      \
        const T* p = xyz + b * N * 3;                                                        \
        const uint8_t* v = valid ? valid + b * N : 0;                                        \
        NAME##_load(p, v, N, 0, Np, x, y, z, d);                                             \
        int64_t far = start[b];                                                              \
        for (int64_t s = 0; s < n; ++s) {                                                    \
            out[b * n + s] = far;                                                            \
            const T fx = x[far], fy = y[far], fz = z[far];                                   \
            T best = NAME##_update(x, y, z, d, cm, 0, nc, fx, fy, fz);                      \
            int64_t c = 0;                                                                   \
            while (cm[c] != best) ++c;                                                       \
            int64_t i = c * CH;                                                              \
            while (d[i] != best) ++i;                                                        \
            far = i;                                                                         \
        }                                                                                    \
    }                                                                                        \
    free(buf);                                                                               \
    return 0;                                                                                \
}
FPS(float, fps_f32, FLT_MAX)
FPS(double, fps_f64, DBL_MAX)

/* One large cloud on nt threads: thread t owns chunks [nc t / nt, nc (t+1) / nt) of the
   running distances, updates them and reports its maximum and the first index of it; after
   one spin barrier every thread picks the same next point (the lowest thread holding the
   overall maximum, i.e. its first index). Reports are double-buffered by step parity, so
   one barrier per step suffices. Same arithmetic as FPS above, so the same indices. */
typedef struct { atomic_int count, gen; int nt; } spin_barrier;
static void barrier_wait(spin_barrier* b) {
    int g = atomic_load_explicit(&b->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == b->nt - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->gen, 1, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&b->gen, memory_order_acquire) == g; ) {
        if (++spins > 4096) { sched_yield(); spins = 0; }
#if defined(__x86_64__) || defined(__i386__)
        else __builtin_ia32_pause();
#endif
    }
}
#define FPS_MT(T, NAME, UPD, BIG)                                                                 \
typedef struct { const T* p; const uint8_t* v; int64_t N, n, nc, start; T *x, *y, *z, *d, *cm, \
                 *tbest; int64_t *tidx, *out; spin_barrier* bar; atomic_int* go; int tid; } NAME##_arg; \
static void* NAME##_run(void* ap) {                                                          \
    NAME##_arg* a = (NAME##_arg*)ap;                                                         \
    int go;                                                                                  \
    while ((go = atomic_load_explicit(a->go, memory_order_acquire)) == 0) sched_yield();     \
    if (go < 0) return 0;                                                                    \
    const int nt = a->bar->nt, t = a->tid;                                                   \
    const int64_t c0 = a->nc * t / nt, c1 = a->nc * (t + 1) / nt, N = a->N;                  \
    UPD##_load(a->p, a->v, N, c0 * CH, c1 * CH, a->x, a->y, a->z, a->d);                  \
    barrier_wait(a->bar);                                                                    \
    int64_t far = a->start;                                                                  \
    for (int64_t s = 0; s < a->n; ++s) {                                                     \
        if (t == 0) a->out[s] = far;                                                         \
        T best = UPD##_update(a->x, a->y, a->z, a->d, a->cm, c0, c1, a->x[far], a->y[far], a->z[far]); \
        int64_t c = c0;                                                                      \
        while (c < c1 - 1 && a->cm[c] != best) ++c;                                          \
        int64_t i = c * CH;                                                                  \
        while (i < (c + 1) * CH - 1 && a->d[i] != best) ++i;                                 \
        const int buf = (int)(s & 1) * nt;                                                   \
        a->tbest[buf + t] = best; a->tidx[buf + t] = i;                                      \
        barrier_wait(a->bar);                                                                \
        T gb = a->tbest[buf]; far = a->tidx[buf];                                            \
        for (int u = 1; u < nt; ++u)                                                         \
            if (a->tbest[buf + u] > gb) { gb = a->tbest[buf + u]; far = a->tidx[buf + u]; }  \
    }                                                                                        \
    return 0;                                                                                \
}                                                                                            \
int NAME(const T* xyz, const uint8_t* valid, int64_t start, int64_t N, int64_t n, int nt, int64_t* out) { \
    int64_t nc = (N + CH - 1) / CH, Np = nc * CH;                                            \
    if (nt < 2 || nc < nt || nt > 64) return -2;                                             \
    T* buf = (T*)malloc(sizeof(T) * (4 * (size_t)Np + (size_t)nc + 2 * (size_t)nt));          \
    int64_t* tidx = (int64_t*)malloc(sizeof(int64_t) * 2 * (size_t)nt);                      \
    if (!buf || !tidx) { free(buf); free(tidx); return -1; }                                 \
    spin_barrier bar; atomic_init(&bar.count, 0); atomic_init(&bar.gen, 0); bar.nt = nt;     \
    atomic_int go; atomic_init(&go, 0);                                                      \
    NAME##_arg args[64]; pthread_t th[64];                                                   \
    int started = 0, rc = 0;                                                                 \
    for (int t = 0; t < nt; ++t) {                                                           \
        NAME##_arg a = {xyz, valid, N, n, nc, start, buf, buf + Np, buf + 2 * Np, buf + 3 * Np, \
                        buf + 4 * Np, buf + 4 * Np + nc, tidx, out, &bar, &go, t};           \
        args[t] = a;                                                                         \
    }                                                                                        \
    for (int t = 1; t < nt; ++t, ++started)                                                  \
        if (pthread_create(&th[t - 1], 0, NAME##_run, &args[t])) { rc = -3; break; }         \
    atomic_store_explicit(&go, rc ? -1 : 1, memory_order_release);                           \
    if (!rc) NAME##_run(&args[0]);                                                           \
    for (int t = 0; t < started; ++t) pthread_join(th[t], 0);                                \
    free(buf); free(tidx);                                                                   \
    return rc;                                                                               \
}
FPS_MT(float, fps_mt_f32, fps_f32, FLT_MAX)
FPS_MT(double, fps_mt_f64, fps_f64, DBL_MAX)

/* Exact kNN of queries of clouds [b0, b1): float32 squared distances from differences, a
   sorted insertion list of (distance, index); ties keep the lower index. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void knn_dist(const float* x, const float* y, const float* z, int64_t N, float qx, float qy, float qz,
                     float* dist) {
    for (int64_t j = 0; j < N; ++j) {
        float dx = qx - x[j], dy = qy - y[j], dz = qz - z[j];
        float dd = dx * dx;
        dd = dd + dy * dy;
        dist[j] = dd + dz * dz;
    }
}
int knn_f32(const float* q, const float* xyz, const uint8_t* valid, int64_t b0, int64_t b1,
            int64_t M, int64_t N, int64_t k, int64_t* out) {
    float* bd = (float*)malloc(sizeof(float) * (size_t)k);
    int64_t* bi = (int64_t*)malloc(sizeof(int64_t) * (size_t)k);
    float *x = (float*)malloc(sizeof(float) * 4 * (size_t)N), *y = x + N, *z = x + 2 * N, *dist = x + 3 * N;
    if (!bd || !bi || !x) { free(bd); free(bi); free(x); return -1; }
    for (int64_t b = b0; b < b1; ++b) {
        const float* p = xyz + b * N * 3;
        const uint8_t* v = valid ? valid + b * N : 0;
        for (int64_t j = 0; j < N; ++j) { x[j] = p[3 * j]; y[j] = p[3 * j + 1]; z[j] = p[3 * j + 2]; }
        for (int64_t m = 0; m < M; ++m) {
            const float* qm = q + (b * M + m) * 3;
            knn_dist(x, y, z, N, qm[0], qm[1], qm[2], dist);  /* vectorised; the selection below is not */
            int64_t cnt = 0;
            for (int64_t j = 0; j < N; ++j) {
                const float dd = dist[j];
                if ((cnt == k && !(dd < bd[k - 1])) || (v && !v[j])) continue;
                int64_t pos = cnt < k ? cnt++ : k - 1;
                while (pos > 0 && dd < bd[pos - 1]) { bd[pos] = bd[pos - 1]; bi[pos] = bi[pos - 1]; --pos; }
                bd[pos] = dd; bi[pos] = j;
            }
            int64_t* o = out + (b * M + m) * k;
            for (int64_t t = 0; t < k; ++t) o[t] = t < cnt ? bi[t] : (cnt ? bi[0] : 0);
        }
    }
    free(bd); free(bi); free(x);
    return 0;
}
"""
_C_FLAGS = ["-O3", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-fno-math-errno", "-ffinite-math-only",
            "-fno-signed-zeros", "-fno-trapping-math"]
_lock = threading.Lock()
_lib: list = []  # [ctypes.CDLL | None] once tried


def _clib():
    """The compiled C kernels, built on first use; None when unavailable or disabled."""
    if _lib:
        return _lib[0]
    with _lock:
        if not _lib:
            _lib.append(None if os.environ.get("OMNIPATCH_NO_CKERNELS") == "1" else _build())
    return _lib[0]


def _build():
    cc = os.environ.get("CC", "cc")
    key = hashlib.sha256((_C_SRC + " ".join(_C_FLAGS) + cc + os.uname().machine).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "omnipatch"
    so = cache / f"point_kernels_{key}.so"
    try:
        if not so.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                src = Path(tmp) / "point_kernels.c"
                src.write_text(_C_SRC)
                subprocess.run([cc, *_C_FLAGS, str(src), "-o", str(Path(tmp) / "k.so")],
                               check=True, capture_output=True, timeout=120)
                os.replace(Path(tmp) / "k.so", so)  # atomic: concurrent builders agree
        lib = ctypes.CDLL(str(so))
    except (OSError, subprocess.SubprocessError) as e:
        warnings.warn(f"omnipatch: C point kernels unavailable ({e}); using the torch path", RuntimeWarning)
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
