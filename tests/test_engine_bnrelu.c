/* test_engine_bnrelu.c - the fused BN(+ReLU6) layer (engine/bnr.h) against
 *   (1) a naive double-precision NCHW reference written here (two-pass mean/variance; the ReLU6
 *       mask taken from the layer's stored float y, 0 < y < 6, which is the layer's contract),
 *   (2) the oneDNN path on the same bn_layer (bn_plan + eltwise_plan ReLU6, in place as the
 *       detector uses them),
 * for C in {16, 24, 96, 144}, N = 1..8, H, W from 1 to 40, ReLU6 on and off. Also: running
 * statistics, accumulate mode, in-place dx == dy, padded lanes (poisoned x/dy/y/dx pads: y and dx
 * pads must come out 0, statistics must ignore them), the mask at y exactly 0 and exactly 6, the
 * recomputed mask bit-identical to the stored y, a badly conditioned input (mean 1000, std 0.01),
 * run-to-run determinism and no allocation in forward/backward after planning.
 *
 * Tolerances (relative to the largest |reference| of the checked quantity):
 *   vs naive double: y, running stats, dx, dgamma, dbeta, accumulated grads     1e-5
 *     (dx relative to max(max |dx_ref|, max |gamma*rstd*dy'|): dx is a difference of terms of the
 *     latter size, and for M = 2 it cancels to O(eps/var) of it, so float rounding of any
 *     implementation is relative to the terms; oneDNN's own dx is 5e-6 off in that case)
 *   vs oneDNN bn + eltwise: y, running stats, dx, dgamma, dbeta                  1e-5
 *     (dx/dgamma/dbeta directly when both ReLU6 masks agree; where a value lands a rounding apart on
 *     both sides of 0 or 6 the masks differ by design, so then each backward is checked against the
 *     naive reference with its own mask, and such flips must sit within 6e-5 of 0 or 6 and be
 *     at most 2 + 1e-5 of the elements)
 *   in-place backward vs out-of-place, repeated runs:                            0 (bitwise)
 *   recomputed mask vs stored y:                                                 0 mismatches
 *   mean 1000 / std 0.01: |mean - ref| <= 1e-4 * std_ref, |var - ref| <= 1e-4 * var_ref,
 *                         y (relative to max |y_ref|, which is O(1)):            1e-5
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/bn.h"
#include "engine/bnr.h"
#include "engine/eng.h"
#include "engine/eltwise.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "tests/act_check.h"
#include "tests/alloc_count.h"
#include "tests/expect.h"

#define TOL 1e-5
#define TOL_COND 1e-4


/* ---- naive double reference on plain NCHW ---- */

typedef struct ref_out {
    double *y, *mean, *var, *rm, *rv; /* y: NCHW; the rest (C) */
} ref_out;

/* Two-pass batch mean and biased variance of channel c (x: plain NCHW). */
static void ref_stats(int N, int C, int HW, const double *x, int c, double *mu, double *var) {
    double M = (double)N * HW, s = 0, ss = 0;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++) s += x[((size_t)n * C + c) * HW + i];
    *mu = s / M;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++) {
            double d = x[((size_t)n * C + c) * HW + i] - *mu;
            ss += d * d;
        }
    *var = ss / M;
}

static void ref_forward(int N, int C, int HW, const double *x, const float *g, const float *b, const float *rm0,
                        const float *rv0, int relu6, ref_out *r) {
    double M = (double)N * HW;
    for (int c = 0; c < C; c++) {
        double mu, var;
        ref_stats(N, C, HW, x, c, &mu, &var);
        double rs = 1.0 / sqrt(var + 1e-5);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                double v = (double)g[c] * (x[o] - mu) * rs + (double)b[c];
                if (relu6) v = v < 0 ? 0 : v > 6 ? 6 : v;
                r->y[o] = v;
            }
        r->mean[c] = mu, r->var[c] = var;
        /* torch.nn.BatchNorm2d: momentum 0.1, unbiased variance for the running variance */
        r->rm[c] = 0.1 * mu + 0.9 * (double)rm0[c];
        r->rv[c] = 0.1 * var * M / (M - 1) + 0.9 * (double)rv0[c];
    }
}

/* mask[o] = 1 where the gradient passes. */
/* Returns max |gamma*rstd*dy'|: the size of the terms whose difference is dx (the floor of the dx
 * error measure: for M = 2, dx is O(eps/var) times that, pure cancellation). */
static double ref_backward(int N, int C, int HW, const double *x, const float *g, const double *dy, const char *mask,
                           double *dx, double *dg, double *db) {
    double M = (double)N * HW, scale = 0;
    for (int c = 0; c < C; c++) {
        double mu, var;
        ref_stats(N, C, HW, x, c, &mu, &var);
        double rs = 1.0 / sqrt(var + 1e-5), sg = 0, sgx = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                double gm = mask[o] ? dy[o] : 0;
                sg += gm;
                sgx += gm * (x[o] - mu) * rs;
            }
        db[c] = sg, dg[c] = sgx;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                double gm = mask[o] ? dy[o] : 0;
                dx[o] = (double)g[c] * rs * (gm - sg / M - (x[o] - mu) * rs * sgx / M);
                if (fabs((double)g[c] * rs * gm) > scale) scale = fabs((double)g[c] * rs * gm);
            }
    }
    return scale;
}

/* max |a - b| / max(max |b|, floor): ac_rel (tests/act_check.h) on a float array */
static double rel_fl(const float *a, const double *b, int n, double floor_) {
    double *ad = malloc(sizeof(double) * (size_t)n + 1);
    for (int i = 0; i < n; i++) ad[i] = a[i];
    double r = ac_rel(ad, b, (size_t)n, floor_ > 1e-30 ? floor_ : 1e-30);
    free(ad);
    return r;
}

static double rel_f(const float *a, const double *b, int n) { return rel_fl(a, b, n, 0); }

static double rel_ff(const float *a, const float *b, int n) {
    double *bd = malloc(sizeof(double) * (size_t)n + 1);
    for (int i = 0; i < n; i++) bd[i] = b[i];
    double r = rel_f(a, bd, n);
    free(bd);
    return r;
}

static int same_bits(const tensor *a, const tensor *b) { return memcmp(a->data, b->data, a->bytes) == 0; }

/* x pattern for the exact-boundary case (channels 0 and 1): value 0.5 + p(i) where the first 8
 * values of sample 0 are 0 (so the shift k and the mean are exactly 0.5 and x - mean is exactly 0
 * there) and the rest cycle +1, -1, 0, 0 (sum 0, so the mean is exact). */
static float edge_x(int n, int i, int HW) {
    int flat = n * HW + i;
    if (flat < 8) return 0.5f;
    static const float cyc[4] = {1.0f, -1.0f, 0.0f, 0.0f};
    return 0.5f + cyc[(flat - 8) % 4];
}

typedef struct case_cfg {
    int n, c, h, w, relu6;
    int edge;          /* 1: channels 0/1 get the exact-boundary pattern, beta 6 / 0 */
    int path;          /* plan shape to assert: 0 any, 1 single-thread path, 2 several cache groups in
                        * the forward or the backward (4x40x56x56: forward, 2x48x64x64: backward) */
} case_cfg;

static void run_case(eng_ctx *e, rng *rg, case_cfg cc) {
    const int N = cc.n, C = cc.c, H = cc.h, W = cc.w, HW = H * W, relu6 = cc.relu6;
    const size_t nx = (size_t)N * C * HW;
    char nm[96];
    snprintf(nm, sizeof nm, "(%d,%d,%d,%d) relu6=%d%s", N, C, H, W, relu6, cc.edge ? " edge" : "");

    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(C);
    REQUIRE_OK(bn_layer_init(&l, e, &cfg, &P, &G));
    tensor x, y, dy, dx, y2, dy2, xo, yo, go;
    tensor *all[] = {&x, &y, &dy, &dx, &y2, &dy2, &xo, &yo, &go};
    for (int i = 0; i < 9; i++) REQUIRE_OK(tensor_plan_act(e, all[i], N, C, H, W, &A));
    bnr_plan p, pi;
    REQUIRE_OK(bnr_plan_init(&p, e, &l, &x, &y, &dy, &dx, relu6));
    REQUIRE_OK(bnr_plan_init(&pi, e, &l, &x, &y2, &dy2, &dy2, relu6));
    if (cc.path == 1) EXPECT(p.serial, "%s: plan takes the single-thread path", nm);
    if (cc.path == 2)
        EXPECT(!p.serial && (p.gcb_f < p.cb || p.gcb_b < p.cb) && p.splits > 1,
               "%s: a pass has several cache groups (blocks per group fwd %d, bwd %d of %d; %d chunks per plane)", nm,
               p.gcb_f, p.gcb_b, p.cb, p.splits);
    bn_plan bp;
    eltwise_layer el;
    eltwise_plan ep;
    eltwise_cfg ecfg = {ELTWISE_RELU6};
    REQUIRE_OK(eltwise_layer_init(&el, e, &ecfg, NULL, NULL));
    REQUIRE_OK(bn_plan_init(&bp, e, &l, &xo, &yo, &go, &go, 1));
    if (relu6) REQUIRE_OK(eltwise_plan_init(&ep, e, &el, &yo, &yo, &go, &go, 1));
    REQUIRE_OK(arena_commit(&P)); REQUIRE_OK(arena_commit(&G)); REQUIRE_OK(arena_commit(&A));

    /* inputs */
    float *xf = malloc(sizeof(float) * nx), *dyf = malloc(sizeof(float) * nx);
    float gf[160], bf[160], rm0[160], rv0[160];
    for (size_t i = 0; i < nx; i++) xf[i] = (float)(0.7 + 1.3 * rng_normal(rg));
    for (size_t i = 0; i < nx; i++) dyf[i] = (float)rng_normal(rg);
    for (int c = 0; c < C; c++) {
        gf[c] = (float)(1.0 + 2.0 * rng_uniform(rg)); /* wide outputs so clipping at 6 happens */
        bf[c] = (float)(-1.0 + 5.0 * rng_uniform(rg));
        rm0[c] = (float)(rng_uniform(rg) - 0.5);
        rv0[c] = (float)(0.5 + rng_uniform(rg));
    }
    if (cc.edge) {
        for (int c = 0; c < 2; c++)
            for (int n = 0; n < N; n++)
                for (int i = 0; i < HW; i++) xf[((size_t)n * C + c) * HW + i] = edge_x(n, i, HW);
        bf[0] = 6.0f, bf[1] = 0.0f;
    }
    memcpy(l.gamma.data, gf, sizeof(float) * C), memcpy(l.beta.data, bf, sizeof(float) * C);
    memcpy(l.run_mean.data, rm0, sizeof(float) * C), memcpy(l.run_var.data, rv0, sizeof(float) * C);
    tensor_from_nchw(&x, xf), tensor_from_nchw(&xo, xf);
    tensor_from_nchw(&dy, dyf), tensor_from_nchw(&go, dyf), tensor_from_nchw(&dy2, dyf);
    /* Padded lanes of the inputs poisoned: statistics must ignore them, outputs must zero them. */
    ac_poison_pad(&x, 5.0f), ac_poison_pad(&dy, 3.0f), ac_poison_pad(&dy2, 3.0f);
    ac_poison_pad(&y, 7.0f), ac_poison_pad(&dx, 7.0f), ac_poison_pad(&y2, 7.0f);

    double *xd = malloc(sizeof(double) * nx), *dyd = malloc(sizeof(double) * nx);
    for (size_t i = 0; i < nx; i++) xd[i] = xf[i], dyd[i] = dyf[i];
    ref_out r;
    r.y = malloc(sizeof(double) * nx);
    double mean[160], var[160], rm[160], rv[160];
    r.mean = mean, r.var = var, r.rm = rm, r.rv = rv;
    ref_forward(N, C, HW, xd, gf, bf, rm0, rv0, relu6, &r);

    /* ---- forward ---- */
    REQUIRE_OK(bnr_forward(&p, e));
    float *yf = malloc(sizeof(float) * nx), *tf = malloc(sizeof(float) * nx);
    tensor_to_nchw(&y, yf);
    double ey = rel_f(yf, r.y, (int)nx);
    EXPECT(ey <= TOL, "%s: y vs naive double: rel %.2e (tol %.0e)", nm, ey, TOL);
    double em = rel_f(l.run_mean.data, rm, C), ev = rel_f(l.run_var.data, rv, C);
    EXPECT(em <= TOL && ev <= TOL, "%s: running mean/var vs naive: rel %.2e / %.2e (tol %.0e)", nm, em, ev, TOL);
    EXPECT(ac_pad_zero(&y), "%s: padded lanes of y are zero (were poisoned)", nm);
    long mm = bnr_mask_mismatches(&p);
    EXPECT(mm == 0, "%s: recomputed pre-activation bit-identical to stored y: %ld mismatches", nm, mm);
    float rm_ours[160], rv_ours[160];
    memcpy(rm_ours, l.run_mean.data, sizeof(float) * C), memcpy(rv_ours, l.run_var.data, sizeof(float) * C);

    /* ---- backward: mask from the stored float y ---- */
    char *mask = malloc(nx), *mask_incl = malloc(nx);
    long n_edge0 = 0, n_edge6 = 0;
    for (size_t i = 0; i < nx; i++) {
        mask[i] = relu6 ? (yf[i] > 0.0f && yf[i] < 6.0f) : 1;
        mask_incl[i] = relu6 ? (yf[i] >= 0.0f && yf[i] <= 6.0f) : 1;
    }
    if (cc.edge) {
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o0 = ((size_t)n * C + 0) * HW + i, o1 = ((size_t)n * C + 1) * HW + i;
                if (xf[o0] == 0.5f && yf[o0] == 6.0f) n_edge6++;
                if (xf[o1] == 0.5f && yf[o1] == 0.0f) n_edge0++;
            }
        EXPECT(n_edge6 >= 8 && n_edge0 >= 8, "%s: pre-activation exactly 6 at %ld and exactly 0 at %ld elements", nm,
               n_edge6, n_edge0);
    }
    double *dxr = malloc(sizeof(double) * nx), dgr[160], dbr[160];
    double dx_scale = ref_backward(N, C, HW, xd, gf, dyd, mask, dxr, dgr, dbr);
    REQUIRE_OK(bnr_backward(&p, e, 0));
    float *dxf = malloc(sizeof(float) * nx);
    tensor_to_nchw(&dx, dxf);
    double edx = rel_fl(dxf, dxr, (int)nx, dx_scale);
    double edg = rel_f(l.dgamma.data, dgr, C), edb = rel_f(l.dbeta.data, dbr, C);
    EXPECT(edx <= TOL, "%s: dx vs naive: rel %.2e (tol %.0e)", nm, edx, TOL);
    EXPECT(edg <= TOL && edb <= TOL, "%s: dgamma / dbeta vs naive: rel %.2e / %.2e (tol %.0e)", nm, edg, edb, TOL);
    EXPECT(ac_pad_zero(&dx), "%s: padded lanes of dx are zero (were poisoned, dy pads poisoned too)", nm);
    if (cc.edge && relu6) {
        /* Passing the gradient at y == 0 or y == 6 (an inclusive mask) must be detectably wrong. */
        double *dxw = malloc(sizeof(double) * nx), dgw[160], dbw[160];
        ref_backward(N, C, HW, xd, gf, dyd, mask_incl, dxw, dgw, dbw);
        double ew = rel_f(dxf, dxw, (int)nx), ewb = rel_f(l.dbeta.data, dbw, C);
        EXPECT(ew > 100 * TOL && ewb > 100 * TOL,
               "%s: an inclusive mask (gradient at y == 0, 6) would differ: dx rel %.2e, dbeta rel %.2e", nm, ew, ewb);
        free(dxw);
    }
    float dg_ours[160], db_ours[160];
    memcpy(dg_ours, l.dgamma.data, sizeof(float) * C), memcpy(db_ours, l.dbeta.data, sizeof(float) * C);

    /* accumulate */
    double acc_g[160], acc_b[160];
    for (int c = 0; c < C; c++) {
        l.dgamma.data[c] = (float)(0.25 * c - 3), l.dbeta.data[c] = (float)(1.5 - 0.5 * c);
        acc_g[c] = (double)l.dgamma.data[c] + dgr[c], acc_b[c] = (double)l.dbeta.data[c] + dbr[c];
    }
    REQUIRE_OK(bnr_backward(&p, e, 1));
    double eag = rel_f(l.dgamma.data, acc_g, C), eab = rel_f(l.dbeta.data, acc_b, C);
    EXPECT(eag <= TOL && eab <= TOL, "%s: accumulate adds to dgamma / dbeta: rel %.2e / %.2e (tol %.0e)", nm, eag,
           eab, TOL);

    /* determinism and in place: same input, fresh running stats, in-place plan */
    memcpy(l.run_mean.data, rm0, sizeof(float) * C), memcpy(l.run_var.data, rv0, sizeof(float) * C);
    REQUIRE_OK(bnr_forward(&pi, e));
    REQUIRE_OK(bnr_backward(&pi, e, 0));
    EXPECT(same_bits(&y2, &y), "%s: repeated forward gives bitwise the same y", nm);
    EXPECT(same_bits(&dy2, &dx) && !memcmp(l.dgamma.data, dg_ours, sizeof(float) * C),
           "%s: in-place backward (dx == dy) bitwise equal to out-of-place, same dgamma", nm);

    /* ---- oneDNN bn + eltwise on the same layer ---- */
    memcpy(l.run_mean.data, rm0, sizeof(float) * C), memcpy(l.run_var.data, rv0, sizeof(float) * C);
    REQUIRE_OK(bn_forward(&bp, e));
    if (relu6) REQUIRE_OK(eltwise_forward(&ep, e));
    tensor_to_nchw(&yo, tf);
    double oy = rel_ff(yf, tf, (int)nx);
    double om = rel_ff(rm_ours, l.run_mean.data, C), ov = rel_ff(rv_ours, l.run_var.data, C);
    EXPECT(oy <= TOL, "%s: y vs oneDNN bn+relu6: rel %.2e (tol %.0e)", nm, oy, TOL);
    EXPECT(om <= TOL && ov <= TOL, "%s: running mean/var vs oneDNN: rel %.2e / %.2e (tol %.0e)", nm, om, ov, TOL);
    /* Where the two float outputs straddle 0 or 6 (a rounding apart), the ReLU6 masks differ and so
     * must dx there and the channel sums: such flips may only sit at the boundary (within the y
     * tolerance), and the backward is then compared through the naive reference evaluated with
     * each implementation's own mask; with no flips, also directly. */
    long flips = 0, far_flips = 0;
    char *mask_o = malloc(nx);
    for (size_t i = 0; i < nx; i++) {
        mask_o[i] = relu6 ? (tf[i] > 0.0f && tf[i] < 6.0f) : 1;
        if (mask_o[i] != mask[i]) {
            flips++;
            double d0 = fabs(yf[i]), d6 = fabs((double)yf[i] - 6.0);
            if ((d0 < d6 ? d0 : d6) > TOL * 6.0) far_flips++;
        }
    }
    EXPECT(far_flips == 0 && flips <= 2 + (long)nx / 100000,
           "%s: ReLU6 mask differs from oneDNN's at %ld of %zu elements, all at y = 0 or 6 within 6e-5", nm, flips,
           nx);
    double *dxo_ref = malloc(sizeof(double) * nx), dgo[160], dbo[160];
    double dxo_scale = ref_backward(N, C, HW, xd, gf, dyd, mask_o, dxo_ref, dgo, dbo);
    if (relu6) REQUIRE_OK(eltwise_backward(&ep, e, 0));
    REQUIRE_OK(bn_backward(&bp, e, 0));
    tensor_to_nchw(&go, tf);
    double edxo = rel_fl(tf, dxo_ref, (int)nx, dxo_scale);
    double edgo = rel_f(l.dgamma.data, dgo, C), edbo = rel_f(l.dbeta.data, dbo, C);
    EXPECT(edxo <= TOL && edgo <= TOL && edbo <= TOL,
           "%s: oneDNN's dx / dgamma / dbeta vs naive with its own mask: rel %.2e / %.2e / %.2e (tol %.0e)", nm,
           edxo, edgo, edbo, TOL);
    if (flips == 0) {
        double *tdx = malloc(sizeof(double) * nx);
        for (size_t i = 0; i < nx; i++) tdx[i] = tf[i];
        double odx = rel_fl(dxf, tdx, (int)nx, dx_scale);
        free(tdx);
        double odg = rel_ff(dg_ours, l.dgamma.data, C), odb = rel_ff(db_ours, l.dbeta.data, C);
        EXPECT(odx <= TOL, "%s: dx vs oneDNN: rel %.2e (tol %.0e)", nm, odx, TOL);
        EXPECT(odg <= TOL && odb <= TOL, "%s: dgamma / dbeta vs oneDNN: rel %.2e / %.2e (tol %.0e)", nm, odg, odb,
               TOL);
    }
    free(mask_o), free(dxo_ref);

    free(xf), free(dyf), free(xd), free(dyd), free(r.y), free(yf), free(tf), free(mask), free(mask_incl);
    free(dxr), free(dxf);
    bnr_plan_free(&p), bnr_plan_free(&pi), bn_plan_free(&bp);
    if (relu6) eltwise_plan_free(&ep);
    eltwise_layer_free(&el);
    for (int i = 0; i < 9; i++) tensor_free(all[i]);
    bn_layer_free(&l);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* mean 1000, std 0.01: E[x^2] - E[x]^2 in float would lose every digit. */
static void run_ill_conditioned(eng_ctx *e, rng *rg) {
    const int N = 4, C = 24, H = 10, W = 9, HW = H * W;
    const size_t nx = (size_t)N * C * HW;
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(C);
    REQUIRE_OK(bn_layer_init(&l, e, &cfg, &P, &G));
    tensor x, y, dy;
    REQUIRE_OK(tensor_plan_act(e, &x, N, C, H, W, &A)); REQUIRE_OK(tensor_plan_act(e, &y, N, C, H, W, &A));
    REQUIRE_OK(tensor_plan_act(e, &dy, N, C, H, W, &A));
    bnr_plan p;
    REQUIRE_OK(bnr_plan_init(&p, e, &l, &x, &y, &dy, &dy, 0));
    REQUIRE_OK(arena_commit(&P)); REQUIRE_OK(arena_commit(&G)); REQUIRE_OK(arena_commit(&A));
    bn_reset_params(&l);
    float *xf = malloc(sizeof(float) * nx);
    /* the first pixel of sample 0 is an outlier of 8 std in every channel (a bad shift value) */
    for (size_t i = 0; i < nx; i++) xf[i] = (float)(1000.0 + 0.01 * rng_normal(rg));
    for (int c = 0; c < C; c++) xf[(size_t)c * HW] = 1000.08f;
    tensor_from_nchw(&x, xf);
    double *xd = malloc(sizeof(double) * nx);
    for (size_t i = 0; i < nx; i++) xd[i] = xf[i];
    float ones[32], zeros[32], rm0[32], rv0[32];
    for (int c = 0; c < C; c++) ones[c] = 1, zeros[c] = 0, rm0[c] = 0, rv0[c] = 1;
    ref_out r;
    double mean[32], var[32], rm[32], rv[32];
    r.y = malloc(sizeof(double) * nx), r.mean = mean, r.var = var, r.rm = rm, r.rv = rv;
    ref_forward(N, C, HW, xd, ones, zeros, rm0, rv0, 0, &r);
    REQUIRE_OK(bnr_forward(&p, e));
    double wm = 0, wv = 0;
    for (int c = 0; c < C; c++) {
        double a = fabs(p.mean[c] - mean[c]) / sqrt(var[c]), b = fabs(p.var[c] - var[c]) / var[c];
        if (a > wm) wm = a;
        if (b > wv) wv = b;
    }
    EXPECT(wm <= TOL_COND, "mean 1000 / std 0.01: |mean - ref| / std_ref = %.2e (tol %.0e)", wm, TOL_COND);
    EXPECT(wv <= TOL_COND, "mean 1000 / std 0.01: |var - ref| / var_ref = %.2e (tol %.0e)", wv, TOL_COND);
    float *yf = malloc(sizeof(float) * nx);
    tensor_to_nchw(&y, yf);
    double ey = rel_f(yf, r.y, (int)nx);
    EXPECT(ey <= TOL, "mean 1000 / std 0.01: y vs naive double: rel %.2e (tol %.0e)", ey, TOL);
    double erv = rel_f(l.run_var.data, rv, C);
    EXPECT(erv <= TOL, "mean 1000 / std 0.01: running var vs naive: rel %.2e (tol %.0e)", erv, TOL);
    free(xf), free(xd), free(r.y), free(yf);
    bnr_plan_free(&p);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy);
    bn_layer_free(&l);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* Forward/backward after planning: no heap allocation (project code or libraries). */
static void run_noalloc(eng_ctx *e, rng *rg) {
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(24);
    REQUIRE_OK(bn_layer_init(&l, e, &cfg, &P, &G));
    tensor x, y, g;
    REQUIRE_OK(tensor_plan_act(e, &x, 2, 24, 20, 20, &A)); REQUIRE_OK(tensor_plan_act(e, &y, 2, 24, 20, 20, &A));
    REQUIRE_OK(tensor_plan_act(e, &g, 2, 24, 20, 20, &A));
    bnr_plan p;
    REQUIRE_OK(bnr_plan_init(&p, e, &l, &x, &y, &g, &g, 1));
    REQUIRE_OK(arena_commit(&P)); REQUIRE_OK(arena_commit(&G)); REQUIRE_OK(arena_commit(&A));
    bn_reset_params(&l);
    ac_fill(rg, &x, 1.0, 0.5), ac_fill(rg, &g, 1.0, 0.0);
    REQUIRE_OK(bnr_forward(&p, e)); REQUIRE_OK(bnr_backward(&p, e, 0)); /* warm-up (OpenMP pool) */
    atomic_store(&na_counting, 1);
    for (int i = 0; i < 3; i++) {
        REQUIRE_OK(bnr_forward(&p, e));
        REQUIRE_OK(bnr_backward(&p, e, i & 1));
    }
    atomic_store(&na_counting, 0);
    if (NA_INTERPOSE)
        EXPECT(na_ours == 0 && na_lib == 0,
               "3 forward+backward steps: %ld allocations by project code, %ld by libraries", (long)na_ours,
               (long)na_lib);
    else
        printf("skip: allocation counting is off under AddressSanitizer (%ld frees seen)\n", (long)na_frees);
    bnr_plan_free(&p);
    tensor_free(&x), tensor_free(&y), tensor_free(&g);
    bn_layer_free(&l);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* bn.h calibrate: the forward sets gamma = sqrt(var + eps), beta = mean + beta, so y = clip(x + old
 * beta); the flag clears; a second forward on the same x gives the same y (the layer now is that
 * function on this batch). Checked for a serial and a parallel (multi-group) tensor. */
static void run_calibrate(eng_ctx *e, rng *rg, int N, int C, int H, int W) {
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(C);
    REQUIRE_OK(bn_layer_init(&l, e, &cfg, &P, &G));
    tensor x, y, g;
    REQUIRE_OK(tensor_plan_act(e, &x, N, C, H, W, &A)); REQUIRE_OK(tensor_plan_act(e, &y, N, C, H, W, &A));
    REQUIRE_OK(tensor_plan_act(e, &g, N, C, H, W, &A));
    bnr_plan p;
    REQUIRE_OK(bnr_plan_init(&p, e, &l, &x, &y, &g, &g, 1));
    REQUIRE_OK(arena_commit(&P)); REQUIRE_OK(arena_commit(&G)); REQUIRE_OK(arena_commit(&A));
    bn_reset_params(&l);
    double *b0 = malloc(sizeof(double) * C);
    for (int c = 0; c < C; c++) b0[c] = l.beta.data[c] = (float)(rng_uniform(rg) * 2 - 0.5);
    ac_fill(rg, &x, 1.5, 0.8);
    size_t nx = (size_t)N * C * H * W;
    float *xf = malloc(sizeof(float) * nx), *yf = malloc(sizeof(float) * nx);
    tensor_to_nchw(&x, xf);
    double *want = malloc(sizeof(double) * nx), wmax = 0;
    for (size_t i = 0; i < nx; i++) {
        int c = (int)(i / ((size_t)H * W) % (size_t)C);
        double v = (double)xf[i] + b0[c];
        want[i] = v < 0 ? 0 : v > 6 ? 6 : v;
        wmax = fmax(wmax, fabs(want[i]));
    }
    l.calibrate = 1;
    REQUIRE_OK(bnr_forward(&p, e));
    tensor_to_nchw(&y, yf);
    double ey = 0;
    for (size_t i = 0; i < nx; i++) ey = fmax(ey, fabs((double)yf[i] - want[i]) / wmax);
    double eg = 0, eb = 0;
    for (int c = 0; c < C; c++) {
        double mu, var;
        double *xc = malloc(sizeof(double) * nx);
        for (size_t i = 0; i < nx; i++) xc[i] = xf[i];
        ref_stats(N, C, H * W, xc, c, &mu, &var);
        free(xc);
        eg = fmax(eg, fabs((double)l.gamma.data[c] - sqrt(var + (double)cfg.eps)) / sqrt(var + (double)cfg.eps));
        eb = fmax(eb, fabs((double)l.beta.data[c] - (mu + b0[c])) / fmax(fabs(mu + b0[c]), 1.0));
    }
    EXPECT(ey <= TOL && l.calibrate == 0, "calibrate %dx%dx%dx%d: y = clip(x + old beta): rel %.2e (tol %.0e), flag cleared",
           N, C, H, W, ey, TOL);
    EXPECT(eg <= TOL && eb <= TOL, "calibrate %dx%dx%dx%d: gamma = sqrt(var + eps) rel %.2e, beta = mean + old beta rel %.2e "
           "(tol %.0e)", N, C, H, W, eg, eb, TOL);
    REQUIRE_OK(bnr_forward(&p, e));
    tensor_to_nchw(&y, yf);
    double ey2 = 0;
    for (size_t i = 0; i < nx; i++) ey2 = fmax(ey2, fabs((double)yf[i] - want[i]) / wmax);
    EXPECT(ey2 <= TOL, "calibrate %dx%dx%dx%d: the next (normal) forward keeps y = clip(x + old beta): rel %.2e (tol %.0e)",
           N, C, H, W, ey2, TOL);
    free(b0), free(xf), free(yf), free(want);
    bnr_plan_free(&p);
    tensor_free(&x), tensor_free(&y), tensor_free(&g);
    bn_layer_free(&l);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

static void run_plan_errors(eng_ctx *e) {
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(16);
    REQUIRE_OK(bn_layer_init(&l, e, &cfg, &P, &G));
    tensor x, y, x1, y1;
    REQUIRE_OK(tensor_plan_act(e, &x, 2, 16, 3, 3, &A)); REQUIRE_OK(tensor_plan_act(e, &y, 2, 16, 3, 3, &A));
    REQUIRE_OK(tensor_plan_act(e, &x1, 1, 16, 1, 1, &A)); REQUIRE_OK(tensor_plan_act(e, &y1, 1, 16, 1, 1, &A));
    bnr_plan p;
    EXPECT(bnr_plan_init(&p, e, &l, &x, &x, &y, &y, 1) == OTE_EINVAL, "plan refuses y == x (%s)", ote_errmsg());
    EXPECT(bnr_plan_init(&p, e, &l, &x1, &y1, &y1, &y1, 1) == OTE_EINVAL, "plan refuses N*H*W = 1 (%s)",
           ote_errmsg());
    EXPECT(bnr_plan_init(&p, e, &l, &x, &y, &y1, &y1, 1) == OTE_EINVAL, "plan refuses dy of another shape (%s)",
           ote_errmsg());
    tensor_free(&x), tensor_free(&y), tensor_free(&x1), tensor_free(&y1);
    bn_layer_free(&l);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

int main(void) {
    eng_ctx e;
    REQUIRE_OK(eng_init(&e, 2));
    rng rg;
    rng_seed(&rg, 20261129);
    /* {N, C, H, W, relu6, edge, path} */
    static const case_cfg cases[] = {
        {2, 16, 1, 1, 1, 0, 1},   {3, 24, 1, 2, 1, 0, 1},   {1, 96, 2, 2, 1, 0, 0},   {1, 144, 3, 3, 1, 0, 0},
        {4, 16, 3, 2, 0, 0, 0},   {2, 144, 2, 3, 0, 0, 0},  {1, 24, 40, 33, 1, 0, 0}, {1, 24, 40, 33, 0, 0, 0},
        {8, 96, 7, 5, 1, 0, 0},   {8, 96, 7, 5, 0, 0, 0},   {2, 144, 14, 14, 1, 0, 0}, {5, 16, 17, 11, 1, 0, 0},
        {1, 96, 1, 30, 0, 0, 0},  {4, 40, 56, 56, 1, 0, 2}, {2, 48, 64, 64, 1, 0, 2}, {2, 24, 4, 4, 1, 1, 0},
        {3, 16, 5, 6, 1, 1, 0},   {2, 24, 4, 4, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&e, &rg, cases[i]);
    run_ill_conditioned(&e, &rg);
    run_plan_errors(&e);
    run_calibrate(&e, &rg, 2, 24, 4, 5);    /* serial */
    run_calibrate(&e, &rg, 2, 48, 40, 40);  /* parallel, several cache groups */
    run_noalloc(&e, &rg);
    eng_free(&e);
    return expect_finish();
}
