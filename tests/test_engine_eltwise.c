/* test_engine_eltwise.c - ReLU6 (clip_v2) and ReLU layers (engine/eltwise.h): forward and
 * backward against a naive double reference, in place and out of place, with inputs that hit the
 * kinks exactly (x = 0 and x = 6, where torch's ReLU6 gradient is 0), central finite differences
 * away from the kinks, and blocked padding.
 *
 * Tolerances: clipping and masking are exact in f32, so forward and backward must match the naive
 * reference exactly (tolerance 0). Finite differences (h = 1e-3, only at points at least 2h from
 * a kink, where the function is linear) are exact up to double rounding: tolerance 1e-9.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/eltwise.h"
#include "engine/ote.h"
#include "tests/engine_check.h"
#include "tests/expect.h"

#define TOL_FD 1e-9
#define FD_SAMPLES 32

typedef struct worst {
    double fwd, bwd, fd;
} worst;

static double maxd(double a, double b) { return a > b ? a : b; }

static double act(eltwise_kind k, double x) {
    if (x < 0) return 0;
    if (k == ELTWISE_RELU6 && x > 6) return 6;
    return x;
}

/* torch: ReLU6 passes the gradient for 0 < x < 6 only; ReLU for x > 0. */
static double dact(eltwise_kind k, double x) { return (x > 0 && (k == ELTWISE_RELU || x < 6)) ? 1.0 : 0.0; }

/* Values with exact kinks: a quarter exactly 0, an eighth exactly 6, the rest in [-3, 9). */
static float *kink_values(rng *g, size_t n) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        double u = rng_uniform(g);
        v[i] = u < 0.25 ? 0.0f : u < 0.375 ? 6.0f : (float)(-3.0 + 12.0 * rng_uniform(g));
    }
    return v;
}

static void run_case(eng_ctx *e, rng *g, eltwise_kind kind, int N, int C, int H, int W, int in_place,
                     worst *wo) {
    char nm[96];
    snprintf(nm, sizeof nm, "%s (%d,%d,%d,%d) %s", kind == ELTWISE_RELU6 ? "relu6" : "relu", N, C, H, W,
             in_place ? "in place" : "out of place");
    expect_case(nm);
    arena A;
    arena_init(&A, "acts");
    eltwise_layer l;
    eltwise_cfg cfg = {kind};
    ASSERT(eltwise_layer_init(&l, e, &cfg, NULL, NULL) == OTE_OK);
    tensor x, y, dy, dx, yi;
    ASSERT(tensor_plan_act(e, &x, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &y, N, C, H, W, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dy, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &dx, N, C, H, W, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &yi, N, C, H, W, &A) == OTE_OK);
    tensor *yt = in_place ? &x : &y, *dxt = in_place ? &dy : &dx;
    eltwise_plan p, pinf;
    int s = eltwise_plan_init(&p, e, &l, &x, yt, &dy, dxt, 1);
    if (!EXPECT(s == OTE_OK, "%s: training plan (%s)", nm, s ? ote_errmsg() : "no ref: kernel")) return;
    s = eltwise_plan_init(&pinf, e, &l, &yi, &yi, NULL, NULL, 0);
    EXPECT(s == OTE_OK, "%s: inference plan (%s)", nm, s ? ote_errmsg() : "ok");
    ASSERT(arena_commit(&A) == OTE_OK);

    size_t n = (size_t)N * C * H * W;
    float *xf = kink_values(g, n), *dyf = ec_rand(g, n, -1, 1);
    tensor_from_nchw(&x, xf), tensor_from_nchw(&dy, dyf), tensor_from_nchw(&yi, xf);
    if (!in_place) ec_poison_pad(&y, 3.0f), ec_poison_pad(&dx, 3.0f);
    long np0 = e->n_primitives;
    ASSERT(eltwise_forward(&p, e) == OTE_OK);
    ASSERT(eltwise_backward(&p, e, 0) == OTE_OK);
    ASSERT(eltwise_forward(&pinf, e) == OTE_OK);
    EXPECT(e->n_primitives == np0, "%s: forward/backward create no primitive", nm);

    double *yref = malloc(sizeof(double) * n), *dxref = malloc(sizeof(double) * n);
    size_t at0 = 0, at6 = 0;
    for (size_t i = 0; i < n; i++) {
        yref[i] = act(kind, xf[i]);
        dxref[i] = dact(kind, xf[i]) * (double)dyf[i];
        at0 += xf[i] == 0.0f, at6 += xf[i] == 6.0f;
    }
    double *yd = ec_tensor_d(yt), *dxd = ec_tensor_d(dxt);
    double e_y = ec_rel(yd, yref, n, 1e-30), e_dx = ec_rel(dxd, dxref, n, 1e-30);
    EXPECT_ERR(e_y, 0.0, "%s: forward vs naive", nm);
    EXPECT_ERR(ec_rel_tensor(&yi, yref), 0.0, "%s: inference forward vs naive", nm);
    EXPECT_ERR(e_dx, 0.0, "%s: backward vs naive", nm);
    int kinks_zero = 1;
    for (size_t i = 0; i < n; i++)
        if (xf[i] == 0.0f || (kind == ELTWISE_RELU6 && xf[i] == 6.0f)) kinks_zero &= dxd[i] == 0.0;
    EXPECT(kinks_zero && at0 > 0 && (kind == ELTWISE_RELU || at6 > 0),
             "%s: gradient is exactly 0 at x = 0 (%zu hits)%s (%zu hits)", nm, at0,
             kind == ELTWISE_RELU6 ? " and at x = 6" : ", x = 6 not a kink", at6);
    if (kind == ELTWISE_RELU) {
        /* ReLU has no upper kink: x = 6 passes the gradient. */
        int pass6 = 1;
        for (size_t i = 0; i < n; i++)
            if (xf[i] == 6.0f) pass6 &= dxd[i] == (double)dyf[i];
        EXPECT(pass6 && at6 > 0, "%s: gradient passes at x = 6 (%zu hits)", nm, at6);
    }
    if (!in_place) {
        double *xd = ec_tensor_d(&x), *dyd = ec_tensor_d(&dy), *xo = ec_f2d(xf, n), *dyo = ec_f2d(dyf, n);
        EXPECT(ec_rel(xd, xo, n, 1) == 0 && ec_rel(dyd, dyo, n, 1) == 0,
                 "%s: x and dy are untouched by the out-of-place variant", nm);
        free(xd), free(dyd), free(xo), free(dyo);
    }

    /* Finite differences of the naive forward at points away from the kinks. */
    const double h = 1e-3;
    double fd[FD_SAMPLES], gv[FD_SAMPLES];
    int k = 0;
    for (size_t i = 0; i < n && k < FD_SAMPLES; i += 1 + rng_below(g, 7)) {
        double v = xf[i];
        if (fabs(v) < 2 * h || fabs(v - 6) < 2 * h) continue;
        fd[k] = (act(kind, v + h) - act(kind, v - h)) / (2 * h) * (double)dyf[i];
        gv[k++] = dxd[i];
    }
    double e_fd = ec_rel(gv, fd, (size_t)k, 1e-30);
    EXPECT_ERR(e_fd, TOL_FD, "%s: backward vs finite differences (%d points)", nm, k);
    EXPECT(ec_pad_zero(yt) && ec_pad_zero(&yi), "%s: y channel padding is zero after forward", nm);
    EXPECT(ec_pad_zero(dxt), "%s: dx channel padding is zero after backward", nm);

    wo->fwd = maxd(wo->fwd, e_y), wo->bwd = maxd(wo->bwd, e_dx), wo->fd = maxd(wo->fd, e_fd);
    free(xf), free(dyf), free(yref), free(dxref), free(yd), free(dxd);
    eltwise_plan_free(&p), eltwise_plan_free(&pinf), eltwise_layer_free(&l);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx), tensor_free(&yi);
    arena_free(&A);
}

int main(void) {
    eng_ctx e;
    if (eng_init(&e, 0) != OTE_OK) {
        fprintf(stderr, "eng_init: %s\n", ote_errmsg());
        return 1;
    }
    rng g;
    rng_seed(&g, 4242);
    worst w6 = {0}, w1 = {0};
    run_case(&e, &g, ELTWISE_RELU6, 2, 35, 7, 9, 1, &w6);
    run_case(&e, &g, ELTWISE_RELU6, 3, 5, 13, 11, 0, &w6);
    run_case(&e, &g, ELTWISE_RELU6, 2, 24, 7, 9, 0, &w6);
    run_case(&e, &g, ELTWISE_RELU6, 2, 64, 5, 7, 1, &w6);
    run_case(&e, &g, ELTWISE_RELU, 2, 24, 13, 11, 1, &w1);
    run_case(&e, &g, ELTWISE_RELU, 3, 5, 7, 9, 0, &w1);
    run_case(&e, &g, ELTWISE_RELU, 2, 35, 7, 9, 0, &w1);

    expect_case("unknown kind");
    eltwise_layer bad;
    eltwise_cfg bc = {(eltwise_kind)9};
    EXPECT(eltwise_layer_init(&bad, &e, &bc, NULL, NULL) == OTE_EINVAL, "eltwise: unknown kind is refused");
    printf("relu6: largest error vs naive: fwd %.2e bwd %.2e; vs finite differences: %.2e\n", w6.fwd, w6.bwd, w6.fd);
    printf("relu:  largest error vs naive: fwd %.2e bwd %.2e; vs finite differences: %.2e\n", w1.fwd, w1.bwd, w1.fd);
    eng_free(&e);
    return expect_finish();
}
