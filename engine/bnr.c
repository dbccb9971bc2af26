/* bnr.c - fused BatchNorm (+ ReLU6) forward/backward on blocked (nChw8c / nChw16c) f32 with OpenMP (see bnr.h).
 *
 * Each pass is one parallel region that walks groups of channel blocks; per group:
 *   1. the thread's share of the group's units (a fixed contiguous range): per-lane partial sums of
 *      one chunk of one (sample, block) plane; then the group's only barrier;
 *   2. the same units in reverse order: for each block met, fold its units' partial sums in unit
 *      order (double; every thread gets bit-identical coefficients, and the thread owning the
 *      block's first unit publishes statistics, running stats, dgamma/dbeta), then the
 *      element-wise apply. No barrier after it: the next group touches other data only.
 * Barriers are few on purpose: when the 2 cores are oversubscribed (data-loader threads, other
 * processes) a barrier can cost a scheduler time slice. At most BNR_MAX_GROUPS groups per pass.
 * A group holds as many channel blocks as fit about BNR_L2_BUDGET bytes of input per thread, so the
 * apply re-reads from the thread's own L2 what its stats sweep just read. If one block alone
 * exceeds the budget no grouping can help (a block's statistics need every pixel before its first
 * output) and the whole tensor is one group. Tensors under BNR_SERIAL_FLOATS (16 KB)
 * run on the calling thread: there fork/join would cost more than the work.
 * The hot kernels are compiled for AVX-512, AVX2 and baseline x86-64 (target_clones, as
 * gn.c) because the project builds without -march.
 *
 * Bit-identity of the ReLU6 mask: forward and backward both form the pre-activation with
 * bnr_pre() from the same float coefficients. The project compiles as ISO C11 (-std=c11), where
 * GCC does not contract a*b+c into an FMA (-ffp-contract=off), so vector, scalar and every clone
 * round identically; bnr_mask_mismatches() lets the tests verify it.
 */
#include "engine/bnr.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

#define BNR_RUN 32        /* pixels summed in float (half per accumulator set) before double */
#define BNR_MIN_CHUNK 64  /* pixels: smaller chunks cost more in bookkeeping than they balance */
#define BNR_UNITS_PER_THREAD 8
#define BNR_SHIFT_PIX 8   /* pixels of sample 0 averaged into the per-channel shift k */
#define BNR_L2_BUDGET (768 * 1024) /* input bytes per thread per group (L2 is 2 MB per core here) */
#define BNR_SERIAL_FLOATS (1 << 12) /* smaller tensors run single-threaded */
#define BNR_MAX_GROUPS 4  /* barriers per pass, bounded */

/* coef rows of one channel block (each row 16 lane slots; the first B are used) */
enum { CF_K = 0, CF_A, CF_B, CF_P, CF_Q, CF_R, CF_ROWS = 8 };

#if defined(__x86_64__) && !defined(__clang__)
#define BNR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BNR_CLONES
#endif
#define BNR_INLINE static inline __attribute__((always_inline))

/* The pre-activation; the ONLY place it is formed (forward output and backward mask). */
BNR_INLINE float bnr_pre(float x, float k, float a, float b) { return (x - k) * a + b; }
/* torch.nn.ReLU6 (hardtanh 0..6); NaN propagates as in torch. */
BNR_INLINE float bnr_clip6(float v) {
    v = v < 0.0f ? 0.0f : v;
    return v > 6.0f ? 6.0f : v;
}
/* hardtanh backward: the gradient passes only strictly inside (0, 6) (eltwise.h). */
BNR_INLINE float bnr_mask(float v, float g) { return ((v > 0.0f) & (v < 6.0f)) ? g : 0.0f; }

/* ---- kernels on np pixels x B lanes (B = 8 or 16; bodies are always inlined into wrappers that pass
 * a literal B, so the lane loops have constant trip counts; coefficient rows and partial sums keep a
 * stride of 16 lanes whatever B is) ---- */

/* out[0..15] = sum (x - k), out[16..31] = sum (x - k)^2 per lane. Two pixels per step into two
 * accumulator sets: one set is a chain of dependent vector adds (latency-bound below L2 speed). */
BNR_INLINE void bnr_stats_body(const float *px, int np, const float *k, double *out, const int B) {
    double d1[16] = {0}, d2[16] = {0};
    for (int i0 = 0; i0 < np; i0 += BNR_RUN) {
        int i1 = i0 + BNR_RUN < np ? i0 + BNR_RUN : np, i = i0;
        float f1[16] = {0}, f2[16] = {0}, e1[16] = {0}, e2[16] = {0};
        for (; i + 1 < i1; i += 2) {
            const float *r = px + (size_t)i * B;
#pragma omp simd
            for (int c = 0; c < B; c++) {
                float d = r[c] - k[c], t = r[B + c] - k[c];
                f1[c] += d;
                f2[c] += d * d;
                e1[c] += t;
                e2[c] += t * t;
            }
        }
        if (i < i1) {
            const float *r = px + (size_t)i * B;
#pragma omp simd
            for (int c = 0; c < B; c++) {
                float d = r[c] - k[c];
                f1[c] += d;
                f2[c] += d * d;
            }
        }
        for (int c = 0; c < B; c++) d1[c] += (double)f1[c] + (double)e1[c], d2[c] += (double)f2[c] + (double)e2[c];
    }
    for (int c = 0; c < B; c++) out[c] = d1[c], out[16 + c] = d2[c];
}
BNR_CLONES static void bnr_k_stats(const float *px, int np, const float *k, double *out, int B) {
    if (B == 16) bnr_stats_body(px, np, k, out, 16);
    else bnr_stats_body(px, np, k, out, 8);
}

BNR_INLINE void bnr_fwd_body(const float *px, float *py, int np, const float *cf, const int relu6,
                              const int B) {
    const float *k = cf + CF_K * 16, *a = cf + CF_A * 16, *b = cf + CF_B * 16;
    for (int i = 0; i < np; i++) {
        const float *r = px + (size_t)i * B;
        float *o = py + (size_t)i * B;
#pragma omp simd
        for (int c = 0; c < B; c++) {
            float v = bnr_pre(r[c], k[c], a[c], b[c]);
            o[c] = relu6 ? bnr_clip6(v) : v;
        }
    }
}

/* y = clip((x - k)*a + b) per lane; padded lanes have k = a = b = 0, so they become 0. */
BNR_CLONES static void bnr_k_fwd(const float *px, float *py, int np, const float *cf, int relu6, int B) {
    if (B == 16) {
        if (relu6) bnr_fwd_body(px, py, np, cf, 1, 16);
        else bnr_fwd_body(px, py, np, cf, 0, 16);
    } else {
        if (relu6) bnr_fwd_body(px, py, np, cf, 1, 8);
        else bnr_fwd_body(px, py, np, cf, 0, 8);
    }
}

BNR_INLINE void bnr_bstats_body(const float *px, const float *pdy, int np, const float *cf, double *out,
                                const int relu6, const int B) {
    const float *k = cf + CF_K * 16, *a = cf + CF_A * 16, *b = cf + CF_B * 16;
    double d1[16] = {0}, d2[16] = {0};
    for (int i0 = 0; i0 < np; i0 += BNR_RUN) {
        int i1 = i0 + BNR_RUN < np ? i0 + BNR_RUN : np, i = i0;
        float f1[16] = {0}, f2[16] = {0}, e1[16] = {0}, e2[16] = {0};
        for (; i + 1 < i1; i += 2) {
            const float *r = px + (size_t)i * B, *gr = pdy + (size_t)i * B;
#pragma omp simd
            for (int c = 0; c < B; c++) {
                float g = relu6 ? bnr_mask(bnr_pre(r[c], k[c], a[c], b[c]), gr[c]) : gr[c];
                float h = relu6 ? bnr_mask(bnr_pre(r[B + c], k[c], a[c], b[c]), gr[B + c]) : gr[B + c];
                f1[c] += g;
                f2[c] += g * (r[c] - k[c]);
                e1[c] += h;
                e2[c] += h * (r[B + c] - k[c]);
            }
        }
        if (i < i1) {
            const float *r = px + (size_t)i * B, *gr = pdy + (size_t)i * B;
#pragma omp simd
            for (int c = 0; c < B; c++) {
                float g = relu6 ? bnr_mask(bnr_pre(r[c], k[c], a[c], b[c]), gr[c]) : gr[c];
                f1[c] += g;
                f2[c] += g * (r[c] - k[c]);
            }
        }
        for (int c = 0; c < B; c++) d1[c] += (double)f1[c] + (double)e1[c], d2[c] += (double)f2[c] + (double)e2[c];
    }
    for (int c = 0; c < B; c++) out[c] = d1[c], out[16 + c] = d2[c];
}

/* out[0..15] = sum g, out[16..31] = sum g*(x - k), g = dy masked by the recomputed pre-activation. */
BNR_CLONES static void bnr_k_bstats(const float *px, const float *pdy, int np, const float *cf, double *out,
                                    int relu6, int B) {
    if (B == 16) {
        if (relu6) bnr_bstats_body(px, pdy, np, cf, out, 1, 16);
        else bnr_bstats_body(px, pdy, np, cf, out, 0, 16);
    } else {
        if (relu6) bnr_bstats_body(px, pdy, np, cf, out, 1, 8);
        else bnr_bstats_body(px, pdy, np, cf, out, 0, 8);
    }
}

/* No restrict on pdy/pdx: they may alias (each element reads its own dy before writing dx). */
BNR_INLINE void bnr_bwd_body(const float *px, const float *pdy, float *pdx, int np, const float *cf,
                             const int relu6, const int B) {
    const float *k = cf + CF_K * 16, *a = cf + CF_A * 16, *b = cf + CF_B * 16;
    const float *P = cf + CF_P * 16, *Q = cf + CF_Q * 16, *R = cf + CF_R * 16;
    for (int i = 0; i < np; i++) {
        const float *r = px + (size_t)i * B, *gr = pdy + (size_t)i * B;
        float *o = pdx + (size_t)i * B;
        float t[16];
#pragma omp simd
        for (int c = 0; c < B; c++) {
            float g = relu6 ? bnr_mask(bnr_pre(r[c], k[c], a[c], b[c]), gr[c]) : gr[c];
            t[c] = P[c] * g + Q[c] * (r[c] - k[c]) + R[c];
        }
#pragma omp simd
        for (int c = 0; c < B; c++) o[c] = t[c];
    }
}

/* dx = P*g + Q*(x - k) + R per lane (all zero on padded lanes). */
BNR_CLONES static void bnr_k_bwd(const float *px, const float *pdy, float *pdx, int np, const float *cf,
                                 int relu6, int B) {
    if (B == 16) {
        if (relu6) bnr_bwd_body(px, pdy, pdx, np, cf, 1, 16);
        else bnr_bwd_body(px, pdy, pdx, np, cf, 0, 16);
    } else {
        if (relu6) bnr_bwd_body(px, pdy, pdx, np, cf, 1, 8);
        else bnr_bwd_body(px, pdy, pdx, np, cf, 0, 8);
    }
}

/* Stored y versus the recomputed clip(pre) (bitwise), over logical lanes only. */
BNR_CLONES static long bnr_k_check(const float *px, const float *py, int np, const float *cf, int lanes,
                                   int relu6, const int B) {
    const float *k = cf + CF_K * 16, *a = cf + CF_A * 16, *b = cf + CF_B * 16;
    long bad = 0;
    for (int i = 0; i < np; i++)
        for (int c = 0; c < lanes; c++) {
            float v = bnr_pre(px[(size_t)i * B + c], k[c], a[c], b[c]);
            if (relu6) v = bnr_clip6(v);
            float s = py[(size_t)i * B + c];
            uint32_t u1, u2;
            memcpy(&u1, &v, 4), memcpy(&u2, &s, 4);
            bad += u1 != u2;
        }
    return bad;
}

/* ---- plan ---- */

static int bnr_same_act(const tensor *a, const tensor *ref) {
    return a && a->layout == TL_BLOCKED && a->blk == ref->blk && a->n == ref->n && a->c == ref->c && a->h == ref->h && a->w == ref->w;
}

static int bnr_plan_init_impl(bnr_plan *p, eng_ctx *e, bn_layer *l, const tensor *x, tensor *y, tensor *dy,
                              tensor *dx, int relu6) {
    if (x->layout != TL_BLOCKED || x->c != l->cfg.c)
        return ote_err(OTE_EINVAL, "bnrelu plan: x channels: %d (layer has %d) or layout not blocked", x->c,
                       l->cfg.c);
    if (!bnr_same_act(y, x) || !bnr_same_act(dy, x) || !bnr_same_act(dx, x))
        return ote_err(OTE_EINVAL, "bnrelu plan: y, dy or dx missing or not shaped like x (%d,%d,%d,%d)", x->n,
                       x->c, x->h, x->w);
    if (y == x || (y->data && y->data == x->data) || (y->home && y->home == x->home && y->offset == x->offset))
        return ote_err(OTE_EINVAL, "bnrelu plan: y: aliases x (the backward reads x)");
    if (!l->dgamma.mem) return ote_err(OTE_EINVAL, "bnrelu plan: layer has no gradients");
    p->n = x->n, p->blk = x->blk, p->cb = tensor_cblocks(x), p->hw = x->h * x->w;
    p->m = (long)p->n * p->hw;
    /* torch refuses this too ("Expected more than 1 value per channel when training"). */
    if (p->m < 2) return ote_err(OTE_EINVAL, "bnrelu plan: %ld value(s) per channel: training needs at least 2", p->m);
    p->l = l, p->x = x, p->y = y, p->dy = dy, p->dx = dx, p->relu6 = relu6 ? 1 : 0;

    int nth = e && e->nthreads > 0 ? e->nthreads : 1;
    /* groups of channel blocks: forward reads one input (x), backward two (x, dy) */
    size_t cb_bytes = (size_t)p->n * p->hw * p->blk * sizeof(float), budget = (size_t)nth * BNR_L2_BUDGET;
    /* A block larger than the budget cannot stay in L2 between the sweeps: then one group for the
     * whole tensor (fewest barriers). */
    p->gcb_f = cb_bytes > budget ? p->cb : (int)(budget / cb_bytes);
    p->gcb_b = 2 * cb_bytes > budget ? p->cb : (int)(budget / (2 * cb_bytes));
    int gmin = (p->cb + BNR_MAX_GROUPS - 1) / BNR_MAX_GROUPS;
    p->gcb_f = p->gcb_f < gmin ? gmin : p->gcb_f > p->cb ? p->cb : p->gcb_f;
    p->gcb_b = p->gcb_b < gmin ? gmin : p->gcb_b > p->cb ? p->cb : p->gcb_b;
    p->serial = (size_t)p->n * p->cb * p->hw * p->blk < BNR_SERIAL_FLOATS;
    /* enough units in the smallest group to keep every thread busy */
    long planes = (long)p->gcb_b * p->n, target = (long)BNR_UNITS_PER_THREAD * nth;
    long splits = p->serial ? 1 : (target + planes - 1) / planes;
    long max_splits = (p->hw + BNR_MIN_CHUNK - 1) / BNR_MIN_CHUNK;
    if (splits > max_splits) splits = max_splits;
    if (splits < 1) splits = 1;
    p->chunk = (int)((p->hw + splits - 1) / splits);
    p->splits = (p->hw + p->chunk - 1) / p->chunk;
    p->units = p->cb * p->n * p->splits;

    size_t lanes = (size_t)p->cb * 16;
    size_t n_part = (size_t)p->units * 32;
    size_t bytes = (n_part + 4 * lanes) * sizeof(double) + lanes * (CF_ROWS + 2) * sizeof(float);
    size_t rounded = (bytes + 63) / 64 * 64;
    p->block = aligned_alloc(64, rounded);
    if (!p->block) return ote_err(OTE_ENOMEM, "bnrelu plan: buffers of %zu bytes", rounded);
    memset(p->block, 0, rounded);
    p->part = p->block;
    p->mean = p->part + n_part;
    p->var = p->mean + lanes;
    p->dmk = p->var + lanes;
    p->rstd = p->dmk + lanes;
    p->coef = (float *)(p->rstd + lanes);
    p->cal = p->coef + lanes * CF_ROWS;
    return OTE_OK;
}

int bnr_plan_init(bnr_plan *p, eng_ctx *e, bn_layer *l, const tensor *x, tensor *y, tensor *dy, tensor *dx,
                  int relu6) {
    memset(p, 0, sizeof *p);
    int s = bnr_plan_init_impl(p, e, l, x, y, dy, dx, relu6);
    if (s < 0) {
        ote_err_context(s, "bnrelu plan (%d channels) for input (%d,%d,%d,%d)", l->cfg.c, x->n, x->c, x->h, x->w);
        bnr_plan_free(p);
    }
    return s;
}

void bnr_plan_free(bnr_plan *p) {
    free(p->block);
    memset(p, 0, sizeof *p);
}

/* Unit u -> first pixel and pixel count inside plane (n, cb); returns the plane's element offset. */
static size_t bnr_unit(const bnr_plan *p, int u, int *cb, int *p0, int *np) {
    int s = u % p->splits, plane = u / p->splits; /* plane = cb * N + n */
    int n = plane % p->n;
    *cb = plane / p->n;
    *p0 = s * p->chunk;
    *np = (*p0 + p->chunk <= p->hw ? p->chunk : p->hw - *p0);
    return (((size_t)n * p->cb + (size_t)*cb) * p->hw + (size_t)*p0) * p->blk;
}

/* Forward coefficients of block cb from the partial sums of its units (summed in unit order, so
 * every thread derives bit-identical values). cf receives rows K, A, B. The one thread that owns the
 * block's first unit passes `owner` and publishes the statistics, the coefficients the backward
 * uses, and the running statistics. */
static void bnr_fwd_coef(bnr_plan *p, int cb, float *cf, int owner) {
    bn_layer *l = p->l;
    const int C = l->cfg.c, per_cb = p->n * p->splits;
    const double M = (double)p->m, eps = l->cfg.eps, mom = l->cfg.momentum, unb = M / (M - 1.0);
    float *shared = p->coef + (size_t)cb * CF_ROWS * 16;
    for (int j = 0; j < p->blk; j++) {
        int c = cb * p->blk + j;
        cf[CF_K * 16 + j] = shared[CF_K * 16 + j]; /* 0 on padded lanes */
        if (c >= C) {
            cf[CF_A * 16 + j] = cf[CF_B * 16 + j] = 0.0f;
            continue;
        }
        double s1 = 0, s2 = 0;
        for (int u = cb * per_cb; u < (cb + 1) * per_cb; u++) {
            s1 += p->part[(size_t)u * 32 + j];
            s2 += p->part[(size_t)u * 32 + 16 + j];
        }
        double dm = s1 / M, var = s2 / M - dm * dm;
        if (var < 0) var = 0;
        if (l->frozen) { /* bn.h frozen: the running statistics, centred on the same k */
            dm = (double)l->run_mean.data[c] - (double)cf[CF_K * 16 + j];
            var = (double)l->run_var.data[c];
        }
        double rs = 1.0 / sqrt(var + eps), gamma = l->gamma.data[c], beta = l->beta.data[c];
        if (l->calibrate) {
            /* bn.h calibrate: gamma = sqrt(var + eps), beta = mean + beta (rounded to float as they
             * will be stored), so this forward returns about x + old beta. Every thread derives the
             * same values; the owner stores them, bnr_forward publishes them after the region. */
            gamma = (float)sqrt(var + eps);
            beta = (float)((double)cf[CF_K * 16 + j] + dm + beta);
            if (owner) p->cal[c] = (float)gamma, p->cal[p->cb * 16 + c] = (float)beta;
        }
        double a = gamma * rs;
        cf[CF_A * 16 + j] = (float)a;
        /* y = (x - k)*a + beta - a*(mean - k): centred on the exact float k */
        cf[CF_B * 16 + j] = (float)(beta - a * dm);
        if (!owner) continue;
        shared[CF_A * 16 + j] = cf[CF_A * 16 + j];
        shared[CF_B * 16 + j] = cf[CF_B * 16 + j];
        p->dmk[c] = dm;
        p->mean[c] = (double)cf[CF_K * 16 + j] + dm;
        p->var[c] = var;
        p->rstd[c] = rs;
        if (l->frozen) continue;
        /* torch.nn.BatchNorm2d (CPU), as bn.c: running = m*stat + (1 - m)*running in double,
         * unbiased variance for running_var. */
        l->run_mean.data[c] = (float)(mom * p->mean[c] + (1.0 - mom) * (double)l->run_mean.data[c]);
        l->run_var.data[c] = (float)(mom * var * unb + (1.0 - mom) * (double)l->run_var.data[c]);
    }
}

/* Backward coefficients of block cb: rows K, A, B copied from the forward, P, Q, R derived from
 * the partial sums (unit order, bit-identical on every thread); the owner writes dgamma/dbeta. */
static void bnr_bwd_coef(bnr_plan *p, int cb, float *cf, int owner, int accumulate) {
    bn_layer *l = p->l;
    const int C = l->cfg.c, per_cb = p->n * p->splits;
    const double M = (double)p->m;
    const float *shared = p->coef + (size_t)cb * CF_ROWS * 16;
    memcpy(cf, shared, 3 * 16 * sizeof(float)); /* K, A, B */
    for (int j = 0; j < p->blk; j++) {
        int c = cb * p->blk + j;
        if (c >= C) {
            cf[CF_P * 16 + j] = cf[CF_Q * 16 + j] = cf[CF_R * 16 + j] = 0.0f;
            continue;
        }
        double s1 = 0, s2 = 0;
        for (int u = cb * per_cb; u < (cb + 1) * per_cb; u++) {
            s1 += p->part[(size_t)u * 32 + j];
            s2 += p->part[(size_t)u * 32 + 16 + j];
        }
        /* sum g*(x - mean) = sum g*(x - k) - (mean - k)*sum g */
        double rs = p->rstd[c], dm = p->dmk[c];
        double db = s1, dg = rs * (s2 - dm * s1);
        double P = (double)l->gamma.data[c] * rs, Q = l->frozen ? 0.0 : -P * rs * dg / M;
        cf[CF_P * 16 + j] = (float)P;
        cf[CF_Q * 16 + j] = (float)Q;
        /* Q*(x - mean) = Q*(x - k) - Q*(mean - k); frozen: the statistics are constants, dx = P*g */
        cf[CF_R * 16 + j] = l->frozen ? 0.0f : (float)(-P * db / M - Q * dm);
        if (!owner) continue;
        if (accumulate) {
            l->dgamma.data[c] += (float)dg;
            l->dbeta.data[c] += (float)db;
        } else {
            l->dgamma.data[c] = (float)dg;
            l->dbeta.data[c] = (float)db;
        }
    }
}

/* This thread's units of the group of blocks [g0, g1): a fixed contiguous range, the same for the
 * statistics and the apply sweep (so the apply re-reads what this thread just read). */
static void bnr_range(const bnr_plan *p, int g0, int g1, int *ub, int *ue) {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num(); /* 1, 0 outside a region */
    const int per_cb = p->n * p->splits, nu = (g1 - g0) * per_cb;
    *ub = g0 * per_cb + (int)((long)nu * t / nt);
    *ue = g0 * per_cb + (int)((long)nu * (t + 1) / nt);
}

/* The forward's work for one member of the team (or the lone thread). Only orphaned barriers, so the
 * serial path runs the same code without entering a parallel region (libgomp allocates a team for
 * `parallel if (0)`, which a step must not do). One barrier per group: every thread folds the
 * partial sums of the blocks it applies itself instead of waiting for one thread to do it. */
static void bnr_fwd_team(bnr_plan *p) {
    const float *X = p->x->data;
    float *Y = p->y->data;
    const int CB = p->cb, per_cb = p->n * p->splits, GF = p->gcb_f;
    float cf[CF_ROWS * 16];
    for (int g0 = 0; g0 < CB; g0 += GF) {
        const int g1 = g0 + GF < CB ? g0 + GF : CB;
        int ub, ue;
        bnr_range(p, g0, g1, &ub, &ue);
        for (int u = ub; u < ue; u++) {
            int cb, p0, np;
            size_t o = bnr_unit(p, u, &cb, &p0, &np);
            bnr_k_stats(X + o, np, p->coef + (size_t)cb * CF_ROWS * 16 + CF_K * 16, p->part + (size_t)u * 32, p->blk);
        }
#pragma omp barrier
        /* Apply in reverse: the chunks read last are the likeliest still in L2. No barrier after:
         * the next group touches other blocks, units and coefficients only. */
        int have = -1;
        for (int u = ue - 1; u >= ub; u--) {
            int cb, p0, np;
            size_t o = bnr_unit(p, u, &cb, &p0, &np);
            if (cb != have) {
                /* the owner of a block's first unit reaches that block in this loop too */
                int first = cb * per_cb;
                bnr_fwd_coef(p, cb, cf, first >= ub && first < ue);
                have = cb;
            }
            bnr_k_fwd(X + o, Y + o, np, cf, p->relu6, p->blk);
        }
    }
}

int bnr_forward(bnr_plan *p, eng_ctx *e) {
    (void)e;
    const float *X = p->x->data;
    const int C = p->l->cfg.c, HW = p->hw, ks = HW < BNR_SHIFT_PIX ? HW : BNR_SHIFT_PIX, B = p->blk;
    /* Shift k: mean of the first pixels of sample 0, rounded to float (the exact value every
     * kernel subtracts). Serial: C * 8 reads. */
    for (int c = 0; c < C; c++) {
        const float *px = X + (size_t)(c / B) * HW * B + c % B;
        double s = 0;
        for (int i = 0; i < ks; i++) s += (double)px[(size_t)i * B];
        p->coef[(size_t)(c / B) * CF_ROWS * 16 + CF_K * 16 + c % B] = (float)(s / ks);
    }
    if (p->serial) {
        bnr_fwd_team(p);
    } else {
#pragma omp parallel
        bnr_fwd_team(p);
    }
    if (p->l->calibrate) { /* published after the region: the team read the old gamma/beta */
        for (int c = 0; c < C; c++) p->l->gamma.data[c] = p->cal[c], p->l->beta.data[c] = p->cal[p->cb * 16 + c];
        p->l->calibrate = 0;
    }
    return OTE_OK;
}

static void bnr_bwd_team(bnr_plan *p, int accumulate) {
    const float *X = p->x->data, *DY = p->dy->data;
    float *DX = p->dx->data;
    const int CB = p->cb, per_cb = p->n * p->splits, GB = p->gcb_b;
    float cf[CF_ROWS * 16];
    for (int g0 = 0; g0 < CB; g0 += GB) {
        const int g1 = g0 + GB < CB ? g0 + GB : CB;
        int ub, ue;
        bnr_range(p, g0, g1, &ub, &ue);
        for (int u = ub; u < ue; u++) {
            int cb, p0, np;
            size_t o = bnr_unit(p, u, &cb, &p0, &np);
            bnr_k_bstats(X + o, DY + o, np, p->coef + (size_t)cb * CF_ROWS * 16, p->part + (size_t)u * 32, p->relu6, p->blk);
        }
#pragma omp barrier
        int have = -1;
        for (int u = ue - 1; u >= ub; u--) {
            int cb, p0, np;
            size_t o = bnr_unit(p, u, &cb, &p0, &np);
            if (cb != have) {
                int first = cb * per_cb;
                bnr_bwd_coef(p, cb, cf, first >= ub && first < ue, accumulate);
                have = cb;
            }
            bnr_k_bwd(X + o, DY + o, DX + o, np, cf, p->relu6, p->blk);
        }
    }
}

int bnr_backward(bnr_plan *p, eng_ctx *e, int accumulate) {
    (void)e;
    if (p->serial) {
        bnr_bwd_team(p, accumulate);
    } else {
#pragma omp parallel
        bnr_bwd_team(p, accumulate);
    }
    return OTE_OK;
}

long bnr_mask_mismatches(const bnr_plan *p) {
    long bad = 0;
    for (int u = 0; u < p->units; u++) {
        int cb, p0, np;
        size_t o = bnr_unit(p, u, &cb, &p0, &np);
        int lanes = p->l->cfg.c - cb * p->blk < p->blk ? p->l->cfg.c - cb * p->blk : p->blk;
        bad += bnr_k_check(p->x->data + o, p->y->data + o, np, p->coef + (size_t)cb * CF_ROWS * 16, lanes, p->relu6,
                           p->blk);
    }
    return bad;
}
