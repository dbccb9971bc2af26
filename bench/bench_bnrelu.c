/* bench_bnrelu.c - the fused BN(+ReLU6) layer (engine/bnr.h) against the oneDNN pair it can
 * replace (bn_plan + eltwise_plan ReLU6, in place exactly as models/backbone.c's conv+BN blocks use
 * them: y = BN(x) then ReLU6 in place on y; backward ReLU6 then BN in place over the gradient).
 *
 * Shapes are the detector's BN+ReLU6 activations at 320x320, batch 8 (and batch 1): MobileNetV2
 * stem (32 @ 160x160), expansions (96 @ 160x160, 144 @ 80x80, 192 @ 40x40, 384 @ 20x20,
 * 960 @ 10x10), a projection without ReLU6 (24 @ 80x80, 64 @ 20x20). Both implementations run on
 * the same tensors and the same bn_layer, interleaved run by run with alternating order (so machine
 * load and cache state hit both alike);
 * the gradient is restored from a copy (untimed) before every backward, since both run in place.
 * Cache state (untimed set-up before each timed call), mode "cold" (default) imitates a training
 * step whose activations exceed the caches: the incoming tensor was just written by its producer
 * (x before the forward, the gradient before the backward: restored by memcpy, so hot), the rest was
 * last touched long ago (y before the forward, x and y before the backward: flushed with clflush).
 * Mode "hot" skips the flushes (everything stays in L2/L3 between runs; then each implementation
 * also finds the cache state the other one left, e.g. oneDNN's streaming stores).
 * Prints the median over `reps` runs (default 25) of forward and backward in ms and which is faster.
 * Never run by ctest.   Usage: bench_bnrelu [reps] [threads] [cold|hot] [shape index]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <emmintrin.h>

#include "engine/bn.h"
#include "engine/bnr.h"
#include "engine/eng.h"
#include "engine/eltwise.h"
#include "engine/rng.h"
#include "tests/expect.h"
#include "engine/ote.h"


static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct shape {
    int n, c, h, w, relu6;
} shape;

/* Evicts a tensor from every cache level (64-byte lines). */
static void flush(const tensor *t) {
    const char *b = (const char *)t->data;
    for (size_t o = 0; o < t->bytes; o += 64) _mm_clflush(b + o);
    _mm_mfence();
}

static void bench_shape(eng_ctx *e, rng *rg, shape s, int reps, int cold) {
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(s.c);
    REQUIRE_OK(bn_layer_init(&l, e, &cfg, &P, &G));
    eltwise_layer el;
    eltwise_cfg ecfg = {ELTWISE_RELU6};
    REQUIRE_OK(eltwise_layer_init(&el, e, &ecfg, NULL, NULL));
    tensor x, y, g;
    REQUIRE_OK(tensor_plan_act(e, &x, s.n, s.c, s.h, s.w, &A));
    REQUIRE_OK(tensor_plan_act(e, &y, s.n, s.c, s.h, s.w, &A));
    REQUIRE_OK(tensor_plan_act(e, &g, s.n, s.c, s.h, s.w, &A));
    bn_plan bp;
    eltwise_plan ep;
    bnr_plan fp;
    REQUIRE_OK(bn_plan_init(&bp, e, &l, &x, &y, &g, &g, 1));
    if (s.relu6) REQUIRE_OK(eltwise_plan_init(&ep, e, &el, &y, &y, &g, &g, 1));
    REQUIRE_OK(bnr_plan_init(&fp, e, &l, &x, &y, &g, &g, s.relu6));
    REQUIRE_OK(arena_commit(&P));
    REQUIRE_OK(arena_commit(&G));
    REQUIRE_OK(arena_commit(&A));
    for (int c = 0; c < s.c; c++) {
        l.gamma.data[c] = (float)(0.5 + rng_uniform(rg));
        l.beta.data[c] = (float)(2.0 * rng_uniform(rg));
        l.run_mean.data[c] = 0, l.run_var.data[c] = 1;
    }
    size_t nf = g.bytes / sizeof(float);
    float *gsave = malloc(g.bytes), *xsave = malloc(x.bytes);
    if (!gsave || !xsave) {
        fprintf(stderr, "bench_bnrelu: out of memory\n");
        exit(1);
    }
    /* Whole buffers including padding lanes (the kernels must cope; padding is zeroed below). */
    for (size_t i = 0; i < nf; i++) x.data[i] = (float)(0.3 + rng_normal(rg)), gsave[i] = (float)rng_normal(rg);
    int cb = (s.c + 15) / 16;
    for (int n = 0; n < s.n; n++)
        for (int c = s.c; c < cb * 16; c++)
            for (int i = 0; i < s.h * s.w; i++) {
                size_t o = (((size_t)n * cb + (size_t)(c / 16)) * s.h * s.w + (size_t)i) * 16 + (size_t)(c % 16);
                x.data[o] = gsave[o] = 0;
            }
    memcpy(xsave, x.data, x.bytes);
    double *t[4];
    for (int k = 0; k < 4; k++) t[k] = malloc(sizeof(double) * (size_t)reps);
    for (int r = -2; r < reps; r++) { /* two warm-up runs */
        /* alternate which implementation runs first, so neither always finds the other's cache state */
        double tt[4];
        for (int k = 0; k < 2; k++) {
            int fused = (k + r) & 1;
            memcpy(x.data, xsave, x.bytes);
            if (cold) flush(&y);
            double t0 = now_ms();
            if (fused) {
                REQUIRE_OK(bnr_forward(&fp, e));
            } else {
                REQUIRE_OK(bn_forward(&bp, e));
                if (s.relu6) REQUIRE_OK(eltwise_forward(&ep, e));
            }
            double t1 = now_ms();
            memcpy(g.data, gsave, g.bytes);
            if (cold) flush(&x), flush(&y);
            double t2 = now_ms();
            if (fused) {
                REQUIRE_OK(bnr_backward(&fp, e, 0));
            } else {
                if (s.relu6) REQUIRE_OK(eltwise_backward(&ep, e, 0));
                REQUIRE_OK(bn_backward(&bp, e, 0));
            }
            double t3 = now_ms();
            tt[2 * fused] = t1 - t0, tt[2 * fused + 1] = t3 - t2;
        }
        if (r >= 0)
            for (int k = 0; k < 4; k++) t[k][r] = tt[k];
    }
    double of = median(t[0], reps), ob = median(t[1], reps), ff = median(t[2], reps), fb = median(t[3], reps);
    char nm[48];
    snprintf(nm, sizeof nm, "%dx%dx%dx%d%s", s.n, s.c, s.h, s.w, s.relu6 ? " relu6" : "");
    printf("%-22s fwd %8.3f %8.3f %5.2fx %-7s  bwd %8.3f %8.3f %5.2fx %-7s  fwd+bwd %5.2fx\n", nm, of, ff, of / ff,
           ff < of ? "bnr" : "oneDNN", ob, fb, ob / fb, fb < ob ? "bnr" : "oneDNN", (of + ob) / (ff + fb));
    fflush(stdout);
    for (int k = 0; k < 4; k++) free(t[k]);
    free(gsave), free(xsave);
    bnr_plan_free(&fp);
    bn_plan_free(&bp);
    if (s.relu6) eltwise_plan_free(&ep);
    eltwise_layer_free(&el);
    tensor_free(&x), tensor_free(&y), tensor_free(&g);
    bn_layer_free(&l);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 25;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int cold = !(argc > 3 && strcmp(argv[3], "hot") == 0);
    if (reps < 1) reps = 1;
    eng_ctx e;
    REQUIRE_OK(eng_init(&e, threads));
    rng rg;
    rng_seed(&rg, 7);
    printf("bench_bnrelu: %d threads, ISA %s, median of %d runs, %s caches, ms (oneDNN bn+eltwise vs bnr)\n",
           e.nthreads, eng_isa_name(), reps, cold ? "cold" : "hot");
    printf("%-22s fwd %8s %8s %6s %-7s  bwd %8s %8s %6s %-7s\n", "NxCxHxW", "oneDNN", "bnr", "ratio", "faster",
           "oneDNN", "bnr", "ratio", "faster");
    static const shape shapes[] = {
        {8, 32, 160, 160, 1}, {8, 96, 160, 160, 1}, {8, 144, 80, 80, 1}, {8, 24, 80, 80, 0},
        {8, 192, 40, 40, 1},  {8, 384, 20, 20, 1},  {8, 64, 20, 20, 0},  {8, 960, 10, 10, 1},
        {1, 32, 160, 160, 1}, {1, 96, 160, 160, 1}, {1, 144, 80, 80, 1}, {1, 24, 80, 80, 0},
        {1, 192, 40, 40, 1},  {1, 384, 20, 20, 1},  {1, 64, 20, 20, 0},  {1, 960, 10, 10, 1},
    };
    int only = argc > 4 ? atoi(argv[4]) : -1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (only < 0 || (size_t)only == i) bench_shape(&e, &rg, shapes[i], reps, cold);
    eng_free(&e);
    return 0;
}
