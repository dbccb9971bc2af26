/* test_hpo_gp.c - GP posterior, log marginal likelihood (+ gradient), log-EI against the
 * scikit-learn / mpmath reference (tests/reference/gp_ref.py -> fixtures/gp_ref.fx) one point at a
 * time and in the blocked many-point path, log-EI tail
 * stability, gradient vs central finite differences, and the ML fit improving the likelihood. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/rng.h"
#include "hpo/gp.h"
#include "tests/expect.h"
#include "tests/fixture.h"

/* shared by the cases: the fixture and the GP fitted to its data with its fixed hyperparameters */
static fx_file F;
static gp G;
static const fx_array *X, *XS, *HY;
static int N, M;
static double LLS[2];

static void setup(void) {
    const char *src = getenv("OTE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/gp_ref.fx", src ? src : ".");
    REQUIRE(fx_load(&F, path) >= 0, "load %s", path);
    X = fx_get(&F, "x"), XS = fx_get(&F, "xs"), HY = fx_get(&F, "hyper");
    N = (int)X->dims[0], M = (int)XS->dims[0];
    REQUIRE(gp_init(&G, (int)X->dims[1]) >= 0 && gp_set_data(&G, X->v, fx_get(&F, "y")->v, N) >= 0, "GP from the fixture's data");
    LLS[0] = log(HY->v[1]), LLS[1] = log(HY->v[2]);
    gp_set_hyper(&G, LLS, log(HY->v[0]), log(HY->v[3]));
    REQUIRE(gp_factor(&G) >= 0, "factor the fixture's GP");
}

static void case_posterior(void) {
    double mu[16], var[16], mo[16], vo[16];
    gp_predict(&G, XS->v, M, mu, var);
    for (int i = 0; i < M; i++) {
        mo[i] = mu[i] * G.ystd + G.ymean; /* back to original units, as sklearn reports */
        vo[i] = var[i] * G.ystd * G.ystd;
    }
    /* tolerance: 1e-9 relative (both sides are double-precision Cholesky solves of an 8x8 system) */
    EXPECT_ERR(fx_max_rel(mo, fx_get(&F, "mu")->v, M, 1e-12), 1e-9, "posterior mean vs sklearn");
    EXPECT_ERR(fx_max_rel(vo, fx_get(&F, "var")->v, M, 1e-12), 1e-7, "posterior variance vs sklearn");

    /* the blocked path (>= 8 points): the 5 test points 8 times over (40 = one full block of 32 and
     * a partial one), same tolerances against sklearn */
    double xb[80], mb[40], vb[40], mref[40], vref[40];
    for (int i = 0; i < 40; i++) {
        xb[2 * i] = XS->v[2 * (i % M)], xb[2 * i + 1] = XS->v[2 * (i % M) + 1];
        mref[i] = fx_get(&F, "mu")->v[i % M], vref[i] = fx_get(&F, "var")->v[i % M];
    }
    gp_predict(&G, xb, 40, mb, vb);
    for (int i = 0; i < 40; i++) mb[i] = mb[i] * G.ystd + G.ymean, vb[i] *= G.ystd * G.ystd;
    EXPECT_ERR(fx_max_rel(mb, mref, 40, 1e-12), 1e-9, "blocked posterior mean (40 points) vs sklearn");
    EXPECT_ERR(fx_max_rel(vb, vref, 40, 1e-12), 1e-7, "blocked posterior variance (40 points) vs sklearn");
}

static void case_lml(void) {
    double grad[4];
    double lml = gp_lml(&G, grad);
    EXPECT_REL(lml, fx_get(&F, "lml")->v[0], 1e-9, "log marginal likelihood vs sklearn");
    /* sklearn's theta order: log sf2, log l1, log l2 */
    const double *rg = fx_get(&F, "lml_grad")->v;
    double mine[3] = {grad[2], grad[0], grad[1]};
    EXPECT_ERR(fx_max_rel(mine, rg, 3, 1e-6), 1e-7, "LML gradient (log sf2, log l1, log l2) vs sklearn");

    /* full gradient incl. noise vs central differences in double, step 1e-5 */
    double th[4] = {LLS[0], LLS[1], log(HY->v[0]), log(HY->v[3])}, fd[4], an[4];
    gp_set_hyper(&G, th, th[2], th[3]);
    gp_lml(&G, an);
    for (int k = 0; k < 4; k++) {
        double tp[4], tm[4];
        for (int j = 0; j < 4; j++) tp[j] = tm[j] = th[j];
        tp[k] += 1e-5;
        tm[k] -= 1e-5;
        gp_set_hyper(&G, tp, tp[2], tp[3]);
        double lp = gp_lml(&G, NULL);
        gp_set_hyper(&G, tm, tm[2], tm[3]);
        double lm = gp_lml(&G, NULL);
        fd[k] = (lp - lm) / 2e-5;
    }
    EXPECT_ERR(fx_max_rel(an, fd, 4, 1e-3), 1e-5, "LML gradient incl. noise vs central finite differences");
}

static void case_log_ei(void) {
    /* log-EI against mpmath (50 digits), including z = -40 +- 0.1 (series switch) and z = -1e4 */
    const fx_array *ec = fx_get(&F, "ei_cases"), *er = fx_get(&F, "ei_ref");
    double lei[32];
    for (int i = 0; i < ec->dims[0]; i++) lei[i] = gp_log_ei(ec->v[3 * i], ec->v[3 * i + 1], ec->v[3 * i + 2]);
    double emax = 0;
    for (int i = 0; i < ec->dims[0]; i++) emax = fmax(emax, fabs(lei[i] - er->v[i]) / fmax(1, fabs(er->v[i])));
    EXPECT_ERR(emax, 1e-10, "log-EI vs mpmath (relative, every case)");

    /* GP + log-EI: posterior of the fixed case in normalised units, best = max normalised target */
    double mu[16], var[16];
    gp_set_hyper(&G, LLS, log(HY->v[0]), log(HY->v[3]));
    gp_factor(&G);
    gp_predict(&G, XS->v, M, mu, var);
    double best = -1e300;
    for (int i = 0; i < N; i++) best = fmax(best, G.y[i]);
    double gei[16];
    for (int i = 0; i < M; i++) gei[i] = gp_log_ei(mu[i], sqrt(var[i]), best);
    EXPECT_ERR(fx_max_rel(gei, fx_get(&F, "gp_ei")->v, M, 1.0), 1e-6, "log-EI of the posterior vs sklearn+mpmath");
}

static void case_log_h_tail(void) {
    /* tail: finite and strictly increasing on a grid from -1e100 to 10 */
    int ok = 1;
    double prev = -HUGE_VAL, zbad = 0;
    for (int i = 0; i <= 4000; i++) {
        double t = i / 4000.0; /* z from -1e100 ... 10 on a log-like grid */
        double z = t < 0.5 ? -pow(10, 100 * (1 - 2 * t)) : -1 + 11 * (2 * t - 1);
        if (t >= 0.5 && i == 2000) z = -1;
        double v = gp_log_h(z);
        if (!isfinite(v) || !(v > prev)) {
            ok = 0;
            zbad = z;
            break;
        }
        prev = v;
    }
    EXPECT(ok, "log h(z) finite and strictly increasing from z=-1e100 to 10 (first bad z %.3g)", zbad);
    /* continuity at the branch switches z = -1 and z = -40 */
    EXPECT_NEAR(gp_log_h(-1 - 1e-12), gp_log_h(-1 + 1e-12), 1e-9, "log h continuous at the branch switch z = -1");
    EXPECT_NEAR(gp_log_h(-40 - 1e-12), gp_log_h(-40 + 1e-12), 1e-9, "log h continuous at the branch switch z = -40");
}

static void case_ml_fit(void) {
    /* ML fit improves the likelihood over the initial values (5 restarts, 200 evaluations) */
    rng r;
    rng_seed(&r, 3);
    int nn = 20;
    double xx[40], yy[20];
    for (int i = 0; i < nn; i++) {
        xx[2 * i] = rng_uniform(&r);
        xx[2 * i + 1] = rng_uniform(&r);
        yy[i] = sin(8 * xx[2 * i]) + 0.1 * xx[2 * i + 1];
    }
    gp h;
    gp_init(&h, 2);
    gp_set_data(&h, xx, yy, nn);
    double l0 = gp_lml(&h, NULL);
    int s = gp_fit(&h, &r, 5, 200);
    double l1 = gp_lml(&h, NULL);
    EXPECT(s == 0 && l1 > l0 + 1, "ML fit raises the log marginal likelihood by more than 1 (by %.3g, status %d)", l1 - l0, s);
    /* the x2 direction is nearly irrelevant: its length scale should end up longer */
    EXPECT(h.log_ls[1] > h.log_ls[0], "ARD: irrelevant dimension gets the longer length scale (log ls %.3g vs %.3g)",
           h.log_ls[1], h.log_ls[0]);
    gp_free(&h);
}

int main(void) {
    setup();
    EXPECT_RUN(case_posterior);
    EXPECT_RUN(case_lml);
    EXPECT_RUN(case_log_ei);
    EXPECT_RUN(case_log_h_tail);
    EXPECT_RUN(case_ml_fit);
    gp_free(&G);
    fx_free(&F);
    return expect_finish();
}
