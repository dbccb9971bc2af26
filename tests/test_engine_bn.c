/* test_engine_bn.c - the BatchNorm layer (engine/bn.h): training forward, running statistics, eval
 * forward and backward against a naive double-precision NCHW reference and central finite
 * differences; in-place backward; blocked padding; the accumulate flag across two plans; and the
 * PyTorch fixture from tests/reference/bn_ref.py (torch.nn.BatchNorm2d, 3 training steps).
 *
 * Tolerances (relative to the largest |reference| of the checked quantity):
 *   vs naive double (y, running stats, dx, dgamma, dbeta, eval y):  1e-5
 *   vs finite differences (h = 1e-4 in double, O(h^2) error ~1e-9):  1e-5
 *   in-place backward vs out-of-place:                                 0 (same kernel, same inputs)
 *   accumulate vs sum of separate grads:                               1e-6
 *   vs the PyTorch fixture:                                            1e-5
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/bn.h"
#include "engine/eng.h"
#include "engine/ote.h"
#include "tests/engine_check.h"
#include "tests/expect.h"
#include "tests/fixture.h"

#define TOL_NAIVE 1e-5
#define TOL_FD 1e-5
#define TOL_ACC 1e-6
#define TOL_TORCH 1e-5
#define FD_SAMPLES 24
#define EPS 1e-5

typedef struct worst {
    double y, stats, eval, dx, dg, db, fd_dx, fd_dg, fd_db;
} worst;

static double maxd(double a, double b) { return a > b ? a : b; }

/* Batch statistics (biased variance) and the normalised output, as torch's training forward. */
static void naive_fwd(int N, int C, int HW, const double *x, const double *g, const double *b, double *y, double *mean,
                      double *var) {
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0, m = (double)N * HW;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) s += x[((size_t)n * C + c) * HW + i];
        double mu = s / m;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                double d = x[((size_t)n * C + c) * HW + i] - mu;
                ss += d * d;
            }
        double v = ss / m, rs = 1.0 / sqrt(v + EPS);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                y[o] = (x[o] - mu) * rs * g[c] + b[c];
            }
        if (mean) mean[c] = mu;
        if (var) var[c] = v;
    }
}

/* Spec §11: g_x = (1/sigma)(gh - mean(gh) - xhat * mean(gh * xhat)), gh = dy * gamma. */
static void naive_bwd(int N, int C, int HW, const double *x, const double *g, const double *dy, double *dx, double *dg,
                      double *db) {
    double *y = malloc(sizeof(double) * N * C * HW), *mean = malloc(sizeof(double) * C), *var = malloc(sizeof(double) * C);
    double *zero = calloc((size_t)C, sizeof(double)), *one = malloc(sizeof(double) * C);
    for (int c = 0; c < C; c++) one[c] = 1;
    naive_fwd(N, C, HW, x, one, zero, y, mean, var); /* y = xhat */
    double m = (double)N * HW;
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0, rs = 1.0 / sqrt(var[c] + EPS);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                sdy += dy[o];
                sdyx += dy[o] * y[o];
            }
        db[c] = sdy, dg[c] = sdyx;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                dx[o] = rs * g[c] * (dy[o] - sdy / m - y[o] * sdyx / m);
            }
    }
    free(y), free(mean), free(var), free(zero), free(one);
}

static double loss(int N, int C, int HW, const double *x, const double *g, const double *b, const double *r) {
    size_t n = (size_t)N * C * HW;
    double *y = malloc(sizeof(double) * n), s = 0;
    naive_fwd(N, C, HW, x, g, b, y, NULL, NULL);
    for (size_t i = 0; i < n; i++) s += y[i] * r[i];
    free(y);
    return s;
}

static double fd_err(rng *rg, int N, int C, int HW, double *x, double *g, double *b, const double *r, double *v,
                     size_t nv, const double *got) {
    size_t idx[FD_SAMPLES];
    int k = ec_samples(rg, nv, FD_SAMPLES, idx);
    double fd[FD_SAMPLES], gv[FD_SAMPLES];
    const double h = 1e-4;
    for (int i = 0; i < k; i++) {
        double save = v[idx[i]];
        v[idx[i]] = save + h;
        double lp = loss(N, C, HW, x, g, b, r);
        v[idx[i]] = save - h;
        double lm = loss(N, C, HW, x, g, b, r);
        v[idx[i]] = save;
        fd[i] = (lp - lm) / (2 * h);
        gv[i] = got[idx[i]];
    }
    return ec_rel(gv, fd, (size_t)k, 1e-30);
}

static void run_case(eng_ctx *e, rng *rg, int N, int C, int H, int W, worst *wo) {
    char nm[64];
    snprintf(nm, sizeof nm, "bn (%d,%d,%d,%d)", N, C, H, W);
    expect_case(nm);
    int HW = H * W;
    size_t nx = (size_t)N * C * HW;
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(C);
    ASSERT(bn_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    tensor x, y, dy, dx, ye, y2, dy2;
    ASSERT(tensor_plan_act(e, &x, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &y, N, C, H, W, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dy, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &dx, N, C, H, W, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &ye, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &y2, N, C, H, W, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dy2, N, C, H, W, &A) == OTE_OK);
    bn_plan p, pe, pi;
    int s = bn_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1);
    if (!EXPECT(s == OTE_OK, "%s: training plan (%s)", nm, s ? ote_errmsg() : "no ref: kernel")) return;
    s = bn_plan_init(&pe, e, &l, &x, &ye, NULL, NULL, 0);
    EXPECT(s == OTE_OK, "%s: eval plan (%s)", nm, s ? ote_errmsg() : "ok");
    s = bn_plan_init(&pi, e, &l, &x, &y2, &dy2, &dy2, 1);
    EXPECT(s == OTE_OK, "%s: in-place backward plan (%s)", nm, s ? ote_errmsg() : "ok");
    ASSERT(arena_commit(&P) == OTE_OK && arena_commit(&G) == OTE_OK && arena_commit(&A) == OTE_OK);

    float *xf = ec_rand(rg, nx, -2, 3), *dyf = ec_rand(rg, nx, -1, 1);
    float *gf = ec_rand(rg, (size_t)C, 0.5, 1.5), *bf = ec_rand(rg, (size_t)C, -1, 1);
    float *rmf = ec_rand(rg, (size_t)C, -1, 1), *rvf = ec_rand(rg, (size_t)C, 0.5, 2);
    memcpy(l.gamma.data, gf, sizeof(float) * C), memcpy(l.beta.data, bf, sizeof(float) * C);
    memcpy(l.run_mean.data, rmf, sizeof(float) * C), memcpy(l.run_var.data, rvf, sizeof(float) * C);
    tensor_from_nchw(&x, xf), tensor_from_nchw(&dy, dyf), tensor_from_nchw(&dy2, dyf);
    ec_poison_pad(&y, 5.0f), ec_poison_pad(&dx, 5.0f), ec_poison_pad(&ye, 5.0f);

    double *xd = ec_f2d(xf, nx), *dyd = ec_f2d(dyf, nx), *gd = ec_f2d(gf, (size_t)C), *bd = ec_f2d(bf, (size_t)C);
    double *yref = malloc(sizeof(double) * nx), mean[64], var[64], rm[64], rv[64], rmg[64], rvg[64];
    naive_fwd(N, C, HW, xd, gd, bd, yref, mean, var);
    long np0 = e->n_primitives;
    ASSERT(bn_forward(&p, e) == OTE_OK);
    double m = (double)N * HW;
    for (int c = 0; c < C; c++) {
        rm[c] = 0.9 * (double)rmf[c] + 0.1 * mean[c];
        rv[c] = 0.9 * (double)rvf[c] + 0.1 * var[c] * m / (m - 1);
        rmg[c] = l.run_mean.data[c], rvg[c] = l.run_var.data[c];
    }
    double e_y = ec_rel_tensor(&y, yref);
    double e_st = maxd(ec_rel(rmg, rm, (size_t)C, 1e-30), ec_rel(rvg, rv, (size_t)C, 1e-30));
    EXPECT_ERR(e_y, TOL_NAIVE, "%s: training forward vs naive", nm);
    EXPECT_ERR(e_st, TOL_NAIVE, "%s: running mean/var (unbiased) vs naive", nm);

    /* Eval forward with the updated running statistics. */
    ASSERT(bn_forward(&pe, e) == OTE_OK);
    double *yeref = malloc(sizeof(double) * nx);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                yeref[o] = (xd[o] - rm[c]) / sqrt(rv[c] + EPS) * gd[c] + bd[c];
            }
    double e_ev = ec_rel_tensor(&ye, yeref);
    EXPECT_ERR(e_ev, TOL_NAIVE, "%s: eval forward (running stats) vs naive", nm);
    int still = 1;
    for (int c = 0; c < C; c++) still &= l.run_mean.data[c] == (float)rmg[c] && l.run_var.data[c] == (float)rvg[c];
    EXPECT(still, "%s: eval forward leaves the running statistics alone", nm);

    ASSERT(bn_backward(&p, e, 0) == OTE_OK);
    double *dxref = malloc(sizeof(double) * nx), dgref[64], dbref[64];
    naive_bwd(N, C, HW, xd, gd, dyd, dxref, dgref, dbref);
    double *dgd = ec_f2d(l.dgamma.data, (size_t)C), *dbd = ec_f2d(l.dbeta.data, (size_t)C), *dxd = ec_tensor_d(&dx);
    double e_dx = ec_rel(dxd, dxref, nx, 1e-30), e_dg = ec_rel(dgd, dgref, (size_t)C, 1e-30);
    double e_db = ec_rel(dbd, dbref, (size_t)C, 1e-30);
    EXPECT_ERR(e_dx, TOL_NAIVE, "%s: dx vs naive", nm);
    EXPECT_ERR(e_dg, TOL_NAIVE, "%s: dgamma vs naive", nm);
    EXPECT_ERR(e_db, TOL_NAIVE, "%s: dbeta vs naive", nm);
    double f_dx = fd_err(rg, N, C, HW, xd, gd, bd, dyd, xd, nx, dxd);
    double f_dg = fd_err(rg, N, C, HW, xd, gd, bd, dyd, gd, (size_t)C, dgd);
    double f_db = fd_err(rg, N, C, HW, xd, gd, bd, dyd, bd, (size_t)C, dbd);
    EXPECT_ERR(f_dx, TOL_FD, "%s: dx vs finite differences", nm);
    EXPECT_ERR(f_dg, TOL_FD, "%s: dgamma vs finite differences", nm);
    EXPECT_ERR(f_db, TOL_FD, "%s: dbeta vs finite differences", nm);
    EXPECT(ec_pad_zero(&y) && ec_pad_zero(&ye), "%s: y channel padding is zero after forward", nm);
    EXPECT(ec_pad_zero(&dx), "%s: dx channel padding is zero after backward", nm);

    /* In place: dx written over dy. */
    ASSERT(bn_forward(&pi, e) == OTE_OK);
    ASSERT(bn_backward(&pi, e, 0) == OTE_OK);
    double *dipd = ec_tensor_d(&dy2);
    EXPECT_ERR(ec_rel(dipd, dxd, nx, 1e-30), 0.0, "%s: in-place backward (dx over dy) vs out-of-place", nm);
    EXPECT(ec_pad_zero(&dy2), "%s: in-place dx channel padding is zero", nm);
    EXPECT(e->n_primitives == np0, "%s: forward/backward create no primitive", nm);

    wo->y = maxd(wo->y, e_y), wo->stats = maxd(wo->stats, e_st), wo->eval = maxd(wo->eval, e_ev);
    wo->dx = maxd(wo->dx, e_dx), wo->dg = maxd(wo->dg, e_dg), wo->db = maxd(wo->db, e_db);
    wo->fd_dx = maxd(wo->fd_dx, f_dx), wo->fd_dg = maxd(wo->fd_dg, f_dg), wo->fd_db = maxd(wo->fd_db, f_db);
    free(xf), free(dyf), free(gf), free(bf), free(rmf), free(rvf), free(xd), free(dyd), free(gd), free(bd);
    free(yref), free(yeref), free(dxref), free(dgd), free(dbd), free(dxd), free(dipd);
    bn_plan_free(&p), bn_plan_free(&pe), bn_plan_free(&pi), bn_layer_free(&l);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx), tensor_free(&ye), tensor_free(&y2);
    tensor_free(&dy2);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

static void test_accumulate(eng_ctx *e, rng *rg) {
    const int C = 24;
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(C);
    ASSERT(bn_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    tensor xa, ya, dya, xb, yb, dyb;
    ASSERT(tensor_plan_act(e, &xa, 2, C, 7, 9, &A) == OTE_OK && tensor_plan_act(e, &ya, 2, C, 7, 9, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dya, 2, C, 7, 9, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &xb, 2, C, 13, 11, &A) == OTE_OK && tensor_plan_act(e, &yb, 2, C, 13, 11, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dyb, 2, C, 13, 11, &A) == OTE_OK);
    bn_plan pa, pb;
    ASSERT(bn_plan_init(&pa, e, &l, &xa, &ya, &dya, NULL, 1) == OTE_OK);
    ASSERT(bn_plan_init(&pb, e, &l, &xb, &yb, &dyb, NULL, 1) == OTE_OK);
    ASSERT(arena_commit(&P) == OTE_OK && arena_commit(&G) == OTE_OK && arena_commit(&A) == OTE_OK);
    bn_reset_params(&l);
    float *v, dga[24], dba[24], dgb[24], dbb[24];
    v = ec_rand(rg, 24, 0.5, 1.5), memcpy(l.gamma.data, v, sizeof dga), free(v);
    v = ec_rand(rg, 2 * C * 63, -1, 2), tensor_from_nchw(&xa, v), free(v);
    v = ec_rand(rg, 2 * C * 143, -1, 2), tensor_from_nchw(&xb, v), free(v);
    float *dyaf = ec_rand(rg, 2 * C * 63, -1, 1), *dybf = ec_rand(rg, 2 * C * 143, -1, 1);
    /* dx = NULL writes the input gradient over dy: reload dy before every backward. */
    ASSERT(bn_forward(&pa, e) == OTE_OK && bn_forward(&pb, e) == OTE_OK);
    tensor_from_nchw(&dya, dyaf);
    ASSERT(bn_backward(&pa, e, 0) == OTE_OK);
    memcpy(dga, l.dgamma.data, sizeof dga), memcpy(dba, l.dbeta.data, sizeof dba);
    tensor_from_nchw(&dyb, dybf);
    ASSERT(bn_backward(&pb, e, 0) == OTE_OK);
    memcpy(dgb, l.dgamma.data, sizeof dgb), memcpy(dbb, l.dbeta.data, sizeof dbb);
    tensor_from_nchw(&dya, dyaf);
    ASSERT(bn_backward(&pa, e, 0) == OTE_OK);
    tensor_from_nchw(&dyb, dybf);
    ASSERT(bn_backward(&pb, e, 1) == OTE_OK);
    double sg[24], sb[24], gg[24], gb[24];
    for (int c = 0; c < C; c++) {
        sg[c] = (double)dga[c] + (double)dgb[c], sb[c] = (double)dba[c] + (double)dbb[c];
        gg[c] = l.dgamma.data[c], gb[c] = l.dbeta.data[c];
    }
    EXPECT_ERR(ec_rel(gg, sg, 24, 1e-30), TOL_ACC, "bn accumulate: dgamma(A,0)+dgamma(B,1) vs dgamma(A)+dgamma(B)");
    EXPECT_ERR(ec_rel(gb, sb, 24, 1e-30), TOL_ACC, "bn accumulate: dbeta(A,0)+dbeta(B,1) vs dbeta(A)+dbeta(B)");
    EXPECT(dga[0] != dgb[0], "bn accumulate: the two plans give different gradients");
    size_t off, bytes;
    bn_stats_span(&l, &off, &bytes);
    EXPECT(off == l.run_mean.offset && off + bytes == l.run_var.offset + l.run_var.bytes &&
                    l.dgamma.offset == l.gamma.offset && l.drun_var.offset == l.run_var.offset,
             "bn: params/grads layouts match and the running-stats span covers mean and var");
    int zero = 1;
    for (int c = 0; c < C; c++) zero &= l.drun_mean.data[c] == 0 && l.drun_var.data[c] == 0;
    EXPECT(zero, "bn: running-stat gradient placeholders stay zero");
    free(dyaf), free(dybf);
    bn_plan_free(&pa), bn_plan_free(&pb), bn_layer_free(&l);
    tensor_free(&xa), tensor_free(&ya), tensor_free(&dya), tensor_free(&xb), tensor_free(&yb), tensor_free(&dyb);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

static double cmp_fx(const tensor *t, const fx_array *a) {
    ASSERT((size_t)a->numel == tensor_numel(t));
    return ec_rel_tensor(t, a->v);
}

static double cmp_vec(const float *v, const fx_array *a) {
    double d[64];
    ASSERT(a->numel <= 64);
    for (long i = 0; i < a->numel; i++) d[i] = v[i];
    return ec_rel(d, a->v, (size_t)a->numel, 1e-30);
}

static void load_into(tensor *t, const fx_array *a) {
    ASSERT((size_t)a->numel == tensor_numel(t));
    float *f = malloc(sizeof(float) * a->numel);
    for (long i = 0; i < a->numel; i++) f[i] = (float)a->v[i];
    tensor_from_nchw(t, f);
    free(f);
}

static void test_torch(eng_ctx *e) {
    const char *src = getenv("OTE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/bn_ref.fx", src ? src : ".");
    fx_file f;
    if (!EXPECT(fx_load(&f, path) == 0, "torch fixture loads (%s)", path)) return;
    const int N = 3, C = 5, H = 4, W = 6;
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(C);
    ASSERT(bn_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    tensor x, y, dy, dx, xe, ye;
    ASSERT(tensor_plan_act(e, &x, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &y, N, C, H, W, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dy, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &dx, N, C, H, W, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &xe, N, C, H, W, &A) == OTE_OK && tensor_plan_act(e, &ye, N, C, H, W, &A) == OTE_OK);
    bn_plan p, pe;
    ASSERT(bn_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1) == OTE_OK);
    ASSERT(bn_plan_init(&pe, e, &l, &xe, &ye, NULL, NULL, 0) == OTE_OK);
    ASSERT(arena_commit(&P) == OTE_OK && arena_commit(&G) == OTE_OK && arena_commit(&A) == OTE_OK);
    bn_reset_params(&l);
    const fx_array *ga = fx_get(&f, "gamma"), *ba = fx_get(&f, "beta");
    for (int c = 0; c < C; c++) l.gamma.data[c] = (float)ga->v[c], l.beta.data[c] = (float)ba->v[c];
    double big = 0;
    char name[64];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "x%d", k);
        load_into(&x, fx_get(&f, name));
        ASSERT(bn_forward(&p, e) == OTE_OK);
        snprintf(name, sizeof name, "y%d", k);
        double ey = cmp_fx(&y, fx_get(&f, name));
        snprintf(name, sizeof name, "running_mean%d", k);
        double em = cmp_vec(l.run_mean.data, fx_get(&f, name));
        snprintf(name, sizeof name, "running_var%d", k);
        double ev = cmp_vec(l.run_var.data, fx_get(&f, name));
        EXPECT_ERR(ey, TOL_TORCH, "torch step %d: y", k);
        EXPECT_ERR(em, TOL_TORCH, "torch step %d: running_mean", k);
        EXPECT_ERR(ev, TOL_TORCH, "torch step %d: running_var", k);
        big = maxd(big, maxd(ey, maxd(em, ev)));
    }
    load_into(&dy, fx_get(&f, "dy"));
    ASSERT(bn_backward(&p, e, 0) == OTE_OK);
    double edx = cmp_fx(&dx, fx_get(&f, "dx")), edg = cmp_vec(l.dgamma.data, fx_get(&f, "dgamma"));
    double edb = cmp_vec(l.dbeta.data, fx_get(&f, "dbeta"));
    EXPECT_ERR(edx, TOL_TORCH, "torch backward: dx");
    EXPECT_ERR(edg, TOL_TORCH, "torch backward: dgamma");
    EXPECT_ERR(edb, TOL_TORCH, "torch backward: dbeta");
    load_into(&xe, fx_get(&f, "x_eval"));
    ASSERT(bn_forward(&pe, e) == OTE_OK);
    double eev = cmp_fx(&ye, fx_get(&f, "y_eval"));
    EXPECT_ERR(eev, TOL_TORCH, "torch eval forward with running stats");
    big = maxd(big, maxd(edx, maxd(edg, maxd(edb, eev))));
    printf("bn: largest error vs PyTorch fixture: %.2e\n", big);
    fx_free(&f);
    bn_plan_free(&p), bn_plan_free(&pe), bn_layer_free(&l);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx), tensor_free(&xe), tensor_free(&ye);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

static void test_refusals(eng_ctx *e) {
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    bn_layer l;
    bn_cfg cfg = bn_cfg_default(5);
    ASSERT(bn_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    tensor x, dy, x1, y1, dy1;
    ASSERT(tensor_plan_act(e, &x, 2, 5, 3, 3, &A) == OTE_OK && tensor_plan_act(e, &dy, 2, 5, 3, 3, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &x1, 1, 5, 1, 1, &A) == OTE_OK && tensor_plan_act(e, &y1, 1, 5, 1, 1, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dy1, 1, 5, 1, 1, &A) == OTE_OK);
    bn_plan p;
    int s = bn_plan_init(&p, e, &l, &x, &x, &dy, NULL, 1);
    EXPECT(s == OTE_EINVAL, "bn: in-place training forward is refused (backward needs x) (%d)", s);
    s = bn_plan_init(&p, e, &l, &x1, &y1, &dy1, NULL, 1);
    EXPECT(s == OTE_EINVAL, "bn: training with one value per channel is refused, as torch does (%d)", s);
    s = bn_plan_init(&p, e, &l, &x, &x, NULL, NULL, 0);
    EXPECT(s == OTE_OK, "bn: in-place eval forward is accepted (%d)", s);
    if (s == OTE_OK) bn_plan_free(&p);
    bn_layer_free(&l);
    tensor_free(&x), tensor_free(&dy), tensor_free(&x1), tensor_free(&y1), tensor_free(&dy1);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* Every BN / channel count of the backbone at the sizes it runs at (2x320x320 input): the training
 * and eval plans must be JIT (no ref:; plans only, nothing committed). */
static void test_network_shapes(eng_ctx *e) {
    static const int L[][2] = {{32, 2}, {16, 2}, {96, 2}, {96, 4}, {24, 4}, {144, 4}, {144, 8}, {32, 8}, {192, 8},
                               {192, 16}, {64, 16}, {384, 16}, {96, 16}, {576, 16}, {576, 32}, {160, 32}, {960, 32},
                               {320, 32}};
    int bad = 0, total = 0;
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
        arena P, G, A;
        arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
        bn_layer l;
        bn_cfg cfg = bn_cfg_default(L[i][0]);
        ASSERT(bn_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
        int h = 320 / L[i][1];
        tensor x, y, dy;
        ASSERT(tensor_plan_act(e, &x, 2, L[i][0], h, h, &A) == OTE_OK);
        ASSERT(tensor_plan_act(e, &y, 2, L[i][0], h, h, &A) == OTE_OK);
        ASSERT(tensor_plan_act(e, &dy, 2, L[i][0], h, h, &A) == OTE_OK);
        bn_plan p;
        for (int tr = 0; tr < 2; tr++) {
            total++;
            int s = bn_plan_init(&p, e, &l, &x, &y, tr ? &dy : NULL, tr ? &dy : NULL, tr);
            if (s != OTE_OK) {
                bad++;
                printf("  network bn C=%d at %dx%d training %d: %s\n", L[i][0], h, h, tr, ote_errmsg());
            } else {
                bn_plan_free(&p);
            }
        }
        bn_layer_free(&l);
        tensor_free(&x), tensor_free(&y), tensor_free(&dy);
        arena_free(&P), arena_free(&G), arena_free(&A);
    }
    EXPECT(bad == 0, "network shapes: %d BN plans of the backbone (training + eval) build without ref:, %d failed",
             total, bad);
}

int main(void) {
    eng_ctx e;
    if (eng_init(&e, 0) != OTE_OK) {
        fprintf(stderr, "eng_init: %s\n", ote_errmsg());
        return 1;
    }
    rng g;
    rng_seed(&g, 777);
    worst wo = {0};
    run_case(&e, &g, 2, 5, 7, 9, &wo);
    run_case(&e, &g, 3, 24, 13, 11, &wo);
    run_case(&e, &g, 2, 35, 7, 9, &wo);
    run_case(&e, &g, 4, 16, 5, 3, &wo);
    expect_case("accumulate");
    test_accumulate(&e, &g);
    expect_case("torch fixture");
    test_torch(&e);
    expect_case("refusals");
    test_refusals(&e);
    expect_case("network shapes");
    test_network_shapes(&e);
    printf("bn: largest error vs naive: y %.2e running stats %.2e eval y %.2e dx %.2e dgamma %.2e dbeta %.2e; "
           "vs finite differences: dx %.2e dgamma %.2e dbeta %.2e\n",
           wo.y, wo.stats, wo.eval, wo.dx, wo.dg, wo.db, wo.fd_dx, wo.fd_dg, wo.fd_db);
    eng_free(&e);
    return expect_finish();
}
