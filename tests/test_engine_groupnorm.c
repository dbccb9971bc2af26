/* test_engine_groupnorm.c - engine/gn.c against (1) a naive double-precision NCHW
 * reference, (2) central finite differences of that reference in double, and (3) torch.nn.GroupNorm
 * fixtures (tests/reference/gn_ref.py). Also checks zero padding of y/dx for C % 16 != 0, in-place
 * backward (dx aliases dy), numerics with |mean| >> std, and dgamma/dbeta accumulation when one
 * layer is shared by two plans of different shapes (as the head shares GN across FPN levels).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/gn.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "tests/act_check.h"
#include "tests/expect.h"
#include "tests/fixture.h"

/* ---- naive double reference (plain NCHW) ---- */

static void ref_fwd(int N, int C, int G, int HW, const double *x, const double *ga, const double *be, double eps,
                    double *y) {
    int cpg = C / G;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const double *xg = x + ((size_t)n * C + (size_t)g * cpg) * HW;
            size_t m = (size_t)cpg * HW;
            double mu = 0, var = 0;
            for (size_t i = 0; i < m; i++) mu += xg[i];
            mu /= m;
            for (size_t i = 0; i < m; i++) var += (xg[i] - mu) * (xg[i] - mu);
            var /= m;
            double rs = 1.0 / sqrt(var + eps);
            for (int c = g * cpg; c < (g + 1) * cpg; c++)
                for (int i = 0; i < HW; i++) {
                    size_t o = ((size_t)n * C + c) * HW + i;
                    y[o] = ga[c] * (x[o] - mu) * rs + be[c];
                }
        }
}

static void ref_bwd(int N, int C, int G, int HW, const double *x, const double *ga, double eps, const double *dy,
                    double *dx, double *dga, double *dbe) {
    int cpg = C / G;
    for (int c = 0; c < C; c++) dga[c] = dbe[c] = 0;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            size_t m = (size_t)cpg * HW, base = ((size_t)n * C + (size_t)g * cpg) * HW;
            double mu = 0, var = 0;
            for (size_t i = 0; i < m; i++) mu += x[base + i];
            mu /= m;
            for (size_t i = 0; i < m; i++) var += (x[base + i] - mu) * (x[base + i] - mu);
            var /= m;
            double rs = 1.0 / sqrt(var + eps), m1 = 0, m2 = 0;
            for (size_t i = 0; i < m; i++) {
                int c = g * cpg + (int)(i / HW);
                double xh = (x[base + i] - mu) * rs, gh = dy[base + i] * ga[c];
                m1 += gh;
                m2 += gh * xh;
                dga[c] += dy[base + i] * xh;
                dbe[c] += dy[base + i];
            }
            m1 /= m, m2 /= m;
            for (size_t i = 0; i < m; i++) {
                int c = g * cpg + (int)(i / HW);
                double xh = (x[base + i] - mu) * rs;
                if (dx) dx[base + i] = rs * (dy[base + i] * ga[c] - m1 - xh * m2);
            }
        }
}

/* L = sum(w * y) in double. */
static double ref_loss(int N, int C, int G, int HW, const double *x, const double *ga, const double *be,
                       double eps, const double *w, double *ybuf) {
    ref_fwd(N, C, G, HW, x, ga, be, eps, ybuf);
    double s = 0;
    for (size_t i = 0; i < (size_t)N * C * HW; i++) s += w[i] * ybuf[i];
    return s;
}

typedef struct gn_case {
    int n, c, g, h, w;
    double xscale, xoffset;
} gn_case;

static double *vec_d(const float *f, int n) {
    double *d = malloc((size_t)n * sizeof *d);
    for (int i = 0; i < n; i++) d[i] = f[i];
    return d;
}

/* Forward/backward vs naive, FD, padding, in place. Returns the largest errors through pointers. */
static void run_case(eng_ctx *e, const gn_case *k, uint64_t seed) {
    rng g;
    rng_seed(&g, seed);
    arena params, grads, act;
    arena_init(&params, "params");
    arena_init(&grads, "grads");
    arena_init(&act, "act");
    gn_layer l;
    gn_cfg cfg = {k->c, k->g, 0};
    ASSERT(gn_layer_init(&l, e, &cfg, &params, &grads) == 0);
    tensor x, y, dy, dx, dy2;
    ASSERT(tensor_plan_act(e, &x, k->n, k->c, k->h, k->w, &act) == 0);
    ASSERT(tensor_plan_act(e, &y, k->n, k->c, k->h, k->w, &act) == 0);
    ASSERT(tensor_plan_act(e, &dy, k->n, k->c, k->h, k->w, &act) == 0);
    ASSERT(tensor_plan_act(e, &dx, k->n, k->c, k->h, k->w, &act) == 0);
    ASSERT(tensor_plan_act(e, &dy2, k->n, k->c, k->h, k->w, &act) == 0);
    tensor yr6; /* output of the plan with the fused ReLU */
    ASSERT(tensor_plan_act(e, &yr6, k->n, k->c, k->h, k->w, &act) == 0);
    ASSERT(arena_commit(&params) == 0 && arena_commit(&grads) == 0 && arena_commit(&act) == 0);
    for (int c = 0; c < k->c; c++) {
        l.gamma.data[c] = (float)(1.0 + 0.5 * rng_normal(&g));
        l.beta.data[c] = (float)(0.5 * rng_normal(&g));
    }
    ac_fill(&g, &x, k->xscale, k->xoffset);
    ac_fill(&g, &dy, 1.0, 0.0);
    ac_poison_pad(&y, 7.0f); /* the kernel must rewrite the padding of its outputs to zero */
    ac_poison_pad(&dx, 7.0f);

    gn_plan p;
    ASSERT(gn_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1) == 0);
    ASSERT(gn_forward(&p, e) == 0);
    ASSERT(gn_backward(&p, e, 0) == 0);

    int N = k->n, C = k->c, G = k->g, HW = k->h * k->w;
    size_t tot = (size_t)N * C * HW;
    double *xd = ac_to_d(&x), *dyd = ac_to_d(&dy);
    double *ga = vec_d(l.gamma.data, C), *be = vec_d(l.beta.data, C);
    double *yr = malloc(tot * sizeof *yr), *dxr = malloc(tot * sizeof *dxr);
    double *dgr = malloc((size_t)C * sizeof *dgr), *dbr = malloc((size_t)C * sizeof *dbr);
    ref_fwd(N, C, G, HW, xd, ga, be, 1e-5, yr);
    ref_bwd(N, C, G, HW, xd, ga, 1e-5, dyd, dxr, dgr, dbr);
    double *dgk = vec_d(l.dgamma.data, C), *dbk = vec_d(l.dbeta.data, C);

    char name[96];
    snprintf(name, sizeof name, "N=%d C=%d G=%d H=%d W=%d x~%g+%gN", N, C, G, k->h, k->w, k->xoffset, k->xscale);
    expect_case(name);
    /* Tolerances: float32 kernels vs double reference, errors relative to the largest reference
     * magnitude. y/dx: 2e-5 (a few ulps of O(1) values), also for |mean|/std = 1000, which the shifted
     * sums and centred apply must survive. dgamma/dbeta sum N*H*W terms in double after float runs
     * of 32: 1e-5. */
    int offset_case = k->xoffset != 0;
    double tol_y = 2e-5, tol_dx = 2e-5;
    double ey = ac_tensor_rel(&y, yr), edx = ac_tensor_rel(&dx, dxr);
    double edg = ac_rel(dgk, dgr, (size_t)C, 1e-30), edb = ac_rel(dbk, dbr, (size_t)C, 1e-30);
    EXPECT_ERR(ey, tol_y, "%s: forward y vs naive double, max rel err", name);
    EXPECT_ERR(edx, tol_dx, "%s: backward dx vs naive double, max rel err", name);
    EXPECT_ERR(edg, 1e-5, "%s: backward dgamma vs naive double, max rel err", name);
    EXPECT_ERR(edb, 1e-5, "%s: backward dbeta vs naive double, max rel err", name);
    EXPECT(ac_pad_zero(&y) && ac_pad_zero(&dx), "%s: padded lanes of y and dx are zero", name);

    /* Fused ReLU: exactly max(y, 0) of the unfused plan, element for element (same coefficients,
     * same arithmetic), padded lanes zero. */
    {
        gn_plan pr;
        ac_poison_pad(&yr6, 7.0f);
        ASSERT(gn_plan_init(&pr, e, &l, &x, &yr6, NULL, NULL, 0) == 0);
        gn_plan_fuse_relu(&pr, 1);
        ASSERT(gn_forward(&pr, e) == 0);
        size_t bad = 0, npos = 0;
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < HW; i++) {
                    size_t o = blk_off(C, k->h, k->w, y.blk, n, c, i / k->w, i % k->w);
                    float want = y.data[o] > 0.0f ? y.data[o] : 0.0f;
                    bad += memcmp(&yr6.data[o], &want, sizeof want) != 0;
                    npos += y.data[o] > 0.0f;
                }
        EXPECT(bad == 0 && ac_pad_zero(&yr6) && npos > 0 && npos < tot,
                 "%s: fused ReLU forward == max(unfused y, 0) bit for bit (%zu mismatches, %zu of %zu positive), "
                 "padding zero", name, bad, npos, tot);
        gn_plan_free(&pr);
    }

    /* Central finite differences of L = sum(dy * y) in double, h = 1e-4 (truncation error ~h^2):
     * checks the kernel's dx (a strided subset of elements), dgamma and dbeta (all). */
    if (!offset_case) {
        double *xp = malloc(tot * sizeof *xp), *ybuf = malloc(tot * sizeof *ybuf);
        double *gp = malloc((size_t)C * sizeof *gp), *bp = malloc((size_t)C * sizeof *bp);
        memcpy(xp, xd, tot * sizeof *xp);
        memcpy(gp, ga, (size_t)C * sizeof *gp);
        memcpy(bp, be, (size_t)C * sizeof *bp);
        const double h = 1e-4;
        double *dxk = ac_to_d(&dx);
        double num = 0, den = 1e-30;
        size_t step = tot / 97 + 1;
        for (size_t i = 0; i < tot; i += step) {
            xp[i] = xd[i] + h;
            double lp = ref_loss(N, C, G, HW, xp, ga, be, 1e-5, dyd, ybuf);
            xp[i] = xd[i] - h;
            double lm = ref_loss(N, C, G, HW, xp, ga, be, 1e-5, dyd, ybuf);
            xp[i] = xd[i];
            double fd = (lp - lm) / (2 * h);
            if (fabs(dxk[i] - fd) > num) num = fabs(dxk[i] - fd);
            if (fabs(fd) > den) den = fabs(fd);
        }
        double efx = num / den;
        double ng = 0, nb = 0, dgm = 1e-30, dbm = 1e-30;
        for (int c = 0; c < C; c++) {
            gp[c] = ga[c] + h;
            double lp = ref_loss(N, C, G, HW, xd, gp, be, 1e-5, dyd, ybuf);
            gp[c] = ga[c] - h;
            double lm = ref_loss(N, C, G, HW, xd, gp, be, 1e-5, dyd, ybuf);
            gp[c] = ga[c];
            double fd = (lp - lm) / (2 * h);
            if (fabs(dgk[c] - fd) > ng) ng = fabs(dgk[c] - fd);
            if (fabs(fd) > dgm) dgm = fabs(fd);
            bp[c] = be[c] + h;
            lp = ref_loss(N, C, G, HW, xd, ga, bp, 1e-5, dyd, ybuf);
            bp[c] = be[c] - h;
            lm = ref_loss(N, C, G, HW, xd, ga, bp, 1e-5, dyd, ybuf);
            bp[c] = be[c];
            fd = (lp - lm) / (2 * h);
            if (fabs(dbk[c] - fd) > nb) nb = fabs(dbk[c] - fd);
            if (fabs(fd) > dbm) dbm = fabs(fd);
        }
        /* Tolerance 1e-4: float kernel gradients vs a double FD whose own error is ~1e-8. */
        EXPECT_ERR(efx, 1e-4, "%s: dx vs central FD (double, h=1e-4), max rel err", name);
        EXPECT_ERR(ng / dgm, 1e-4, "%s: dgamma vs central FD, max rel err", name);
        EXPECT_ERR(nb / dbm, 1e-4, "%s: dbeta vs central FD, max rel err", name);
        free(xp), free(ybuf), free(gp), free(bp), free(dxk);
    }

    /* In place: dx aliases dy must give the same dx (bit-identical: same arithmetic per element). */
    memcpy(dy2.data, dy.data, dy.bytes);
    gn_plan pi;
    ASSERT(gn_plan_init(&pi, e, &l, &x, &y, &dy2, &dy2, 1) == 0);
    ASSERT(gn_forward(&pi, e) == 0);
    ASSERT(gn_backward(&pi, e, 0) == 0);
    EXPECT(memcmp(dy2.data, dx.data, dx.bytes) == 0, "%s: in-place backward (dx == dy) matches out-of-place", name);
    gn_plan_free(&pi);

    free(xd), free(dyd), free(ga), free(be), free(yr), free(dxr), free(dgr), free(dbr), free(dgk), free(dbk);
    gn_plan_free(&p);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx), tensor_free(&dy2), tensor_free(&yr6);
    gn_layer_free(&l);
    arena_free(&params), arena_free(&grads), arena_free(&act);
}

/* One layer, two plans of different shapes: backward(acc 0) then backward(acc 1) = sum of both. */
static void run_shared(eng_ctx *e) {
    expect_case("shared layer, two plans");
    rng g;
    rng_seed(&g, 77);
    arena params, grads, act;
    arena_init(&params, "params"), arena_init(&grads, "grads"), arena_init(&act, "act");
    gn_layer l;
    gn_cfg cfg = {64, 32, 1e-5f};
    ASSERT(gn_layer_init(&l, e, &cfg, &params, &grads) == 0);
    tensor x[2], y[2], dy[2];
    int hs[2] = {6, 3}, ws[2] = {8, 4};
    for (int i = 0; i < 2; i++) {
        ASSERT(tensor_plan_act(e, &x[i], 2, 64, hs[i], ws[i], &act) == 0);
        ASSERT(tensor_plan_act(e, &y[i], 2, 64, hs[i], ws[i], &act) == 0);
        ASSERT(tensor_plan_act(e, &dy[i], 2, 64, hs[i], ws[i], &act) == 0);
    }
    ASSERT(arena_commit(&params) == 0 && arena_commit(&grads) == 0 && arena_commit(&act) == 0);
    gn_layer_reset_params(&l);
    for (int c = 0; c < 64; c++) l.gamma.data[c] += (float)(0.3 * rng_normal(&g));
    double dgr[64] = {0}, dbr[64] = {0};
    gn_plan p[2];
    for (int i = 0; i < 2; i++) {
        ac_fill(&g, &x[i], 1.5, -0.3);
        ac_fill(&g, &dy[i], 1.0, 0.0);
        ASSERT(gn_plan_init(&p[i], e, &l, &x[i], &y[i], &dy[i], NULL, 1) == 0);
        double *xd = ac_to_d(&x[i]), *dyd = ac_to_d(&dy[i]), *ga = vec_d(l.gamma.data, 64);
        double dg[64], db[64];
        ref_bwd(2, 64, 32, hs[i] * ws[i], xd, ga, 1e-5, dyd, NULL, dg, db);
        for (int c = 0; c < 64; c++) dgr[c] += dg[c], dbr[c] += db[c];
        free(xd), free(dyd), free(ga);
    }
    for (int i = 0; i < 2; i++) ASSERT(gn_forward(&p[i], e) == 0);
    ASSERT(gn_backward(&p[1], e, 0) == 0);
    ASSERT(gn_backward(&p[0], e, 1) == 0);
    double *dgk = vec_d(l.dgamma.data, 64), *dbk = vec_d(l.dbeta.data, 64);
    double eg = ac_rel(dgk, dgr, 64, 1e-30), eb = ac_rel(dbk, dbr, 64, 1e-30);
    EXPECT_ERR(eg, 1e-5, "shared layer, 2 plans (6x8, 3x4), accumulate: dgamma = sum of per-plan grads, rel err");
    EXPECT_ERR(eb, 1e-5, "shared layer, 2 plans (6x8, 3x4), accumulate: dbeta = sum of per-plan grads, rel err");
    free(dgk), free(dbk);
    for (int i = 0; i < 2; i++) {
        gn_plan_free(&p[i]);
        tensor_free(&x[i]), tensor_free(&y[i]), tensor_free(&dy[i]);
    }
    gn_layer_free(&l);
    arena_free(&params), arena_free(&grads), arena_free(&act);
}

/* torch.nn.GroupNorm fixtures. */
static void run_torch(eng_ctx *e, const fx_file *f, const char *pre, int G) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s_x", pre);
    const fx_array *ax = fx_get(f, nm);
    int N = (int)ax->dims[0], C = (int)ax->dims[1], H = (int)ax->dims[2], W = (int)ax->dims[3];
    arena params, grads, act;
    arena_init(&params, "params"), arena_init(&grads, "grads"), arena_init(&act, "act");
    gn_layer l;
    gn_cfg cfg = {C, G, 1e-5f};
    ASSERT(gn_layer_init(&l, e, &cfg, &params, &grads) == 0);
    tensor x, y, dy, dx;
    ASSERT(tensor_plan_act(e, &x, N, C, H, W, &act) == 0 && tensor_plan_act(e, &y, N, C, H, W, &act) == 0);
    ASSERT(tensor_plan_act(e, &dy, N, C, H, W, &act) == 0 && tensor_plan_act(e, &dx, N, C, H, W, &act) == 0);
    ASSERT(arena_commit(&params) == 0 && arena_commit(&grads) == 0 && arena_commit(&act) == 0);
    size_t tot = (size_t)N * C * H * W;
    float *tmp = malloc(tot * sizeof *tmp);
    for (size_t i = 0; i < tot; i++) tmp[i] = (float)ax->v[i];
    tensor_from_nchw(&x, tmp);
    snprintf(nm, sizeof nm, "%s_dy", pre);
    const fx_array *ady = fx_get(f, nm);
    for (size_t i = 0; i < tot; i++) tmp[i] = (float)ady->v[i];
    tensor_from_nchw(&dy, tmp);
    snprintf(nm, sizeof nm, "%s_gamma", pre);
    const fx_array *ag = fx_get(f, nm);
    snprintf(nm, sizeof nm, "%s_beta", pre);
    const fx_array *ab = fx_get(f, nm);
    for (int c = 0; c < C; c++) l.gamma.data[c] = (float)ag->v[c], l.beta.data[c] = (float)ab->v[c];
    gn_plan p;
    ASSERT(gn_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1) == 0);
    ASSERT(gn_forward(&p, e) == 0 && gn_backward(&p, e, 0) == 0);
    snprintf(nm, sizeof nm, "%s_y", pre);
    double ey = ac_tensor_rel(&y, fx_get(f, nm)->v);
    snprintf(nm, sizeof nm, "%s_dx", pre);
    double edx = ac_tensor_rel(&dx, fx_get(f, nm)->v);
    double *dg = vec_d(l.dgamma.data, C), *db = vec_d(l.dbeta.data, C);
    snprintf(nm, sizeof nm, "%s_dgamma", pre);
    double edg = ac_rel(dg, fx_get(f, nm)->v, (size_t)C, 1e-30);
    snprintf(nm, sizeof nm, "%s_dbeta", pre);
    double edb = ac_rel(db, fx_get(f, nm)->v, (size_t)C, 1e-30);
    /* Both sides are float32 with different summation orders: 1e-5 relative to the largest value. */
    char cn[96];
    snprintf(cn, sizeof cn, "torch GroupNorm fixture %s (N=%d C=%d G=%d %dx%d)", pre, N, C, G, H, W);
    expect_case(cn);
    EXPECT_ERR(ey, 1e-5, "%s: y, rel err", cn);
    EXPECT_ERR(edx, 1e-5, "%s: dx, rel err", cn);
    EXPECT_ERR(edg, 1e-5, "%s: dgamma, rel err", cn);
    EXPECT_ERR(edb, 1e-5, "%s: dbeta, rel err", cn);
    free(tmp), free(dg), free(db);
    gn_plan_free(&p);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx);
    gn_layer_free(&l);
    arena_free(&params), arena_free(&grads), arena_free(&act);
}

int main(void) {
    eng_ctx e;
    if (eng_init(&e, 0) < 0) {
        fprintf(stderr, "eng_init: %s\n", ote_errmsg());
        return 1;
    }
    const gn_case cases[] = {
        {2, 6, 3, 5, 7, 1.0, 0.0},   {3, 20, 10, 4, 9, 2.0, 0.0}, {2, 64, 32, 7, 5, 1.0, 0.0},
        {2, 48, 2, 3, 5, 1.0, 0.0},  /* groups of 24 channels span two 16-lane blocks */
        {2, 40, 4, 6, 6, 0.7, 0.0},  /* groups of 10 channels straddle block boundaries */
        {2, 64, 32, 9, 11, 0.1, 100.0}, /* |mean| / std = 1000: the shifted sums must not cancel */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&e, &cases[i], 1000 + i);
    run_shared(&e);

    expect_case("refusals");
    gn_cfg bad = {20, 3, 0};
    arena pa, ga;
    arena_init(&pa, "p"), arena_init(&ga, "g");
    gn_layer lb;
    int s = gn_layer_init(&lb, &e, &bad, &pa, &ga);
    EXPECT(s == OTE_EINVAL, "C=20, G=3 rejected with OTE_EINVAL: \"%s\"", ote_errmsg());
    arena_free(&pa), arena_free(&ga);

    const char *sh = getenv("OTE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/gn_ref.fx", sh ? sh : ".");
    fx_file f;
    if (fx_load(&f, path) == 0) {
        run_torch(&e, &f, "a", 32);
        run_torch(&e, &f, "b", 10);
        fx_free(&f);
    } else {
        EXPECT(0, "load fixture %s", path);
    }
    eng_free(&e);
    return expect_finish();
}
