/* gn.c - GroupNorm forward/backward on blocked (nChw8c / nChw16c) f32 with OpenMP (see gn.h).
 *
 * Each pass is two sweeps over the tensor, both parallel over (n, channel block):
 *   1. per-lane partial sums of one channel block (a "stats" kernel), then a tiny serial step
 *      that folds lanes into groups and derives per-channel coefficients;
 *   2. an element-wise "apply" kernel with those coefficients.
 * This works for any C % G == 0, whether a group lies inside one block (64 ch / 32 groups: 8 whole
 * groups of 2 lanes per block) or spans several blocks.
 *
 * Numerics: sums are taken over short runs (GN_CHUNK pixels) in float, so the lane loops
 * vectorise, and the run totals are added in double. Forward statistics are shifted by one sample
 * of the group (x[n, first channel of g, 0, 0]) so E[d^2] - E[d]^2 does not cancel when
 * |mean| >> std. Apply kernels use centred forms (x - mean) for the same reason.
 *
 * The hot kernels are compiled for AVX-512, AVX2 and baseline x86-64 (target_clones) because the
 * project builds without -march; the loader picks one at start-up.
 */
#include "engine/gn.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

#define GN_CHUNK 32 /* pixels summed in float before adding into double */

#if defined(__x86_64__) && !defined(__clang__)
#define GN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GN_CLONES
#endif

int gn_layer_init(gn_layer *l, eng_ctx *e, const gn_cfg *cfg, arena *params, arena *grads) {
    memset(l, 0, sizeof *l);
    if (cfg->channels <= 0 || cfg->groups <= 0 || cfg->channels % cfg->groups != 0)
        return ote_err(OTE_EINVAL, "groupnorm: channels: %d not divisible by groups: %d", cfg->channels,
                       cfg->groups);
    l->c = cfg->channels;
    l->g = cfg->groups;
    l->eps = cfg->eps > 0 ? cfg->eps : 1e-5f; /* torch.nn.GroupNorm default */
    CHECK(tensor_plan_plain(e, &l->gamma, TL_X, l->c, 1, 1, 1, params));
    CHECK(tensor_plan_plain(e, &l->beta, TL_X, l->c, 1, 1, 1, params));
    CHECK(tensor_plan_plain(e, &l->dgamma, TL_X, l->c, 1, 1, 1, grads));
    CHECK(tensor_plan_plain(e, &l->dbeta, TL_X, l->c, 1, 1, 1, grads));
    return OTE_OK;
}

void gn_layer_reset_params(gn_layer *l) {
    ASSERT(l->gamma.data && l->beta.data);
    for (int c = 0; c < l->c; c++) {
        l->gamma.data[c] = 1.0f;
        l->beta.data[c] = 0.0f;
    }
}

void gn_layer_free(gn_layer *l) {
    tensor_free(&l->gamma);
    tensor_free(&l->beta);
    tensor_free(&l->dgamma);
    tensor_free(&l->dbeta);
}

static int gn_same_act(const tensor *a, const tensor *ref) {
    return a->layout == TL_BLOCKED && a->blk == ref->blk && a->n == ref->n && a->c == ref->c && a->h == ref->h && a->w == ref->w;
}

void gn_plan_fuse_relu(gn_plan *p, int on) { p->relu = on; }

int gn_plan_init(gn_plan *p, eng_ctx *e, gn_layer *l, const tensor *x, tensor *y, const tensor *dy,
                 tensor *dx, int training) {
    memset(p, 0, sizeof *p);
    if (x->layout != TL_BLOCKED || x->c != l->c)
        return ote_err(OTE_EINVAL, "groupnorm: input channels: %d (layer has %d) or layout not blocked", x->c,
                       l->c);
    ASSERT(gn_same_act(y, x));
    if (training) {
        ASSERT(y != x && "GN training forward must not run in place: backward reads x");
        ASSERT(dy && gn_same_act(dy, x));
        if (dx) ASSERT(gn_same_act(dx, x));
    }
    p->l = l;
    p->x = x, p->y = y, p->dy = training ? dy : NULL, p->dx = training ? dx : NULL;
    p->training = training;
    p->n = x->n;
    p->cb = tensor_cblocks(x);
    p->hw = x->h * x->w;
    p->chunks = e->nthreads > 1 ? e->nthreads : 1;
    if (p->chunks > p->hw) p->chunks = p->hw;
    size_t nblk = (size_t)p->n * p->cb;
    size_t n_part = nblk * 2 * 16, n_ng = (size_t)p->n * l->g, n_coef = nblk * 4 * 16;
    size_t bytes = (n_part + 2 * n_ng) * sizeof(double) + n_coef * sizeof(float);
    p->block = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p->block) return ote_err(OTE_ENOMEM, "groupnorm: plan buffers of %zu bytes", bytes);
    memset(p->block, 0, bytes);
    p->part = p->block;
    p->mean = p->part + n_part;
    p->rstd = p->mean + n_ng;
    p->coef = (float *)(p->rstd + n_ng);
    return OTE_OK;
}

void gn_plan_free(gn_plan *p) {
    free(p->block);
    memset(p, 0, sizeof *p);
}

/* ---- kernels on one channel block of one sample: hw pixels x B lanes (B = 8 or 16) ----
 * Each body is always inlined into a wrapper that passes a literal B, so every loop has a constant
 * trip count and vectorises; coefficient and partial-sum rows keep a stride of 16 (TENSOR_MAX_BLK)
 * whatever B is. */
#define GN_INLINE static inline __attribute__((always_inline))

/* s1 = sum(x - k), s2 = sum((x - k)^2) per lane. */
GN_INLINE void gn_stats_body(const float *px, int hw, const float *k, double *s1, double *s2, const int B) {
    double d1[16] = {0}, d2[16] = {0};
    for (int i0 = 0; i0 < hw; i0 += GN_CHUNK) {
        int i1 = i0 + GN_CHUNK < hw ? i0 + GN_CHUNK : hw;
        float f1[16] = {0}, f2[16] = {0};
        for (int i = i0; i < i1; i++) {
            const float *r = px + (size_t)i * B;
            for (int c = 0; c < B; c++) {
                float d = r[c] - k[c];
                f1[c] += d;
                f2[c] += d * d;
            }
        }
        for (int c = 0; c < B; c++) d1[c] += (double)f1[c], d2[c] += (double)f2[c];
    }
    for (int c = 0; c < B; c++) s1[c] = d1[c], s2[c] = d2[c];
}
GN_CLONES static void gn_k_stats(const float *px, int hw, const float *k, double *s1, double *s2, int B) {
    if (B == 16) gn_stats_body(px, hw, k, s1, s2, 16);
    else gn_stats_body(px, hw, k, s1, s2, 8);
}

/* y = (x - k) * a + b per lane (a = b = k = 0 on padded lanes, so they stay 0), then, if relu,
 * 0 where that value is not > 0 (oneDNN's relu may give -0 there; the backward's mask y > 0 is
 * identical either way). */
GN_INLINE void gn_affine_body(const float *px, float *py, int hw, const float *cf, int relu, const int B) {
    const float *a = cf, *b = cf + 16, *k = cf + 32;
    for (int i = 0; i < hw; i++) {
        const float *r = px + (size_t)i * B;
        float *o = py + (size_t)i * B;
#pragma omp simd
        for (int c = 0; c < B; c++) {
            float v = (r[c] - k[c]) * a[c] + b[c];
            o[c] = relu && !(v > 0.0f) ? 0.0f : v;
        }
    }
}
GN_CLONES static void gn_k_affine(const float *px, float *py, int hw, const float *cf, int relu, int B) {
    if (B == 16) gn_affine_body(px, py, hw, cf, relu, 16);
    else gn_affine_body(px, py, hw, cf, relu, 8);
}

/* s1 = sum dy, s2 = sum dy * (x - k) per lane. */
GN_INLINE void gn_bstats_body(const float *px, const float *pdy, int hw, const float *k, double *s1, double *s2,
                              const int B) {
    double d1[16] = {0}, d2[16] = {0};
    for (int i0 = 0; i0 < hw; i0 += GN_CHUNK) {
        int i1 = i0 + GN_CHUNK < hw ? i0 + GN_CHUNK : hw;
        float f1[16] = {0}, f2[16] = {0};
        for (int i = i0; i < i1; i++) {
            const float *r = px + (size_t)i * B, *g = pdy + (size_t)i * B;
            for (int c = 0; c < B; c++) {
                f1[c] += g[c];
                f2[c] += g[c] * (r[c] - k[c]);
            }
        }
        for (int c = 0; c < B; c++) d1[c] += (double)f1[c], d2[c] += (double)f2[c];
    }
    for (int c = 0; c < B; c++) s1[c] = d1[c], s2[c] = d2[c];
}
GN_CLONES static void gn_k_bstats(const float *px, const float *pdy, int hw, const float *k, double *s1,
                                  double *s2, int B) {
    if (B == 16) gn_bstats_body(px, pdy, hw, k, s1, s2, 16);
    else gn_bstats_body(px, pdy, hw, k, s1, s2, 8);
}

/* dx = p*dy + q*(x - k) + r per lane. dx may alias dy (each element reads its own dy first). */
GN_INLINE void gn_bapply_body(const float *px, const float *pdy, float *pdx, int hw, const float *cf, const int B) {
    const float *p = cf, *q = cf + 16, *k = cf + 32, *r = cf + 48;
    for (int i = 0; i < hw; i++) {
        const float *xr = px + (size_t)i * B, *g = pdy + (size_t)i * B;
        float *o = pdx + (size_t)i * B;
#pragma omp simd
        for (int c = 0; c < B; c++) {
            float v = p[c] * g[c] + q[c] * (xr[c] - k[c]) + r[c];
            o[c] = v;
        }
    }
}
GN_CLONES static void gn_k_bapply(const float *px, const float *pdy, float *pdx, int hw, const float *cf, int B) {
    if (B == 16) gn_bapply_body(px, pdy, pdx, hw, cf, 16);
    else gn_bapply_body(px, pdy, pdx, hw, cf, 8);
}

/* The shift of lane c of block cb of sample n: the group's first channel at pixel (0, 0). */
static float gn_shift(const gn_plan *p, int n, int c) {
    const tensor *x = p->x;
    int cpg = x->c / p->l->g;
    int c0 = c / cpg * cpg;
    return x->data[blk_off(x->c, x->h, x->w, x->blk, n, c0, 0, 0)];
}

int gn_forward(gn_plan *p, eng_ctx *e) {
    (void)e;
    const gn_layer *l = p->l;
    const tensor *x = p->x;
    const int N = p->n, CB = p->cb, HW = p->hw, C = l->c, G = l->g, cpg = C / G, B = x->blk;
    const size_t blk = (size_t)HW * B;

#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int cb = 0; cb < CB; cb++) {
            float *k = p->coef + ((size_t)n * CB + cb) * 64 + 32;
            for (int j = 0; j < B; j++) k[j] = cb * B + j < C ? gn_shift(p, n, cb * B + j) : 0.0f;
            double *part = p->part + ((size_t)n * CB + cb) * 32;
            gn_k_stats(x->data + ((size_t)n * CB + cb) * blk, HW, k, part, part + 16, B);
        }

    /* Fold lanes into groups (serial: N*C additions). */
    const double m = (double)cpg * HW;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            double s1 = 0, s2 = 0;
            for (int c = g * cpg; c < (g + 1) * cpg; c++) {
                const double *part = p->part + ((size_t)n * CB + c / B) * 32;
                s1 += part[c % B];
                s2 += part[16 + c % B];
            }
            double dm = s1 / m, var = s2 / m - dm * dm;
            if (var < 0) var = 0;
            p->mean[(size_t)n * G + g] = (double)gn_shift(p, n, g * cpg) + dm;
            p->rstd[(size_t)n * G + g] = 1.0 / sqrt(var + (double)l->eps);
        }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < CB * B; c++) {
            float *cf = p->coef + ((size_t)n * CB + c / B) * 64 + c % B;
            if (c >= C) {
                cf[0] = cf[16] = cf[32] = 0.0f;
                continue;
            }
            /* y = (x - k)*a + beta - a*(mean - k): centred on the exact float shift k; the
             * small correction mean - k is formed in double. */
            size_t ng = (size_t)n * G + c / cpg;
            double a = (double)l->gamma.data[c] * p->rstd[ng];
            cf[0] = (float)a;
            cf[16] = (float)((double)l->beta.data[c] - a * (p->mean[ng] - (double)cf[32]));
        }

    /* Apply, split by (sample, row chunk) before channel blocks: with static scheduling a thread
     * writes whole rows of all channels, the part of the map the next convolution's forward
     * (partitioned over samples and output rows) reads on the same thread. */
    const int S = p->chunks, relu = p->relu;
#pragma omp parallel for collapse(3) schedule(static)
    for (int n = 0; n < N; n++)
        for (int sc = 0; sc < S; sc++)
            for (int cb = 0; cb < CB; cb++) {
                int i0 = (int)((long)HW * sc / S), i1 = (int)((long)HW * (sc + 1) / S);
                size_t o = ((size_t)n * CB + cb) * blk + (size_t)i0 * B;
                const float *cf = p->coef + ((size_t)n * CB + cb) * 64;
                gn_k_affine(x->data + o, p->y->data + o, i1 - i0, cf, relu, B);
            }
    return OTE_OK;
}

int gn_backward(gn_plan *p, eng_ctx *e, int accumulate) {
    (void)e;
    ASSERT(p->training && p->dy);
    gn_layer *l = p->l;
    const tensor *x = p->x, *dy = p->dy;
    const int N = p->n, CB = p->cb, HW = p->hw, C = l->c, G = l->g, cpg = C / G, B = x->blk;
    const size_t blk = (size_t)HW * B;

    /* Per-lane shift k (as in forward) for the centred sums; mean - k is applied in double. */
    for (int n = 0; n < N; n++)
        for (int c = 0; c < CB * B; c++)
            p->coef[((size_t)n * CB + c / B) * 64 + 32 + c % B] = c < C ? gn_shift(p, n, c) : 0.0f;

#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int cb = 0; cb < CB; cb++) {
            size_t b = (size_t)n * CB + cb;
            gn_k_bstats(x->data + b * blk, dy->data + b * blk, HW, p->coef + b * 64 + 32, p->part + b * 32,
                        p->part + b * 32 + 16, B);
        }

    /* part[16 + lane] becomes B = sum dy*(x - mean) = sum dy*(x - k) - (mean - k)*sum dy. */
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double *part = p->part + ((size_t)n * CB + c / B) * 32;
            double dmk = p->mean[(size_t)n * G + c / cpg] - (double)gn_shift(p, n, c);
            part[16 + c % B] -= dmk * part[c % B];
        }

    /* dbeta_c = sum_n A_nc; dgamma_c = sum_n rstd_ng * B_nc (B centred on the group mean). */
    for (int c = 0; c < C; c++) {
        double db = 0, dg = 0;
        for (int n = 0; n < N; n++) {
            const double *part = p->part + ((size_t)n * CB + c / B) * 32;
            db += part[c % B];
            dg += part[16 + c % B] * p->rstd[(size_t)n * G + c / cpg];
        }
        if (accumulate) {
            l->dbeta.data[c] += (float)db;
            l->dgamma.data[c] += (float)dg;
        } else {
            l->dbeta.data[c] = (float)db;
            l->dgamma.data[c] = (float)dg;
        }
    }
    if (!p->dx) return OTE_OK;

    /* dx = rstd*gamma*dy - rstd*m1 - (x - mu)*rstd^2*m2 with m1 = mean_M(gamma*dy) and
     * m2 = mean_M(gamma*dy*xhat) = rstd * mean_M(gamma*dy*(x - mu)). */
    const double m = (double)cpg * HW;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            size_t ng = (size_t)n * G + g;
            double rs = p->rstd[ng], m1 = 0, m2 = 0;
            for (int c = g * cpg; c < (g + 1) * cpg; c++) {
                const double *part = p->part + ((size_t)n * CB + c / B) * 32;
                double ga = l->gamma.data[c];
                m1 += ga * part[c % B];
                m2 += ga * part[16 + c % B];
            }
            m1 /= m;
            m2 = m2 * rs / m;
            for (int c = g * cpg; c < (g + 1) * cpg; c++) {
                float *cf = p->coef + ((size_t)n * CB + c / B) * 64 + c % B;
                double q = -rs * rs * m2, dmk = p->mean[ng] - (double)cf[32];
                cf[0] = (float)(rs * (double)l->gamma.data[c]);
                cf[16] = (float)q;
                cf[48] = (float)(-rs * m1 - q * dmk); /* q*(x - mean) = q*(x - k) - q*(mean - k) */
            }
        }
    for (int n = 0; n < N; n++)
        for (int c = C; c < CB * B; c++) {
            float *cf = p->coef + ((size_t)n * CB + c / B) * 64 + c % B;
            cf[0] = cf[16] = cf[32] = cf[48] = 0.0f;
        }

#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int cb = 0; cb < CB; cb++) {
            size_t b = (size_t)n * CB + cb;
            gn_k_bapply(x->data + b * blk, dy->data + b * blk, p->dx->data + b * blk, HW, p->coef + b * 64, B);
        }
    return OTE_OK;
}
