/* test_engine_conv.c - the convolution layer (engine/conv.h) against a naive double-precision NCHW
 * reference and central finite differences; blocked padding; the accumulate flag across two plans
 * of different shapes sharing one layer; refusal of `ref:` kernels; BN folding with fused ReLU6 /
 * ReLU / residual-sum post-ops for inference.
 *
 * Tolerances (relative to the largest |reference| value of the checked quantity):
 *   forward / backward vs naive double:   2e-5  (f32 accumulation over at most 315 products)
 *   backward vs finite differences:       2e-5  (the loss sum(y*dy) is linear in x, W and b, so
 *                                                central differences in double are exact up to
 *                                                rounding; the error is the layer's f32 rounding)
 *   accumulate vs sum of separate grads:  1e-6
 *   folded inference vs conv->BN->act:    2e-5
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conv.h"
#include "engine/eng.h"
#include "engine/ote.h"
#include "tests/engine_check.h"
#include "tests/expect.h"

#define TOL_NAIVE 2e-5
#define TOL_FD 2e-5
#define TOL_ACC 1e-6
#define TOL_FOLD 2e-5
#define FD_SAMPLES 24

typedef struct ccase {
    const char *name;
    int n, ic, oc, h, w, k, stride, pt, pl, pb, pr, groups, bias;
    int src_nchw; /* first-layer style: plain NCHW input, no dx */
} ccase;

typedef struct geo {
    int n, ic, oc, h, w, oh, ow, kh, kw, sh, sw, pt, pl, g;
} geo;

typedef struct worst {
    double fwd, dx, dw, db, fd_dx, fd_dw, fd_db;
} worst;

static geo make_geo(const ccase *c) {
    geo q = {c->n, c->ic, c->oc, c->h, c->w, 0, 0, c->k, c->k, c->stride, c->stride, c->pt, c->pl, c->groups};
    q.oh = (c->h + c->pt + c->pb - c->k) / c->stride + 1;
    q.ow = (c->w + c->pl + c->pr - c->k) / c->stride + 1;
    return q;
}

static size_t xi(const geo *q, int n, int c, int h, int w) { return (((size_t)n * q->ic + c) * q->h + h) * q->w + w; }
static size_t yi(const geo *q, int n, int c, int h, int w) { return (((size_t)n * q->oc + c) * q->oh + h) * q->ow + w; }
static size_t wi(const geo *q, int o, int ci, int kh, int kw) {
    return (((size_t)o * (q->ic / q->g) + ci) * q->kh + kh) * q->kw + kw;
}

/* y = conv(x, w) + b, plain loops. b may be NULL. */
static void naive_fwd(const geo *q, const double *x, const double *w, const double *b, double *y) {
    int icg = q->ic / q->g, ocg = q->oc / q->g;
    for (int n = 0; n < q->n; n++)
        for (int o = 0; o < q->oc; o++)
            for (int oh = 0; oh < q->oh; oh++)
                for (int ow = 0; ow < q->ow; ow++) {
                    double s = b ? b[o] : 0.0;
                    int g = o / ocg;
                    for (int ci = 0; ci < icg; ci++)
                        for (int kh = 0; kh < q->kh; kh++)
                            for (int kw = 0; kw < q->kw; kw++) {
                                int ih = oh * q->sh - q->pt + kh, iw = ow * q->sw - q->pl + kw;
                                if (ih < 0 || ih >= q->h || iw < 0 || iw >= q->w) continue;
                                s += w[wi(q, o, ci, kh, kw)] * x[xi(q, n, g * icg + ci, ih, iw)];
                            }
                    y[yi(q, n, o, oh, ow)] = s;
                }
}

/* The adjoint of naive_fwd: dx, dw, db (db may be NULL) from dy. */
static void naive_bwd(const geo *q, const double *x, const double *w, const double *dy, double *dx, double *dw,
                      double *db) {
    int icg = q->ic / q->g, ocg = q->oc / q->g;
    memset(dx, 0, sizeof(double) * q->n * q->ic * q->h * q->w);
    memset(dw, 0, sizeof(double) * q->oc * icg * q->kh * q->kw);
    if (db) memset(db, 0, sizeof(double) * q->oc);
    for (int n = 0; n < q->n; n++)
        for (int o = 0; o < q->oc; o++)
            for (int oh = 0; oh < q->oh; oh++)
                for (int ow = 0; ow < q->ow; ow++) {
                    double g_ = dy[yi(q, n, o, oh, ow)];
                    int g = o / ocg;
                    if (db) db[o] += g_;
                    for (int ci = 0; ci < icg; ci++)
                        for (int kh = 0; kh < q->kh; kh++)
                            for (int kw = 0; kw < q->kw; kw++) {
                                int ih = oh * q->sh - q->pt + kh, iw = ow * q->sw - q->pl + kw;
                                if (ih < 0 || ih >= q->h || iw < 0 || iw >= q->w) continue;
                                dw[wi(q, o, ci, kh, kw)] += g_ * x[xi(q, n, g * icg + ci, ih, iw)];
                                dx[xi(q, n, g * icg + ci, ih, iw)] += g_ * w[wi(q, o, ci, kh, kw)];
                            }
                }
}

/* L = sum(y * r) with y = naive_fwd(x, w, b). */
static double loss(const geo *q, const double *x, const double *w, const double *b, const double *r, double *ybuf) {
    naive_fwd(q, x, w, b, ybuf);
    double s = 0;
    size_t ny = (size_t)q->n * q->oc * q->oh * q->ow;
    for (size_t i = 0; i < ny; i++) s += ybuf[i] * r[i];
    return s;
}

/* Central differences of `loss` w.r.t. v[idx[k]] compared with the layer's gradient `got`. */
static double fd_err(rng *g, const geo *q, double *x, double *w, double *b, const double *r, double *v, size_t nv,
                     const double *got) {
    size_t idx[FD_SAMPLES];
    int k = ec_samples(g, nv, FD_SAMPLES, idx);
    double *ybuf = malloc(sizeof(double) * q->n * q->oc * q->oh * q->ow);
    double fd[FD_SAMPLES], gv[FD_SAMPLES];
    const double h = 1e-2;
    for (int i = 0; i < k; i++) {
        double save = v[idx[i]];
        v[idx[i]] = save + h;
        double lp = loss(q, x, w, b, r, ybuf);
        v[idx[i]] = save - h;
        double lm = loss(q, x, w, b, r, ybuf);
        v[idx[i]] = save;
        fd[i] = (lp - lm) / (2 * h);
        gv[i] = got[idx[i]];
    }
    free(ybuf);
    return ec_rel(gv, fd, (size_t)k, 1e-30);
}

static conv_cfg cfg_of(const ccase *c) {
    conv_cfg cfg = {.ic = c->ic, .oc = c->oc, .kh = c->k, .kw = c->k, .stride_h = c->stride, .stride_w = c->stride,
                    .pad_t = c->pt, .pad_l = c->pl, .pad_b = c->pb, .pad_r = c->pr, .groups = c->groups,
                    .bias = c->bias, .src_nchw = c->src_nchw};
    return cfg;
}

static double maxd(double a, double b) { return a > b ? a : b; }

static void run_case(eng_ctx *e, rng *g, const ccase *cs, worst *wo) {
    expect_case(cs->name);
    geo q = make_geo(cs);
    conv_cfg cfg = cfg_of(cs);
    arena P, G, A;
    arena_init(&P, "params");
    arena_init(&G, "grads");
    arena_init(&A, "acts");
    conv_layer l;
    tensor x, y, dy, dx, y_inf;
    conv_plan p, pinf;
    int s = conv_layer_init(&l, e, &cfg, &P, &G);
    if (!EXPECT(s == OTE_OK, "%s: layer init (%s)", cs->name, s ? ote_errmsg() : "ok")) return;
    if (cs->src_nchw)
        ASSERT(tensor_plan_plain(e, &x, TL_NCHW, q.n, q.ic, q.h, q.w, &A) == OTE_OK);
    else
        ASSERT(tensor_plan_act(e, &x, q.n, q.ic, q.h, q.w, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &y, q.n, q.oc, q.oh, q.ow, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dy, q.n, q.oc, q.oh, q.ow, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dx, q.n, q.ic, q.h, q.w, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &y_inf, q.n, q.oc, q.oh, q.ow, &A) == OTE_OK);
    s = conv_plan_init(&p, e, &l, &x, &y, &dy, cs->src_nchw ? NULL : &dx, 1);
    if (!EXPECT(s == OTE_OK, "%s: training plan (%s)", cs->name, s ? ote_errmsg() : "no ref: kernel")) return;
    s = conv_plan_init(&pinf, e, &l, &x, &y_inf, NULL, NULL, 0);
    EXPECT(s == OTE_OK, "%s: inference plan (%s)", cs->name, s ? ote_errmsg() : "ok");
    ASSERT(arena_commit(&P) == OTE_OK && arena_commit(&G) == OTE_OK && arena_commit(&A) == OTE_OK);

    size_t nx = (size_t)q.n * q.ic * q.h * q.w, ny = (size_t)q.n * q.oc * q.oh * q.ow;
    size_t nw = (size_t)q.oc * (q.ic / q.g) * q.kh * q.kw;
    float *xf = ec_rand(g, nx, -1, 1), *wf = ec_rand(g, nw, -1, 1), *bf = ec_rand(g, (size_t)q.oc, -1, 1);
    float *dyf = ec_rand(g, ny, -1, 1);
    ASSERT(conv_weights_from_oihw(&l, e, wf) == OTE_OK);
    if (cs->bias) memcpy(l.b.data, bf, sizeof(float) * q.oc);
    tensor_from_nchw(&x, xf);
    tensor_from_nchw(&dy, dyf);
    /* Poisoned output padding: the primitives must write zeros there (their documented contract). */
    ec_poison_pad(&y, 7.0f);
    ec_poison_pad(&dx, 7.0f);

    /* Round trip of the plain <-> blocked weight reorders. */
    float *wback = malloc(sizeof(float) * nw);
    ASSERT(conv_weights_to_oihw(&l, e, wback) == OTE_OK);
    EXPECT(memcmp(wback, wf, sizeof(float) * nw) == 0, "%s: weights oihw -> blocked -> oihw is exact", cs->name);

    long np0 = e->n_primitives;
    ASSERT(conv_forward(&p, e) == OTE_OK);
    ASSERT(conv_backward(&p, e, 0) == OTE_OK);
    ASSERT(conv_forward(&pinf, e) == OTE_OK);
    EXPECT(e->n_primitives == np0, "%s: forward/backward create no primitive", cs->name);

    double *xd = ec_f2d(xf, nx), *wd = ec_f2d(wf, nw), *bd = ec_f2d(bf, (size_t)q.oc), *dyd = ec_f2d(dyf, ny);
    double *yref = malloc(sizeof(double) * ny), *dxref = malloc(sizeof(double) * nx);
    double *dwref = malloc(sizeof(double) * nw), *dbref = malloc(sizeof(double) * q.oc);
    naive_fwd(&q, xd, wd, cs->bias ? bd : NULL, yref);
    naive_bwd(&q, xd, wd, dyd, dxref, dwref, dbref);

    double e_y = ec_rel_tensor(&y, yref), e_dx = ec_rel_tensor(&dx, dxref);
    float *dwf = malloc(sizeof(float) * nw);
    ASSERT(conv_grad_to_oihw(&l, e, dwf) == OTE_OK);
    double *dwd = ec_f2d(dwf, nw);
    double e_dw = ec_rel(dwd, dwref, nw, 1e-30);
    double *dbd = cs->bias ? ec_f2d(l.db.data, (size_t)q.oc) : NULL;
    double e_db = cs->bias ? ec_rel(dbd, dbref, (size_t)q.oc, 1e-30) : 0;
    EXPECT_ERR(e_y, TOL_NAIVE, "%s: forward vs naive", cs->name);
    EXPECT_ERR(ec_rel_tensor(&y_inf, yref), TOL_NAIVE, "%s: inference forward vs naive", cs->name);
    if (cs->src_nchw) {
        e_dx = 0;
    } else {
        EXPECT_ERR(e_dx, TOL_NAIVE, "%s: dx vs naive", cs->name);
    }
    EXPECT_ERR(e_dw, TOL_NAIVE, "%s: dW vs naive", cs->name);
    if (cs->bias) {
        EXPECT_ERR(e_db, TOL_NAIVE, "%s: db vs naive", cs->name);
    }

    /* Finite differences of the naive double forward. */
    double *dxd = ec_tensor_d(&dx);
    double f_dx = cs->src_nchw ? 0 : fd_err(g, &q, xd, wd, cs->bias ? bd : NULL, dyd, xd, nx, dxd);
    double f_dw = fd_err(g, &q, xd, wd, cs->bias ? bd : NULL, dyd, wd, nw, dwd);
    double f_db = cs->bias ? fd_err(g, &q, xd, wd, bd, dyd, bd, (size_t)q.oc, dbd) : 0;
    if (!cs->src_nchw) {
        EXPECT_ERR(f_dx, TOL_FD, "%s: dx vs finite differences", cs->name);
    }
    EXPECT_ERR(f_dw, TOL_FD, "%s: dW vs finite differences", cs->name);
    if (cs->bias) {
        EXPECT_ERR(f_db, TOL_FD, "%s: db vs finite differences", cs->name);
    }

    EXPECT(ec_pad_zero(&y) && ec_pad_zero(&y_inf), "%s: y channel padding is zero after forward", cs->name);
    if (!cs->src_nchw) EXPECT(ec_pad_zero(&dx), "%s: dx channel padding is zero after backward", cs->name);
    size_t nz_phys = ec_nonzero(l.dw.data, l.dw.bytes / sizeof(float)), nz_log = ec_nonzero(dwf, nw);
    EXPECT(nz_phys == nz_log, "%s: dW blocked padding is zero (%zu physical vs %zu logical non-zeros)", cs->name,
             nz_phys, nz_log);

    wo->fwd = maxd(wo->fwd, e_y), wo->dx = maxd(wo->dx, e_dx), wo->dw = maxd(wo->dw, e_dw);
    wo->db = maxd(wo->db, e_db), wo->fd_dx = maxd(wo->fd_dx, f_dx), wo->fd_dw = maxd(wo->fd_dw, f_dw);
    wo->fd_db = maxd(wo->fd_db, f_db);

    free(xf), free(wf), free(bf), free(dyf), free(wback), free(dwf);
    free(xd), free(wd), free(bd), free(dyd), free(yref), free(dxref), free(dwref), free(dbref);
    free(dwd), free(dbd), free(dxd);
    conv_plan_free(&p);
    conv_plan_free(&pinf);
    conv_layer_free(&l);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx), tensor_free(&y_inf);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* Two plans of different spatial sizes share one layer: backward(A, 0) then backward(B, 1) must give
 * grads(A) + grads(B). */
static void test_accumulate(eng_ctx *e, rng *g, int hb, int wb) {
    conv_cfg cfg = {.ic = 24, .oc = 35, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1, .pad_t = 1, .pad_l = 1,
                    .pad_b = 1, .pad_r = 1, .groups = 1, .bias = 1};
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    conv_layer l;
    ASSERT(conv_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    tensor xa, ya, dya, xb, yb, dyb;
    ASSERT(tensor_plan_act(e, &xa, 2, 24, 7, 9, &A) == OTE_OK && tensor_plan_act(e, &ya, 2, 35, 7, 9, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dya, 2, 35, 7, 9, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &xb, 2, 24, hb, wb, &A) == OTE_OK && tensor_plan_act(e, &yb, 2, 35, hb, wb, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dyb, 2, 35, hb, wb, &A) == OTE_OK);
    conv_plan pa, pb;
    ASSERT(conv_plan_init(&pa, e, &l, &xa, &ya, &dya, NULL, 1) == OTE_OK);
    ASSERT(conv_plan_init(&pb, e, &l, &xb, &yb, &dyb, NULL, 1) == OTE_OK);
    ASSERT(arena_commit(&P) == OTE_OK && arena_commit(&G) == OTE_OK && arena_commit(&A) == OTE_OK);
    size_t nw = 35 * 24 * 9, nwp = l.dw.bytes / sizeof(float);
    float *wf = ec_rand(g, nw, -1, 1);
    ASSERT(conv_weights_from_oihw(&l, e, wf) == OTE_OK);
    float *v;
    v = ec_rand(g, 2 * 24 * 63, -1, 1), tensor_from_nchw(&xa, v), free(v);
    v = ec_rand(g, 2 * 35 * 63, -1, 1), tensor_from_nchw(&dya, v), free(v);
    v = ec_rand(g, (size_t)2 * 24 * hb * wb, -1, 1), tensor_from_nchw(&xb, v), free(v);
    v = ec_rand(g, (size_t)2 * 35 * hb * wb, -1, 1), tensor_from_nchw(&dyb, v), free(v);

    float *ga = malloc(l.dw.bytes), *gb = malloc(l.dw.bytes), dba[35], dbb[35];
    ASSERT(conv_backward(&pa, e, 0) == OTE_OK);
    memcpy(ga, l.dw.data, l.dw.bytes), memcpy(dba, l.db.data, sizeof dba);
    ASSERT(conv_backward(&pb, e, 0) == OTE_OK);
    memcpy(gb, l.dw.data, l.dw.bytes), memcpy(dbb, l.db.data, sizeof dbb);
    /* Stale values in the grads must be overwritten by accumulate = 0. */
    for (size_t i = 0; i < nwp; i++) l.dw.data[i] = 1e3f;
    ASSERT(conv_backward(&pa, e, 0) == OTE_OK);
    ASSERT(conv_backward(&pb, e, 1) == OTE_OK);
    double *sum = malloc(sizeof(double) * nwp), *got = ec_f2d(l.dw.data, nwp), dsum[35], dgot[35];
    for (size_t i = 0; i < nwp; i++) sum[i] = (double)ga[i] + (double)gb[i];
    for (int i = 0; i < 35; i++) dsum[i] = (double)dba[i] + (double)dbb[i], dgot[i] = l.db.data[i];
    EXPECT_ERR(ec_rel(got, sum, nwp, 1e-30), TOL_ACC, "accumulate: dW(A,acc=0)+dW(B,acc=1) vs dW(A)+dW(B)");
    EXPECT_ERR(ec_rel(dgot, dsum, 35, 1e-30), TOL_ACC, "accumulate: db(A,acc=0)+db(B,acc=1) vs db(A)+db(B)");
    int differ = 0;
    for (size_t i = 0; i < nwp; i++) differ |= ga[i] != gb[i];
    EXPECT(differ, "accumulate: the two plans give different gradients (the check is not vacuous)");
    free(wf), free(ga), free(gb), free(sum), free(got);
    conv_plan_free(&pa), conv_plan_free(&pb), conv_layer_free(&l);
    tensor_free(&xa), tensor_free(&ya), tensor_free(&dya), tensor_free(&xb), tensor_free(&yb), tensor_free(&dyb);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* The backward-data copy of the weights follows l->w only through conv_refresh_weights(): an
 * optimiser-style in-place update (doubling every weight, padding stays zero) changes dx after the
 * refresh, and only then. */
static void test_refresh(eng_ctx *e, rng *g) {
    conv_cfg cfg = {.ic = 24, .oc = 35, .kh = 3, .kw = 3, .stride_h = 2, .stride_w = 2, .pad_t = 1, .pad_l = 1,
                    .pad_b = 1, .pad_r = 1, .groups = 1, .bias = 0};
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    conv_layer l;
    ASSERT(conv_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    tensor x, y, dy, dx;
    ASSERT(tensor_plan_act(e, &x, 2, 24, 7, 9, &A) == OTE_OK && tensor_plan_act(e, &y, 2, 35, 4, 5, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dy, 2, 35, 4, 5, &A) == OTE_OK && tensor_plan_act(e, &dx, 2, 24, 7, 9, &A) == OTE_OK);
    conv_plan p;
    ASSERT(conv_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1) == OTE_OK);
    ASSERT(arena_commit(&P) == OTE_OK && arena_commit(&G) == OTE_OK && arena_commit(&A) == OTE_OK);
    EXPECT(!l.wbd_alias, "refresh: dense conv keeps a separate backward-data weights copy");
    float *v = ec_rand(g, 35 * 24 * 9, -1, 1);
    ASSERT(conv_weights_from_oihw(&l, e, v) == OTE_OK);
    free(v);
    v = ec_rand(g, 2 * 24 * 63, -1, 1), tensor_from_nchw(&x, v), free(v);
    v = ec_rand(g, 2 * 35 * 20, -1, 1), tensor_from_nchw(&dy, v), free(v);
    size_t nx = tensor_numel(&x);
    ASSERT(conv_backward(&p, e, 0) == OTE_OK);
    double *d1 = ec_tensor_d(&dx);
    for (size_t i = 0; i < l.w.bytes / sizeof(float); i++) l.w.data[i] *= 2.0f;
    ASSERT(conv_backward(&p, e, 0) == OTE_OK);
    double *d2 = ec_tensor_d(&dx);
    EXPECT(ec_rel(d2, d1, nx, 1e-30) == 0, "refresh: without conv_refresh_weights dx still uses the old copy");
    ASSERT(conv_refresh_weights(&l, e) == OTE_OK);
    ASSERT(conv_backward(&p, e, 0) == OTE_OK);
    double *d3 = ec_tensor_d(&dx);
    for (size_t i = 0; i < nx; i++) d1[i] *= 2;
    EXPECT_ERR(ec_rel(d3, d1, nx, 1e-30), 1e-7, "refresh: after conv_refresh_weights dx doubles with the weights");
    free(d1), free(d2), free(d3);
    conv_plan_free(&p), conv_layer_free(&l);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* A plain nchw dst on a blocked src conv makes oneDNN 2.6 pick `ref:any` (onednn-notes App. C). */
static void test_refuse_ref(eng_ctx *e) {
    conv_cfg cfg = {.ic = 24, .oc = 5, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1, .pad_t = 1, .pad_l = 1,
                    .pad_b = 1, .pad_r = 1, .groups = 1, .bias = 1};
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    conv_layer l;
    ASSERT(conv_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    tensor x, y, dy, dx;
    ASSERT(tensor_plan_act(e, &x, 2, 24, 7, 9, &A) == OTE_OK);
    ASSERT(tensor_plan_plain(e, &y, TL_NCHW, 2, 5, 7, 9, &A) == OTE_OK);
    ASSERT(tensor_plan_plain(e, &dy, TL_NCHW, 2, 5, 7, 9, &A) == OTE_OK);
    ASSERT(tensor_plan_act(e, &dx, 2, 24, 7, 9, &A) == OTE_OK);
    conv_plan p;
    e->allow_ref = 0;
    int s = conv_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1);
    EXPECT(s == OTE_EDNNL, "refuse ref: nChw16c src + nchw dst -> OTE_EDNNL (got %d: %s)", s, ote_errmsg());
    EXPECT(strstr(ote_errmsg(), "ref") != NULL, "refuse ref: the message names the reference implementation");
    if (s == OTE_OK) conv_plan_free(&p);
    /* The same plan builds when ref: is allowed, so the refusal above was the ref: guard. */
    e->allow_ref = 1;
    s = conv_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1);
    EXPECT(s == OTE_OK, "refuse ref: same plan is accepted with allow_ref = 1 (%d)", s);
    if (s == OTE_OK) conv_plan_free(&p);
    e->allow_ref = 0;
    conv_layer_free(&l);
    /* IC = 5 with an nChw16c src has no JIT 3x3 kernel in 2.6: refused already at layer init. */
    conv_cfg c5 = {.ic = 5, .oc = 24, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1, .pad_t = 1, .pad_l = 1,
                   .pad_b = 1, .pad_r = 1, .groups = 1, .bias = 0};
    arena_reset(&P), arena_reset(&G);
    s = conv_layer_init(&l, e, &c5, &P, &G);
    EXPECT(s == OTE_EDNNL, "refuse ref: 5->24 3x3 on nChw16c -> OTE_EDNNL at layer init (got %d)", s);
    if (s == OTE_OK) conv_layer_free(&l);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* conv (no bias) -> eval BN -> act folded into one inference conv with fused post-ops. */
static void test_fold(eng_ctx *e, rng *g, int ic, int oc, int k, int groups, conv_post post, int sum) {
    const char *pn = post == CONV_POST_RELU6 ? "relu6" : post == CONV_POST_RELU ? "relu" : "none";
    conv_cfg cfg = {.ic = ic, .oc = oc, .kh = k, .kw = k, .stride_h = 1, .stride_w = 1, .pad_t = k / 2,
                    .pad_l = k / 2, .pad_b = k / 2, .pad_r = k / 2, .groups = groups, .bias = 0};
    conv_cfg icfg = cfg;
    icfg.bias = 1, icfg.post_eltwise = post, icfg.post_sum = sum;
    arena P, G, A;
    arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
    conv_layer l, li;
    ASSERT(conv_layer_init(&l, e, &cfg, &P, &G) == OTE_OK);
    int s = conv_layer_init(&li, e, &icfg, &P, NULL);
    if (!EXPECT(s == OTE_OK, "fold %dx%d g%d post %s sum %d: inference layer (%s)", k, k, groups, pn, sum,
                  s ? ote_errmsg() : "ok"))
        return;
    const int N = 2, H = 7, W = 9;
    tensor x, y;
    ASSERT(tensor_plan_act(e, &x, N, ic, H, W, &A) == OTE_OK && tensor_plan_act(e, &y, N, oc, H, W, &A) == OTE_OK);
    conv_plan p;
    s = conv_plan_init(&p, e, &li, &x, &y, NULL, NULL, 0);
    EXPECT(s == OTE_OK, "fold %dx%d g%d post %s sum %d: inference plan (%s)", k, k, groups, pn, sum,
             s ? ote_errmsg() : "ok");
    tensor dummy_dy;
    ASSERT(tensor_plan_act(e, &dummy_dy, N, oc, H, W, &A) == OTE_OK);
    conv_plan bad;
    int sb = conv_plan_init(&bad, e, &li, &x, &y, &dummy_dy, NULL, 1);
    EXPECT(sb == OTE_EINVAL, "fold: a training plan on a post-op layer is refused (%d)", sb);
    ASSERT(arena_commit(&P) == OTE_OK && arena_commit(&G) == OTE_OK && arena_commit(&A) == OTE_OK);
    if (s != OTE_OK) return;
    size_t nw = (size_t)oc * (ic / groups) * k * k, nx = (size_t)N * ic * H * W, ny = (size_t)N * oc * H * W;
    float *wf = ec_rand(g, nw, -1, 1), *xf = ec_rand(g, nx, -1, 1), *rf = ec_rand(g, ny, -3, 3);
    float *gam = ec_rand(g, (size_t)oc, 0.5, 1.5), *bet = ec_rand(g, (size_t)oc, -1, 1);
    float *mean = ec_rand(g, (size_t)oc, -1, 1), *var = ec_rand(g, (size_t)oc, 0.2, 3);
    ASSERT(conv_weights_from_oihw(&l, e, wf) == OTE_OK);
    ASSERT(conv_fold_bn(&li, e, &l, gam, bet, mean, var, 1e-5f) == OTE_OK);
    tensor_from_nchw(&x, xf);
    tensor_from_nchw(&y, rf); /* the residual for the sum post-op */
    ASSERT(conv_forward(&p, e) == OTE_OK);
    geo q = {N, ic, oc, H, W, H, W, k, k, 1, 1, k / 2, k / 2, groups};
    double *xd = ec_f2d(xf, nx), *wd = ec_f2d(wf, nw), *ref = malloc(sizeof(double) * ny);
    naive_fwd(&q, xd, wd, NULL, ref);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < oc; c++)
            for (int i = 0; i < H * W; i++) {
                size_t o = ((size_t)n * oc + c) * H * W + i;
                double v = (ref[o] - (double)mean[c]) / sqrt((double)var[c] + 1e-5) * (double)gam[c] + (double)bet[c];
                if (sum) v += (double)rf[o];
                if (post == CONV_POST_RELU) v = v > 0 ? v : 0;
                if (post == CONV_POST_RELU6) v = v < 0 ? 0 : v > 6 ? 6 : v;
                ref[o] = v;
            }
    EXPECT_ERR(ec_rel_tensor(&y, ref), TOL_FOLD, "fold %dx%d g%d post %s sum %d: vs naive conv->BN(eval)%s->act", k, k, groups, pn, sum,
             sum ? "->+res" : "");
    EXPECT(ec_pad_zero(&y), "fold: y channel padding is zero");
    free(wf), free(xf), free(rf), free(gam), free(bet), free(mean), free(var), free(xd), free(wd), free(ref);
    conv_plan_free(&p), conv_layer_free(&l), conv_layer_free(&li);
    tensor_free(&x), tensor_free(&y), tensor_free(&dummy_dy);
    arena_free(&P), arena_free(&G), arena_free(&A);
}

/* Every conv of the detector (pytorchcv MobileNetV2 w1, FPN, ATSS head; spec-detector §2-4) gets a
 * training plan at an HPO-sized and a full-sized input, with the weights layout fixed at layer init:
 * every pass must be a JIT kernel (no ref:, no gemm fallback). Plans only: nothing is committed. */
typedef struct netconv {
    int ic, oc, k, stride, groups, bias, src_nchw, down; /* down: input stride w.r.t. the image */
} netconv;

static void test_network_shapes(eng_ctx *e) {
    static const netconv L[] = {
        {3, 32, 3, 2, 1, 0, 1, 1},                                   /* init_block */
        {32, 32, 1, 1, 1, 0, 0, 2}, {32, 32, 3, 1, 32, 0, 0, 2}, {32, 16, 1, 1, 1, 0, 0, 2}, /* stage1 */
        {16, 96, 1, 1, 1, 0, 0, 2}, {96, 96, 3, 2, 96, 0, 0, 2}, {96, 24, 1, 1, 1, 0, 0, 4},
        {24, 144, 1, 1, 1, 0, 0, 4}, {144, 144, 3, 1, 144, 0, 0, 4}, {144, 24, 1, 1, 1, 0, 0, 4},
        {144, 144, 3, 2, 144, 0, 0, 4}, {144, 32, 1, 1, 1, 0, 0, 8},                          /* stage3 */
        {32, 192, 1, 1, 1, 0, 0, 8}, {192, 192, 3, 1, 192, 0, 0, 8}, {192, 32, 1, 1, 1, 0, 0, 8},
        {192, 192, 3, 2, 192, 0, 0, 8}, {192, 64, 1, 1, 1, 0, 0, 16},                         /* stage4 */
        {64, 384, 1, 1, 1, 0, 0, 16}, {384, 384, 3, 1, 384, 0, 0, 16}, {384, 64, 1, 1, 1, 0, 0, 16},
        {384, 96, 1, 1, 1, 0, 0, 16}, {96, 576, 1, 1, 1, 0, 0, 16}, {576, 576, 3, 1, 576, 0, 0, 16},
        {576, 96, 1, 1, 1, 0, 0, 16}, {576, 576, 3, 2, 576, 0, 0, 16}, {576, 160, 1, 1, 1, 0, 0, 32}, /* stage5 */
        {160, 960, 1, 1, 1, 0, 0, 32}, {960, 960, 3, 1, 960, 0, 0, 32}, {960, 160, 1, 1, 1, 0, 0, 32},
        {960, 320, 1, 1, 1, 0, 0, 32},
        {32, 64, 1, 1, 1, 1, 0, 8}, {96, 64, 1, 1, 1, 1, 0, 16}, {320, 64, 1, 1, 1, 1, 0, 32},  /* FPN lateral */
        {64, 64, 3, 1, 1, 1, 0, 8}, {64, 64, 3, 1, 1, 1, 0, 16}, {64, 64, 3, 1, 1, 1, 0, 32},   /* FPN output */
        {64, 64, 3, 2, 1, 1, 0, 32}, {64, 64, 3, 2, 1, 1, 0, 64},                               /* P6, P7 */
        {64, 64, 3, 1, 1, 0, 0, 8}, {64, 64, 3, 1, 1, 0, 0, 128},                               /* towers */
        {64, 3, 3, 1, 1, 1, 0, 8}, {64, 4, 3, 1, 1, 1, 0, 8}, {64, 1, 3, 1, 1, 1, 0, 128},      /* head outs */
    };
    static const int shapes[][3] = {{2, 320, 320}, {1, 736, 992}};
    int bad = 0, total = 0;
    long np0 = e->n_primitives;
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
        const netconv *c = &L[i];
        conv_cfg cfg = {.ic = c->ic, .oc = c->oc, .kh = c->k, .kw = c->k, .stride_h = c->stride, .stride_w = c->stride,
                        .pad_t = c->k / 2, .pad_l = c->k / 2, .pad_b = c->k / 2, .pad_r = c->k / 2,
                        .groups = c->groups, .bias = c->bias, .src_nchw = c->src_nchw};
        arena P, G, A;
        arena_init(&P, "params"), arena_init(&G, "grads"), arena_init(&A, "acts");
        conv_layer l;
        int s = conv_layer_init(&l, e, &cfg, &P, &G);
        if (s != OTE_OK) {
            bad++, total++;
            printf("  network conv %d->%d k%d s%d g%d: layer init: %s\n", c->ic, c->oc, c->k, c->stride, c->groups,
                   ote_errmsg());
            continue;
        }
        for (int j = 0; j < 2; j++) {
            int n = shapes[j][0], h = (shapes[j][1] + c->down - 1) / c->down, w = (shapes[j][2] + c->down - 1) / c->down;
            int oh = conv_out_size(h, c->k, c->stride, c->k / 2, c->k / 2);
            int ow = conv_out_size(w, c->k, c->stride, c->k / 2, c->k / 2);
            tensor x, y, dy, dx;
            if (c->src_nchw)
                ASSERT(tensor_plan_plain(e, &x, TL_NCHW, n, c->ic, h, w, &A) == OTE_OK);
            else
                ASSERT(tensor_plan_act(e, &x, n, c->ic, h, w, &A) == OTE_OK);
            ASSERT(tensor_plan_act(e, &y, n, c->oc, oh, ow, &A) == OTE_OK);
            ASSERT(tensor_plan_act(e, &dy, n, c->oc, oh, ow, &A) == OTE_OK);
            ASSERT(tensor_plan_act(e, &dx, n, c->ic, h, w, &A) == OTE_OK);
            conv_plan p;
            total++;
            s = conv_plan_init(&p, e, &l, &x, &y, &dy, c->src_nchw ? NULL : &dx, 1);
            if (s != OTE_OK) {
                bad++;
                printf("  network conv %d->%d k%d s%d g%d at %dx%d: %s\n", c->ic, c->oc, c->k, c->stride, c->groups, h,
                       w, ote_errmsg());
            } else {
                const_dnnl_primitive_desc_t pds[3] = {p.fwd_pd, p.bwd_data_pd, p.bwd_w_pd};
                for (int k = 0; k < 3; k++) {
                    const char *impl = NULL;
                    if (!pds[k]) continue;
                    dnnl_primitive_desc_query(pds[k], dnnl_query_impl_info_str, 0, &impl);
                    if (!impl || !strstr(impl, "jit")) {
                        bad++;
                        printf("  network conv %d->%d k%d s%d g%d at %dx%d pass %d: non-JIT kernel %s\n", c->ic, c->oc,
                               c->k, c->stride, c->groups, h, w, k, impl ? impl : "?");
                    }
                }
                conv_plan_free(&p);
            }
            tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx);
        }
        conv_layer_free(&l);
        arena_free(&P), arena_free(&G), arena_free(&A);
    }
    EXPECT(bad == 0, "network shapes: %d conv plans (MobileNetV2 + FPN + head at 2x320x320 and 1x736x992) all JIT, "
             "%d problems (%ld primitives created)", total, bad, e->n_primitives - np0);
}

int main(void) {
    eng_ctx e;
    if (eng_init(&e, 0) != OTE_OK) {
        fprintf(stderr, "eng_init: %s\n", ote_errmsg());
        return 1;
    }
    rng g;
    rng_seed(&g, 20261129);
    static const ccase cases[] = {
        /* name                          n  ic  oc  h   w  k  s  pt pl pb pr  g  bias */
        {"dense 3->24 k3 s2 p1 bias nchw-src", 2, 3, 24, 13, 11, 3, 2, 1, 1, 1, 1, 1, 1, 1},
        {"dense 5->35 k1 s1 nobias", 2, 5, 35, 7, 9, 1, 1, 0, 0, 0, 0, 1, 0, 0},
        {"dense 24->5 k3 s1 p1 bias", 3, 24, 5, 7, 9, 3, 1, 1, 1, 1, 1, 1, 1, 0},
        {"dense 35->24 k3 s2 SAME(0,0,1,1) bias", 2, 35, 24, 13, 11, 3, 2, 0, 0, 1, 1, 1, 1, 0},
        {"dense 24->24 k1 s2 nobias", 2, 24, 24, 7, 9, 1, 2, 0, 0, 0, 0, 1, 0, 0},
        {"dense 24->35 k3 s1 asym(1,0,0,2) nobias", 2, 24, 35, 7, 9, 3, 1, 1, 0, 0, 2, 1, 0, 0},
        {"grouped 32->64 g2 k3 s1 p1 bias", 2, 32, 64, 7, 9, 3, 1, 1, 1, 1, 1, 2, 1, 0},
        {"grouped 48->48 g3 k1 s2 nobias", 2, 48, 48, 13, 11, 1, 2, 0, 0, 0, 0, 3, 0, 0},
        {"depthwise 24 k3 s2 SAME(0,0,1,1) nobias", 2, 24, 24, 13, 11, 3, 2, 0, 0, 1, 1, 24, 0, 0},
        {"depthwise 35 k3 s1 p1 bias", 2, 35, 35, 7, 9, 3, 1, 1, 1, 1, 1, 35, 1, 0},
        {"depthwise 5 k3 s2 p1 nobias", 3, 5, 5, 13, 11, 3, 2, 1, 1, 1, 1, 5, 0, 0},
        /* maps smaller than the kernel (P6/P7 of small inputs; on AVX2 dW takes the direct path) */
        {"dense 24->35 k3 s1 p1 bias on 2x3", 3, 24, 35, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},
        {"dense 35->24 k3 s2 p1 nobias on 2x2", 2, 35, 24, 2, 2, 3, 2, 1, 1, 1, 1, 1, 0, 0},
        {"dense 24->24 k3 s1 p1 bias on 1x1", 2, 24, 24, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 0},
        {"depthwise 24 k3 s1 p1 bias on 1x2", 2, 24, 24, 1, 2, 3, 1, 1, 1, 1, 1, 24, 1, 0},
    };
    worst wo = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&e, &g, &cases[i], &wo);
    expect_case("accumulate 13x11");
    test_accumulate(&e, &g, 13, 11);
    expect_case("accumulate 2x3");
    test_accumulate(&e, &g, 2, 3); /* map smaller than the kernel: the direct dW path on AVX2 */
    expect_case("refresh");
    test_refresh(&e, &g);
    expect_case("refuse ref");
    test_refuse_ref(&e);
    expect_case("network shapes");
    test_network_shapes(&e);
    expect_case("fold");
    test_fold(&e, &g, 24, 35, 3, 1, CONV_POST_RELU6, 0);
    test_fold(&e, &g, 35, 35, 3, 35, CONV_POST_RELU6, 0);
    test_fold(&e, &g, 24, 24, 1, 1, CONV_POST_NONE, 1);
    test_fold(&e, &g, 24, 24, 1, 1, CONV_POST_RELU, 1);
    printf("conv: largest error vs naive: fwd %.2e dx %.2e dW %.2e db %.2e; vs finite differences: dx %.2e dW %.2e "
           "db %.2e\n",
           wo.fwd, wo.dx, wo.dw, wo.db, wo.fd_dx, wo.fd_dw, wo.fd_db);
    eng_free(&e);
    return expect_finish();
}
