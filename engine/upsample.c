/* upsample.c - nearest 2x upsample forward / forward-add / backward as OpenMP loops on blocked (nChw8c / nChw16c) tensors.
 *
 * Work items are (n, channel block, source row): each reads one source row of W pixels x B lanes
 * and touches the two destination rows it maps to, so items never write the same memory.
 */
#include "engine/upsample.h"

#include <string.h>

#include "engine/ote.h"

#if defined(__x86_64__) && !defined(__clang__)
#define UP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define UP_CLONES
#endif

int upsample_plan_init(upsample_plan *p, eng_ctx *e, const tensor *x, tensor *y, const tensor *dy, tensor *dx,
                       int training) {
    (void)e;
    memset(p, 0, sizeof *p);
    if (x->layout != TL_BLOCKED || y->layout != TL_BLOCKED || y->blk != x->blk || y->n != x->n || y->c != x->c || y->h != 2 * x->h ||
        y->w != 2 * x->w)
        return ote_err(OTE_EINVAL, "upsample: only exact nearest 2x on blocked tensors: src (%d,%d,%d,%d) dst (%d,%d,%d,%d)",
                       x->n, x->c, x->h, x->w, y->n, y->c, y->h, y->w);
    if (training) {
        ASSERT(dy && dy->layout == TL_BLOCKED && dy->blk == x->blk && dy->n == y->n && dy->c == y->c && dy->h == y->h && dy->w == y->w);
        if (dx) ASSERT(dx->layout == TL_BLOCKED && dx->blk == x->blk && dx->n == x->n && dx->c == x->c && dx->h == x->h && dx->w == x->w);
        ASSERT(!dx || dx->data != dy->data || dx->data == NULL);
    }
    p->x = x, p->y = y;
    p->dy = training ? dy : NULL;
    p->dx = training ? dx : NULL;
    return OTE_OK;
}

void upsample_plan_free(upsample_plan *p) { memset(p, 0, sizeof *p); }

/* One source row: s is W x B, d0/d1 are the two destination rows (2W x B). Bodies are inlined into
 * wrappers with a literal B (8 or 16) so the lane loops have constant trip counts. */
#define UP_INLINE static inline __attribute__((always_inline))
UP_INLINE void up_row_body(const float *restrict s, float *restrict d0, float *restrict d1, int w, int add,
                           const int B) {
    if (add) {
        for (int i = 0; i < w; i++)
#pragma omp simd
            for (int c = 0; c < B; c++) {
                float v = s[i * B + c];
                d0[2 * i * B + c] += v, d0[(2 * i + 1) * B + c] += v;
                d1[2 * i * B + c] += v, d1[(2 * i + 1) * B + c] += v;
            }
    } else {
        for (int i = 0; i < w; i++)
#pragma omp simd
            for (int c = 0; c < B; c++) {
                float v = s[i * B + c];
                d0[2 * i * B + c] = v, d0[(2 * i + 1) * B + c] = v;
                d1[2 * i * B + c] = v, d1[(2 * i + 1) * B + c] = v;
            }
    }
}
UP_CLONES static void up_k_row(const float *restrict s, float *restrict d0, float *restrict d1, int w, int add,
                               int B) {
    if (B == 16) up_row_body(s, d0, d1, w, add, 16);
    else up_row_body(s, d0, d1, w, add, 8);
}

/* One source row of dx from two rows of dy. */
UP_INLINE void up_brow_body(const float *restrict g0, const float *restrict g1, float *restrict d, int w, int acc,
                            const int B) {
    if (acc) {
        for (int i = 0; i < w; i++)
#pragma omp simd
            for (int c = 0; c < B; c++)
                d[i * B + c] += (g0[2 * i * B + c] + g0[(2 * i + 1) * B + c]) + (g1[2 * i * B + c] + g1[(2 * i + 1) * B + c]);
    } else {
        for (int i = 0; i < w; i++)
#pragma omp simd
            for (int c = 0; c < B; c++)
                d[i * B + c] = (g0[2 * i * B + c] + g0[(2 * i + 1) * B + c]) + (g1[2 * i * B + c] + g1[(2 * i + 1) * B + c]);
    }
}
UP_CLONES static void up_k_brow(const float *restrict g0, const float *restrict g1, float *restrict d, int w,
                                int acc, int B) {
    if (B == 16) up_brow_body(g0, g1, d, w, acc, 16);
    else up_brow_body(g0, g1, d, w, acc, 8);
}

static void up_fwd(upsample_plan *p, int add) {
    const tensor *x = p->x;
    const int B = x->blk, rows = x->n * tensor_cblocks(x) * x->h, W = x->w;
    /* source row r = (n*CB + cb)*H + ih maps to destination rows 2r and 2r + 1 (same n, cb). */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *s = x->data + (size_t)r * W * B;
        float *d0 = p->y->data + (size_t)(2 * r) * (2 * W) * B;
        up_k_row(s, d0, d0 + (size_t)2 * W * B, W, add, B);
    }
}

int upsample_forward(upsample_plan *p, eng_ctx *e) {
    (void)e;
    up_fwd(p, 0);
    return OTE_OK;
}

int upsample_forward_add(upsample_plan *p, eng_ctx *e) {
    (void)e;
    up_fwd(p, 1);
    return OTE_OK;
}

int upsample_backward(upsample_plan *p, eng_ctx *e, int accumulate) {
    (void)e;
    ASSERT(p->dy);
    if (!p->dx) return OTE_OK;
    const tensor *dx = p->dx;
    const int B = dx->blk, rows = dx->n * tensor_cblocks(dx) * dx->h, W = dx->w;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *g0 = p->dy->data + (size_t)(2 * r) * (2 * W) * B;
        up_k_brow(g0, g0 + (size_t)2 * W * B, dx->data + (size_t)r * W * B, W, accumulate, B);
    }
    return OTE_OK;
}
