/* act_check.h - small header-only numeric helpers for the engine layer tests: random blocked
 * activations (padding kept zero), conversion to plain NCHW doubles for the naive references, error
 * measures and the padding-is-zero check. Checks are reported through tests/expect.h.
 *
 * Owns nothing; every function works on caller buffers.
 */
#ifndef OTE_TEST_ACT_CHECK_H
#define OTE_TEST_ACT_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/rng.h"
#include "engine/tensor.h"

/* Fills the logical elements of an blocked (or plain) tensor with offset + scale*N(0,1); padding 0. */
static inline void ac_fill(rng *g, tensor *t, double scale, double offset) {
    size_t n = tensor_numel(t);
    float *tmp = malloc(n * sizeof *tmp + 1);
    for (size_t i = 0; i < n; i++) tmp[i] = (float)(offset + scale * rng_normal(g));
    tensor_from_nchw(t, tmp);
    free(tmp);
}

/* Logical NCHW contents as doubles (caller frees). */
static inline double *ac_to_d(const tensor *t) {
    size_t n = tensor_numel(t);
    float *tmp = malloc(n * sizeof *tmp + 1);
    double *d = malloc(n * sizeof *d + 1);
    tensor_to_nchw(t, tmp);
    for (size_t i = 0; i < n; i++) d[i] = tmp[i];
    free(tmp);
    return d;
}

/* max |a - b| / max(max |b|, floor) */
static inline double ac_rel(const double *a, const double *b, size_t n, double floor_) {
    double num = 0, den = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d != d) return INFINITY;
        if (d > num) num = d;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / den;
}

/* Relative error of a tensor's logical contents against a double reference (NCHW order). */
static inline double ac_tensor_rel(const tensor *t, const double *ref) {
    double *d = ac_to_d(t);
    double e = ac_rel(d, ref, tensor_numel(t), 1e-30);
    free(d);
    return e;
}

/* 1 if every padded channel lane of an blocked tensor is exactly zero. */
static inline int ac_pad_zero(const tensor *t) {
    if (t->layout != TL_BLOCKED) return 1;
    int B = t->blk, cb = (t->c + B - 1) / B;
    for (int n = 0; n < t->n; n++)
        for (int c = t->c; c < cb * B; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++) {
                    size_t o = ((((size_t)n * cb + (size_t)(c / B)) * t->h + h) * t->w + w) * B + (size_t)(c % B);
                    if (t->data[o] != 0.0f) return 0;
                }
    return 1;
}

/* Fills the padded lanes with a value (to prove a kernel ignores or rewrites them). */
static inline void ac_poison_pad(tensor *t, float v) {
    int B = t->blk, cb = (t->c + B - 1) / B;
    for (int n = 0; n < t->n; n++)
        for (int c = t->c; c < cb * B; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++)
                    t->data[((((size_t)n * cb + (size_t)(c / B)) * t->h + h) * t->w + w) * B + (size_t)(c % B)] = v;
}

#endif
