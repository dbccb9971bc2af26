/* engine_check.h - header-only numeric helpers for the conv / BN / eltwise layer tests: random
 * activations, NCHW <-> double conversion, error measures, the padding-is-zero check and index
 * sampling for finite differences. Checks are reported through tests/expect.h.
 *
 * Owns nothing; every buffer it returns is malloc'd for the caller. No globals.
 */
#ifndef OTE_TEST_ENGINE_CHECK_H
#define OTE_TEST_ENGINE_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rng.h"
#include "engine/tensor.h"

/* n uniform values in [lo, hi) as floats (caller frees). */
static inline float *ec_rand(rng *g, size_t n, double lo, double hi) {
    float *v = malloc(n * sizeof *v + 4);
    for (size_t i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * rng_uniform(g));
    return v;
}

static inline double *ec_f2d(const float *f, size_t n) {
    double *d = malloc(n * sizeof *d + 8);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

/* Logical NCHW contents of a tensor as doubles (caller frees). */
static inline double *ec_tensor_d(const tensor *t) {
    size_t n = tensor_numel(t);
    float *f = malloc(n * sizeof *f + 4);
    tensor_to_nchw(t, f);
    double *d = ec_f2d(f, n);
    free(f);
    return d;
}

/* max |a - b| / max(max |ref|, floor): relative to the reference's scale, NaN -> inf. */
static inline double ec_rel(const double *a, const double *ref, size_t n, double floor_) {
    double num = 0, den = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - ref[i]);
        if (d != d) return INFINITY;
        if (d > num) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return num / den;
}

static inline double ec_rel_tensor(const tensor *t, const double *ref) {
    double *d = ec_tensor_d(t);
    double e = ec_rel(d, ref, tensor_numel(t), 1e-30);
    free(d);
    return e;
}

/* 1 if every padded channel lane (c >= C in the last block) of a blocked tensor is zero. */
static inline int ec_pad_zero(const tensor *t) {
    if (t->layout != TL_BLOCKED) return 1;
    int cb = tensor_cblocks(t);
    for (int n = 0; n < t->n; n++)
        for (int c = t->c; c < cb * t->blk; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++)
                    if (t->data[blk_off(t->c, t->h, t->w, t->blk, n, c, h, w)] != 0.0f) return 0;
    return 1;
}

/* Sets the padded lanes to v (to prove a kernel does not read them as data). */
static inline void ec_poison_pad(tensor *t, float v) {
    int cb = tensor_cblocks(t);
    for (int n = 0; n < t->n; n++)
        for (int c = t->c; c < cb * t->blk; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++) t->data[blk_off(t->c, t->h, t->w, t->blk, n, c, h, w)] = v;
}

/* k sample indices in [0, n): all of them if n <= k, else k random ones (repeats allowed). */
static inline int ec_samples(rng *g, size_t n, int k, size_t *idx) {
    if (n <= (size_t)k) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        return (int)n;
    }
    for (int i = 0; i < k; i++) idx[i] = (size_t)rng_below(g, n);
    return k;
}

/* Number of non-zero floats in a buffer (physical vs logical counts reveal dirty padding). */
static inline size_t ec_nonzero(const float *v, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += v[i] != 0.0f;
    return c;
}

#endif
