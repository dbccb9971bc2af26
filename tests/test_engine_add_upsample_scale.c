/* test_engine_add_upsample_scale.c - engine/add.c, engine/upsample.c and engine/scale.c against
 * naive double-precision NCHW references and central finite differences (in double, of the naive
 * forward), on small shapes with C not a multiple of 16, batch > 1 and odd spatial sizes. Also:
 * padding stays zero, in-place variants, accumulate flags, and rejection of non-2x upsampling.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/add.h"
#include "engine/eng.h"
#include "engine/rng.h"
#include "engine/scale.h"
#include "engine/ote.h"
#include "engine/upsample.h"
#include "tests/act_check.h"
#include "tests/expect.h"

typedef struct shape {
    int n, c, h, w;
} shape;

static size_t numel(shape s) { return (size_t)s.n * s.c * s.h * s.w; }

/* ---- naive references (plain NCHW, double) ---- */

static void ref_up(shape s, const double *x, double *y) { /* y is (n, c, 2h, 2w) */
    for (int n = 0; n < s.n; n++)
        for (int c = 0; c < s.c; c++)
            for (int oh = 0; oh < 2 * s.h; oh++)
                for (int ow = 0; ow < 2 * s.w; ow++)
                    y[(((size_t)n * s.c + c) * 2 * s.h + oh) * 2 * s.w + ow] =
                        x[(((size_t)n * s.c + c) * s.h + oh / 2) * s.w + ow / 2];
}

static void ref_up_bwd(shape s, const double *dy, double *dx) {
    for (size_t i = 0; i < numel(s); i++) dx[i] = 0;
    for (int n = 0; n < s.n; n++)
        for (int c = 0; c < s.c; c++)
            for (int oh = 0; oh < 2 * s.h; oh++)
                for (int ow = 0; ow < 2 * s.w; ow++)
                    dx[(((size_t)n * s.c + c) * s.h + oh / 2) * s.w + ow / 2] +=
                        dy[(((size_t)n * s.c + c) * 2 * s.h + oh) * 2 * s.w + ow];
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- add ---- */
static void test_add(eng_ctx *e, shape s, uint64_t seed) {
    char nm[64];
    snprintf(nm, sizeof nm, "add N=%d C=%d %dx%d", s.n, s.c, s.h, s.w);
    expect_case(nm);
    rng g;
    rng_seed(&g, seed);
    arena act;
    arena_init(&act, "act");
    tensor a, b, y, a2, t;
    ASSERT(tensor_plan_act(e, &a, s.n, s.c, s.h, s.w, &act) == 0 && tensor_plan_act(e, &b, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &y, s.n, s.c, s.h, s.w, &act) == 0 && tensor_plan_act(e, &a2, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &t, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(arena_commit(&act) == 0);
    ac_fill(&g, &a, 1.0, 0.0);
    ac_fill(&g, &b, 3.0, 1.0);
    memcpy(a2.data, a.data, a.bytes);
    add_plan p, pi;
    ASSERT(add_plan_init(&p, e, &a, &b, &y) == 0);
    ASSERT(add_plan_init(&pi, e, &a2, &b, &a2) == 0); /* in place: a2 <- a2 + b */
    ASSERT(add_forward(&p, e) == 0 && add_forward(&pi, e) == 0);
    size_t n = numel(s);
    double *ad = ac_to_d(&a), *bd = ac_to_d(&b), *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++) ref[i] = ad[i] + bd[i];
    double ey = ac_tensor_rel(&y, ref), ei = ac_tensor_rel(&a2, ref);
    /* float a + b is the correctly rounded double sum: error <= 2^-24 relative per element. */
    EXPECT_ERR(ey, 1.2e-7, "%s: forward vs naive double, rel err", nm);
    EXPECT_ERR(ei, 1.2e-7, "%s: forward in place vs naive double, rel err", nm);
    EXPECT(ac_pad_zero(&y) && ac_pad_zero(&a2), "%s: forward padding zero", nm);

    /* Backward is the identity into both inputs (alias or add_copy); FD of L = sum(w*(a+b)) in
     * double w.r.t. a and b must equal w, which add_copy reproduces bit for bit. */
    ac_fill(&g, &y, 1.0, 0.0); /* y now plays dy = w */
    add_copy(&t, &y);
    double *wd = ac_to_d(&y), *td = ac_to_d(&t);
    double num = 0, den = 1e-30, hstep = 1e-3;
    for (size_t i = 0; i < n; i += n / 31 + 1) {
        double save = ad[i];
        ad[i] = save + hstep;
        double lp = 0, lm = 0;
        for (size_t j = 0; j < n; j++) ref[j] = ad[j] + bd[j];
        lp = dot(wd, ref, n);
        ad[i] = save - hstep;
        for (size_t j = 0; j < n; j++) ref[j] = ad[j] + bd[j];
        lm = dot(wd, ref, n);
        ad[i] = save;
        double fd = (lp - lm) / (2 * hstep);
        if (fabs(td[i] - fd) > num) num = fabs(td[i] - fd);
        if (fabs(fd) > den) den = fabs(fd);
    }
    EXPECT_ERR(num / den, 1e-8, "add backward (add_copy of dy) vs central FD in double, rel err");
    EXPECT(memcmp(t.data, y.data, y.bytes) == 0, "add backward: add_copy reproduces dy bit for bit");

    /* Fan-out: add_accumulate(dst, src) = dst + src. */
    memcpy(t.data, a.data, a.bytes);
    add_accumulate(&t, &b);
    for (size_t i = 0; i < n; i++) ref[i] = ad[i] + bd[i];
    double ea = ac_tensor_rel(&t, ref);
    EXPECT_ERR(ea, 1.2e-7, "add_accumulate vs naive double, rel err");
    EXPECT(ac_pad_zero(&t), "add_accumulate: padding zero");

    free(ad), free(bd), free(ref), free(wd), free(td);
    add_plan_free(&p), add_plan_free(&pi);
    tensor_free(&a), tensor_free(&b), tensor_free(&y), tensor_free(&a2), tensor_free(&t);
    arena_free(&act);
}

/* ---- upsample ---- */
static void test_upsample(eng_ctx *e, shape s, uint64_t seed) {
    char nm[64];
    snprintf(nm, sizeof nm, "upsample N=%d C=%d %dx%d->%dx%d", s.n, s.c, s.h, s.w, 2 * s.h, 2 * s.w);
    expect_case(nm);
    rng g;
    rng_seed(&g, seed);
    arena act;
    arena_init(&act, "act");
    tensor x, y, dy, dx, y2;
    ASSERT(tensor_plan_act(e, &x, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &y, s.n, s.c, 2 * s.h, 2 * s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &y2, s.n, s.c, 2 * s.h, 2 * s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &dy, s.n, s.c, 2 * s.h, 2 * s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &dx, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(arena_commit(&act) == 0);
    ac_fill(&g, &x, 1.0, 0.0);
    ac_fill(&g, &dy, 1.0, 0.0);
    ac_fill(&g, &y2, 1.0, 0.0);
    upsample_plan p;
    ASSERT(upsample_plan_init(&p, e, &x, &y, &dy, &dx, 1) == 0);
    ASSERT(upsample_forward(&p, e) == 0);
    size_t nx = numel(s), ny = 4 * nx;
    double *xd = ac_to_d(&x), *dyd = ac_to_d(&dy), *y2d = ac_to_d(&y2);
    double *yr = malloc(ny * sizeof *yr), *dxr = malloc(nx * sizeof *dxr);
    ref_up(s, xd, yr);
    double ey = ac_tensor_rel(&y, yr);
    EXPECT_ERR(ey, 0, "%s: forward vs naive, rel err (a copy: exact)", nm);
    EXPECT(ac_pad_zero(&y), "%s: forward padding zero", nm);

    /* forward-add: y2 += up(x) */
    upsample_plan pa;
    ASSERT(upsample_plan_init(&pa, e, &x, &y2, NULL, NULL, 0) == 0);
    ASSERT(upsample_forward_add(&pa, e) == 0);
    for (size_t i = 0; i < ny; i++) yr[i] += y2d[i];
    double ea = ac_tensor_rel(&y2, yr);
    EXPECT_ERR(ea, 1.2e-7, "upsample forward_add (y += up(x)) vs naive double, rel err");
    EXPECT(ac_pad_zero(&y2), "upsample forward_add: padding zero");

    ASSERT(upsample_backward(&p, e, 0) == 0);
    ref_up_bwd(s, dyd, dxr);
    double edx = ac_tensor_rel(&dx, dxr);
    /* 4-term float sums vs double: <= 3 roundings of values up to 4*max|dy|: 5e-7 relative. */
    EXPECT_ERR(edx, 5e-7, "upsample backward (2x2 block sum) vs naive double, rel err");
    EXPECT(ac_pad_zero(&dx), "upsample backward: padding zero");

    /* FD of L = sum(dy * up(x)) w.r.t. x in double. */
    double *dxk = ac_to_d(&dx), num = 0, den = 1e-30, h = 1e-3;
    for (size_t i = 0; i < nx; i += nx / 37 + 1) {
        double save = xd[i];
        xd[i] = save + h;
        ref_up(s, xd, yr);
        double lp = dot(dyd, yr, ny);
        xd[i] = save - h;
        ref_up(s, xd, yr);
        double lm = dot(dyd, yr, ny);
        xd[i] = save;
        double fd = (lp - lm) / (2 * h);
        if (fabs(dxk[i] - fd) > num) num = fabs(dxk[i] - fd);
        if (fabs(fd) > den) den = fabs(fd);
    }
    EXPECT_ERR(num / den, 1e-6, "upsample backward vs central FD in double, rel err");

    /* accumulate: dx += blocksum(dy) doubles it */
    ASSERT(upsample_backward(&p, e, 1) == 0);
    for (size_t i = 0; i < nx; i++) dxr[i] *= 2;
    double eacc = ac_tensor_rel(&dx, dxr);
    EXPECT_ERR(eacc, 5e-7, "upsample backward accumulate (dx += ...) vs 2x naive, rel err");

    free(xd), free(dyd), free(y2d), free(yr), free(dxr), free(dxk);
    upsample_plan_free(&p), upsample_plan_free(&pa);
    /* non-2x is rejected */
    tensor bad;
    ASSERT(tensor_plan_act(e, &bad, s.n, s.c, 2 * s.h + 1, 2 * s.w, NULL) == 0);
    upsample_plan pb;
    int st = upsample_plan_init(&pb, e, &x, &bad, NULL, NULL, 0);
    EXPECT(st == OTE_EINVAL, "upsample to %dx%d (not exact 2x) rejected: \"%s\"", 2 * s.h + 1, 2 * s.w, ote_errmsg());
    tensor_free(&bad);
    tensor_free(&x), tensor_free(&y), tensor_free(&y2), tensor_free(&dy), tensor_free(&dx);
    arena_free(&act);
}

/* ---- scale ---- */
static void test_scale(eng_ctx *e, shape s, uint64_t seed) {
    char nm[64];
    snprintf(nm, sizeof nm, "scale N=%d C=%d %dx%d", s.n, s.c, s.h, s.w);
    expect_case(nm);
    rng g;
    rng_seed(&g, seed);
    arena params, grads, act;
    arena_init(&params, "params"), arena_init(&grads, "grads"), arena_init(&act, "act");
    scale_layer l;
    ASSERT(scale_layer_init(&l, e, &params, &grads) == 0);
    tensor x, y, dy, dx, dy2;
    ASSERT(tensor_plan_act(e, &x, s.n, s.c, s.h, s.w, &act) == 0 && tensor_plan_act(e, &y, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &dy, s.n, s.c, s.h, s.w, &act) == 0 && tensor_plan_act(e, &dx, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(tensor_plan_act(e, &dy2, s.n, s.c, s.h, s.w, &act) == 0);
    ASSERT(arena_commit(&params) == 0 && arena_commit(&grads) == 0 && arena_commit(&act) == 0);
    scale_layer_reset_params(&l, 1.0f);
    EXPECT(l.s.data[0] == 1.0f, "scale initialised to 1.0 (mmdet Scale)");
    l.s.data[0] = 0.75f;
    ac_fill(&g, &x, 2.0, 0.5);
    ac_fill(&g, &dy, 1.0, 0.0);
    ac_poison_pad(&y, 5.0f);
    ac_poison_pad(&dx, 5.0f);
    scale_plan p;
    ASSERT(scale_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1) == 0);
    ASSERT(scale_forward(&p, e) == 0 && scale_backward(&p, e, 0) == 0);
    size_t n = numel(s);
    double sv = l.s.data[0];
    double *xd = ac_to_d(&x), *dyd = ac_to_d(&dy), *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++) ref[i] = sv * xd[i];
    double ey = ac_tensor_rel(&y, ref);
    for (size_t i = 0; i < n; i++) ref[i] = sv * dyd[i];
    double edx = ac_tensor_rel(&dx, ref);
    double dsr = dot(dyd, xd, n), eds = fabs((double)l.ds.data[0] - dsr) / fmax(fabs(dsr), 1e-30);
    /* Products are correctly rounded (1.2e-7). ds: float runs of 32 products then double; the
     * relative error is bounded by ~32 ulps of sum|dy*x| / |sum dy*x|, so use sum|dy*x| as the scale. */
    double absum = 0;
    for (size_t i = 0; i < n; i++) absum += fabs(dyd[i] * xd[i]);
    double eds_abs = fabs((double)l.ds.data[0] - dsr) / absum;
    EXPECT_ERR(ey, 1.2e-7, "%s: y vs naive double, rel err", nm);
    EXPECT_ERR(edx, 1.2e-7, "%s: dx vs naive double, rel err", nm);
    EXPECT(ac_pad_zero(&y) && ac_pad_zero(&dx), "%s: y and dx padding zero", nm);
    EXPECT_ERR(eds_abs, 4e-6, "scale ds vs naive double: err relative to sum|dy*x| (%.3g relative to |ds|)", eds);

    /* FD in double of L = sum(dy * s * x): w.r.t. s and a subset of x. */
    double h = 1e-4;
    double fds = (dot(dyd, xd, n) * (sv + h) - dot(dyd, xd, n) * (sv - h)) / (2 * h);
    double efs = fabs((double)l.ds.data[0] - fds) / absum;
    double num = 0, den = 1e-30;
    double *dxk = ac_to_d(&dx);
    for (size_t i = 0; i < n; i += n / 29 + 1) {
        double save = xd[i], lp, lm;
        xd[i] = save + h;
        lp = sv * dot(dyd, xd, n);
        xd[i] = save - h;
        lm = sv * dot(dyd, xd, n);
        xd[i] = save;
        double fd = (lp - lm) / (2 * h);
        if (fabs(dxk[i] - fd) > num) num = fabs(dxk[i] - fd);
        if (fabs(fd) > den) den = fabs(fd);
    }
    EXPECT_ERR(efs, 4e-6, "scale ds vs central FD in double, err relative to sum|dy*x|");
    EXPECT_ERR(num / den, 1e-6, "scale dx vs central FD in double, rel err");

    /* accumulate and in place (dx aliases dy) */
    memcpy(dy2.data, dy.data, dy.bytes);
    scale_plan pi;
    ASSERT(scale_plan_init(&pi, e, &l, &x, &y, &dy2, &dy2, 1) == 0);
    float ds1 = l.ds.data[0];
    ASSERT(scale_backward(&pi, e, 1) == 0);
    EXPECT(l.ds.data[0] == 2 * ds1 && memcmp(dy2.data, dx.data, dx.bytes) == 0,
             "scale backward accumulate doubles ds (%g -> %g); in-place dx == out-of-place", (double)ds1, (double)l.ds.data[0]);

    free(xd), free(dyd), free(ref), free(dxk);
    scale_plan_free(&p), scale_plan_free(&pi);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx), tensor_free(&dy2);
    scale_layer_free(&l);
    arena_free(&params), arena_free(&grads), arena_free(&act);
}

int main(void) {
    eng_ctx e;
    if (eng_init(&e, 0) < 0) {
        fprintf(stderr, "eng_init: %s\n", ote_errmsg());
        return 1;
    }
    const shape shapes[] = {{2, 6, 5, 7}, {3, 20, 4, 9}, {2, 64, 7, 5}, {2, 4, 9, 11}};
    for (int i = 0; i < 4; i++) {
        test_add(&e, shapes[i], 10 + i);
        test_upsample(&e, shapes[i], 20 + i);
        test_scale(&e, shapes[i], 30 + i);
    }
    eng_free(&e);
    return expect_finish();
}
