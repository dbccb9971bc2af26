/* scale.c - learnable scalar Scale: OpenMP loops over the channel blocks of blocked tensors (see scale.h). */
#include "engine/scale.h"

#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

#if defined(__x86_64__) && !defined(__clang__)
#define SCALE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SCALE_CLONES
#endif

#define SCALE_CHUNK 32 /* pixels summed in float before adding into double */

int scale_layer_init(scale_layer *l, eng_ctx *e, arena *params, arena *grads) {
    memset(l, 0, sizeof *l);
    CHECK(tensor_plan_plain(e, &l->s, TL_X, 1, 1, 1, 1, params));
    CHECK(tensor_plan_plain(e, &l->ds, TL_X, 1, 1, 1, 1, grads));
    return OTE_OK;
}

void scale_layer_reset_params(scale_layer *l, float v) {
    ASSERT(l->s.data);
    l->s.data[0] = v;
}

void scale_layer_free(scale_layer *l) {
    tensor_free(&l->s);
    tensor_free(&l->ds);
}

static int scale_same(const tensor *a, const tensor *b) {
    return a->layout == TL_BLOCKED && b->layout == TL_BLOCKED && a->blk == b->blk && a->n == b->n && a->c == b->c && a->h == b->h &&
           a->w == b->w;
}

int scale_plan_init(scale_plan *p, eng_ctx *e, scale_layer *l, const tensor *x, tensor *y, const tensor *dy,
                    tensor *dx, int training) {
    (void)e;
    memset(p, 0, sizeof *p);
    if (!scale_same(x, y))
        return ote_err(OTE_EINVAL, "scale: src (%d,%d,%d,%d) and dst (%d,%d,%d,%d) must be equal blocked shapes",
                       x->n, x->c, x->h, x->w, y->n, y->c, y->h, y->w);
    if (training) {
        ASSERT(y != x && "Scale training forward must not run in place: ds needs x");
        ASSERT(dy && scale_same(dy, x));
        if (dx) ASSERT(scale_same(dx, x));
    }
    p->l = l, p->x = x, p->y = y;
    p->dy = training ? dy : NULL;
    p->dx = training ? dx : NULL;
    size_t nb = (size_t)x->n * tensor_cblocks(x);
    p->part = calloc(nb, sizeof *p->part);
    if (!p->part) return ote_err(OTE_ENOMEM, "scale: %zu partial sums", nb);
    return OTE_OK;
}

void scale_plan_free(scale_plan *p) {
    free(p->part);
    memset(p, 0, sizeof *p);
}

SCALE_CLONES static void scale_k_mul(float *d, const float *s, size_t n, float a) {
    /* omp simd: d may alias s exactly (in place), which carries no dependence between elements. */
#pragma omp simd
    for (size_t i = 0; i < n; i++) d[i] = a * s[i];
}

/* sum a*b over hw pixels x B lanes; inlined into a wrapper with a literal B (8 or 16). */
static inline __attribute__((always_inline)) double scale_dot_body(const float *restrict a, const float *restrict b,
                                                                   int hw, const int B) {
    double acc[16] = {0};
    for (int i0 = 0; i0 < hw; i0 += SCALE_CHUNK) {
        int i1 = i0 + SCALE_CHUNK < hw ? i0 + SCALE_CHUNK : hw;
        float f[16] = {0};
        for (int i = i0; i < i1; i++)
            for (int c = 0; c < B; c++) f[c] += a[(size_t)i * B + c] * b[(size_t)i * B + c];
        for (int c = 0; c < B; c++) acc[c] += (double)f[c];
    }
    double s = 0;
    for (int c = 0; c < B; c++) s += acc[c];
    return s;
}
SCALE_CLONES static double scale_k_dot(const float *restrict a, const float *restrict b, int hw, int B) {
    return B == 16 ? scale_dot_body(a, b, hw, 16) : scale_dot_body(a, b, hw, 8);
}

/* d = a * s over whole (n, block) slabs; d may alias s. */
static void scale_apply(float *d, const float *s, int nb, size_t blk, float a) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) scale_k_mul(d + (size_t)b * blk, s + (size_t)b * blk, blk, a);
}

int scale_forward(scale_plan *p, eng_ctx *e) {
    (void)e;
    const tensor *x = p->x;
    int nb = x->n * tensor_cblocks(x);
    scale_apply(p->y->data, x->data, nb, (size_t)x->h * x->w * x->blk, p->l->s.data[0]);
    return OTE_OK;
}

int scale_backward(scale_plan *p, eng_ctx *e, int accumulate) {
    (void)e;
    ASSERT(p->dy);
    const tensor *x = p->x;
    const int nb = x->n * tensor_cblocks(x), hw = x->h * x->w;
    const size_t blk = (size_t)hw * x->blk;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) p->part[b] = scale_k_dot(p->dy->data + (size_t)b * blk, x->data + (size_t)b * blk, hw, x->blk);
    double ds = 0;
    for (int b = 0; b < nb; b++) ds += p->part[b];
    if (accumulate)
        p->l->ds.data[0] += (float)ds;
    else
        p->l->ds.data[0] = (float)ds;
    if (p->dx) scale_apply(p->dx->data, p->dy->data, nb, blk, p->l->s.data[0]);
    return OTE_OK;
}
