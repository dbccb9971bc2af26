/* test_hpo_gp.c - GP posterior, log marginal likelihood (+ gradient), log-EI against the
 * scikit-learn / mpmath reference (tests/reference/gp_ref.py -> fixtures/gp_ref.fx) one point at a
 * time and in the blocked many-point path, log-EI tail
 * stability, gradient vs central finite differences, and the ML fit improving the likelihood. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/rng.h"
#include "hpo/gp.h"
#include "tests/fixture.h"

static int fails = 0;
static void check(int ok, const char *what, double err, double tol) {
    printf("%s %s (err %.3g, tol %.3g)\n", ok ? "PASS" : "FAIL", what, err, tol);
    if (!ok) fails++;
}

int main(void) {
    const char *src = getenv("OTE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/gp_ref.fx", src ? src : ".");
    fx_file f;
    if (fx_load(&f, path) < 0) return 1;
    const fx_array *x = fx_get(&f, "x"), *y = fx_get(&f, "y"), *xs = fx_get(&f, "xs"), *hy = fx_get(&f, "hyper");
    int n = (int)x->dims[0], d = (int)x->dims[1], m = (int)xs->dims[0];
    gp g;
    if (gp_init(&g, d) < 0 || gp_set_data(&g, x->v, y->v, n) < 0) return 1;
    double lls[2] = {log(hy->v[1]), log(hy->v[2])};
    gp_set_hyper(&g, lls, log(hy->v[0]), log(hy->v[3]));
    if (gp_factor(&g) < 0) return 1;
    double mu[16], var[16], mo[16], vo[16];
    gp_predict(&g, xs->v, m, mu, var);
    for (int i = 0; i < m; i++) {
        mo[i] = mu[i] * g.ystd + g.ymean; /* back to original units, as sklearn reports */
        vo[i] = var[i] * g.ystd * g.ystd;
    }
    /* tolerance: 1e-9 relative (both sides are double-precision Cholesky solves of an 8x8 system) */
    double e = fx_max_rel(mo, fx_get(&f, "mu")->v, m, 1e-12);
    check(e < 1e-9, "posterior mean vs sklearn", e, 1e-9);
    e = fx_max_rel(vo, fx_get(&f, "var")->v, m, 1e-12);
    check(e < 1e-7, "posterior variance vs sklearn", e, 1e-7);

    /* the blocked path (>= 8 points): the 5 test points 8 times over (40 = one full block of 32 and
     * a partial one), same tolerances against sklearn */
    {
        double xb[80], mb[40], vb[40], mref[40], vref[40];
        for (int i = 0; i < 40; i++) {
            xb[2 * i] = xs->v[2 * (i % m)], xb[2 * i + 1] = xs->v[2 * (i % m) + 1];
            mref[i] = fx_get(&f, "mu")->v[i % m], vref[i] = fx_get(&f, "var")->v[i % m];
        }
        gp_predict(&g, xb, 40, mb, vb);
        for (int i = 0; i < 40; i++) mb[i] = mb[i] * g.ystd + g.ymean, vb[i] *= g.ystd * g.ystd;
        double em = fx_max_rel(mb, mref, 40, 1e-12), ev = fx_max_rel(vb, vref, 40, 1e-12);
        check(em < 1e-9 && ev < 1e-7, "blocked posterior (40 points) vs sklearn", fmax(em, ev), 1e-7);
    }

    double grad[4];
    double lml = gp_lml(&g, grad);
    e = fabs(lml - fx_get(&f, "lml")->v[0]) / fabs(fx_get(&f, "lml")->v[0]);
    check(e < 1e-9, "log marginal likelihood vs sklearn", e, 1e-9);
    /* sklearn's theta order: log sf2, log l1, log l2 */
    const double *rg = fx_get(&f, "lml_grad")->v;
    double mine[3] = {grad[2], grad[0], grad[1]};
    e = fx_max_rel(mine, rg, 3, 1e-6);
    check(e < 1e-7, "LML gradient (log sf2, log l1, log l2) vs sklearn", e, 1e-7);

    /* full gradient incl. noise vs central differences in double, step 1e-5 */
    double th[4] = {lls[0], lls[1], log(hy->v[0]), log(hy->v[3])}, fd[4], an[4];
    gp_set_hyper(&g, th, th[2], th[3]);
    gp_lml(&g, an);
    for (int k = 0; k < 4; k++) {
        double tp[4], tm[4];
        for (int j = 0; j < 4; j++) tp[j] = tm[j] = th[j];
        tp[k] += 1e-5;
        tm[k] -= 1e-5;
        gp_set_hyper(&g, tp, tp[2], tp[3]);
        double lp = gp_lml(&g, NULL);
        gp_set_hyper(&g, tm, tm[2], tm[3]);
        double lm = gp_lml(&g, NULL);
        fd[k] = (lp - lm) / 2e-5;
    }
    e = fx_max_rel(an, fd, 4, 1e-3);
    check(e < 1e-5, "LML gradient incl. noise vs central finite differences", e, 1e-5);

    /* log-EI against mpmath (50 digits), including z = -40 +- 0.1 (series switch) and z = -1e4 */
    const fx_array *ec = fx_get(&f, "ei_cases"), *er = fx_get(&f, "ei_ref");
    double lei[32];
    for (int i = 0; i < ec->dims[0]; i++) lei[i] = gp_log_ei(ec->v[3 * i], ec->v[3 * i + 1], ec->v[3 * i + 2]);
    e = fx_max_rel(lei, er->v, ec->dims[0], 1.0);
    double emax = 0;
    for (int i = 0; i < ec->dims[0]; i++) emax = fmax(emax, fabs(lei[i] - er->v[i]) / fmax(1, fabs(er->v[i])));
    check(emax < 1e-10, "log-EI vs mpmath (relative, every case)", emax, 1e-10);

    /* GP + log-EI: posterior of the fixed case in normalised units, best = max normalised target */
    gp_set_hyper(&g, lls, log(hy->v[0]), log(hy->v[3]));
    gp_factor(&g);
    gp_predict(&g, xs->v, m, mu, var);
    double best = -1e300;
    for (int i = 0; i < n; i++) best = fmax(best, g.y[i]);
    double gei[16];
    for (int i = 0; i < m; i++) gei[i] = gp_log_ei(mu[i], sqrt(var[i]), best);
    e = fx_max_rel(gei, fx_get(&f, "gp_ei")->v, m, 1.0);
    check(e < 1e-6, "log-EI of the posterior vs sklearn+mpmath", e, 1e-6);

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
    check(ok, "log h(z) finite and strictly increasing from z=-1e100 to 10", zbad, 0);
    /* continuity at the branch switches z = -1 and z = -40 */
    double j1 = fabs(gp_log_h(-1 - 1e-12) - gp_log_h(-1 + 1e-12));
    double j40 = fabs(gp_log_h(-40 - 1e-12) - gp_log_h(-40 + 1e-12));
    check(j1 < 1e-9 && j40 < 1e-9, "log h continuous at the branch switches", fmax(j1, j40), 1e-9);

    /* ML fit improves the likelihood over the initial values (5 restarts, 200 evaluations) */
    {
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
        check(s == 0 && l1 > l0 + 1, "ML fit raises the log marginal likelihood", l1 - l0, 1);
        /* the x2 direction is nearly irrelevant: its length scale should end up longer */
        check(h.log_ls[1] > h.log_ls[0], "ARD: irrelevant dimension gets the longer length scale",
              h.log_ls[1] - h.log_ls[0], 0);
        gp_free(&h);
    }
    gp_free(&g);
    fx_free(&f);
    printf("%s\n", fails ? "FAILED" : "ALL PASSED");
    return fails ? 1 : 0;
}
