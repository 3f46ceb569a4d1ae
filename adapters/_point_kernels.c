/* CPU kernels of omnipatch.adapters.point_kernels: farthest-point sampling (single- and
   multi-threaded) and exact kNN. Built by setuptools at install time (setup.py, extension
   omnipatch.adapters._point_kernels) and loaded with ctypes: plain C with no Python C API, so
   the module is never imported, only its shared object opened. Floating-point flags matter
   (setup.py): -ffp-contract=off keeps ((dx^2 + dy^2) + dz^2) unfused, like open3d and the torch
   oracle, so float64 input reproduces open3d index for index. */
#include <stdint.h>
#include <stdlib.h>
#include <float.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* target_clones needs ifunc (GNU toolchain on Linux x86); elsewhere one baseline build. */
#if defined(__GNUC__) && defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* Farthest-point sampling of clouds [b0, b1): the loop of open3d's FarthestPointDownSample
   (running minimum of squared distances, next = first index of the maximum), vectorised:
   one array per coordinate, chunks of CH points that each record their maximum so that the
   first index of the overall maximum is found by scanning chunk maxima, then one chunk.
   Sentinels are finite (+-MAX) so the max reductions vectorise under -ffinite-math-only;
   target_clones picks AVX-512 / AVX2 / baseline code at load time. */
#define CH 64
#define FPS_UPDATE(T, NAME, BIG)                                                             \
CLONES                                                                                       \
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
CLONES
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
