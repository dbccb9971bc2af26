/* test_hpo_smbo.c - the SMBO's pieces: output transforms against scikit-learn / scipy
 * (tests/reference/smbo_ref.py -> fixtures/smbo_ref.fx) and a hand computation, the trust-region
 * side rule and box on hand-worked histories, no duplicate proposal on the detector's discrete
 * grid (grid mode and the continuous decode-and-skip path) down to the last free point and the
 * SMBO_EXHAUSTED return after it, the grid's initial design covering every level, the GP phase
 * finding a grid optimum, the driver stopping cleanly on an exhausted grid, and the constant liar
 * of parallel proposals (smbo_propose_pending). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hpo/hpo.h"
#include "hpo/smbo.h"
#include "tests/expect.h"
#include "tests/fixture.h"

/* the detector's space (models/templates/gen3_mobilenetV2_ATSS/hpo_config.yaml), lr upper bound
 * as given */
static void detector_space(hp_space *sp, double lr_hi) {
    memset(sp, 0, sizeof *sp);
    sp->n = 2;
    double r0[3] = {0.001, lr_hi, 0.001}, r1[3] = {4, 8, 2};
    REQUIRE_OK(hp_param_make(&sp->p[0], "learning_parameters.learning_rate", HP_QUNIFORM, r0, 3, 0, "test"));
    REQUIRE_OK(hp_param_make(&sp->p[1], "learning_parameters.batch_size", HP_QLOGUNIFORM, r1, 3, 1, "test"));
}

static double smooth(const double *v) {
    return 1 - pow((v[0] - 0.006) / 0.01, 2) - pow((v[1] - 6) / 4, 2);
}

/* Proposes until SMBO_EXHAUSTED; every proposal must be on the grid and new (checked here with
 * hp_space_same, independently of smbo's own bookkeeping); every 7th trial "fails" (used, not
 * observed). Returns the number of proposals, or -1 on a duplicate / off-grid value. */
static int run_to_exhaustion(const hp_space *sp, const smbo_opts *o, int limit, int *last_rc) {
    smbo s;
    REQUIRE_OK(smbo_init_opts(&s, sp, 5, 42, o));
    double *used = malloc((size_t)limit * 2 * sizeof *used), *obs = malloc((size_t)limit * 2 * sizeof *obs);
    double *y = malloc((size_t)limit * sizeof *y);
    int n = 0, no = 0, bad = 0, rc = 0;
    while (n < limit) {
        double v[2];
        rc = smbo_propose(&s, used, n, obs, y, no, v);
        if (rc != 0) break;
        for (int j = 0; j < 2; j++) bad |= hp_snap(&sp->p[j], v[j]) != v[j];
        for (int i = 0; i < n; i++) bad |= hp_space_same(sp, v, used + 2 * i);
        if (bad) {
            printf("  bad proposal %d: lr %.17g bs %g\n", n, v[0], v[1]);
            break;
        }
        memcpy(used + 2 * n, v, sizeof v);
        if (n % 7 != 6) {
            memcpy(obs + 2 * no, v, sizeof v);
            y[no++] = smooth(v);
        }
        n++;
    }
    smbo_free(&s);
    free(used), free(obs), free(y);
    *last_rc = rc;
    return bad ? -1 : n;
}

static int train_smooth(void *ctx, const hpo_trial *t, hpo_reporter *r) {
    (void)ctx;
    double v[2] = {t->values[0], t->values[1]};
    for (int e = 1; e <= t->max_epochs; e++) {
        int s = hpo_report(r, e, smooth(v), 1.0, 10);
        if (s < 0) return s;
        if (s == HPO_STOP_TRIAL) break;
    }
    return 0;
}

static double bowl(const double *v) { return -pow(v[0] - 0.3, 2) - pow(v[1] - 0.6, 2); }

/* Constant liar: with none pending smbo_propose_pending is smbo_propose, bit for bit (grid and
 * continuous); with the GP's proposal A pending, the next proposal moves away from A, while
 * without the lie (A only marked used) it stays next to A. */
static void case_constant_liar(void) {
    hp_space sp;
    memset(&sp, 0, sizeof sp);
    sp.n = 2;
    double r[2] = {0, 1};
    REQUIRE_OK(hp_param_make(&sp.p[0], "a", HP_UNIFORM, r, 2, 0, "test"));
    REQUIRE_OK(hp_param_make(&sp.p[1], "b", HP_UNIFORM, r, 2, 1, "test"));
    double used[40], y[20];
    int n = 8;
    for (int i = 0; i < n; i++) { /* a fixed design around the optimum (0.3, 0.6) */
        used[2 * i] = 0.1 + 0.1 * i;
        used[2 * i + 1] = fmod(0.15 + 0.37 * i, 1.0);
        y[i] = bowl(used + 2 * i);
    }
    smbo s1, s2, s3;
    REQUIRE_OK(smbo_init(&s1, &sp, 5, 11));
    REQUIRE_OK(smbo_init(&s2, &sp, 5, 11));
    REQUIRE_OK(smbo_init(&s3, &sp, 5, 11));
    double a1[2], a2[2], a3[2];
    REQUIRE_OK(smbo_propose(&s1, used, n, used, y, n, a1));
    REQUIRE_OK(smbo_propose_pending(&s2, used, n, used, y, n, NULL, 0, a2));
    REQUIRE_OK(smbo_propose_pending(&s3, used, n, used, y, n, NULL, 0, a3));
    EXPECT(a1[0] == a2[0] && a1[1] == a2[1], "none pending: the same proposal as smbo_propose (%.6f, %.6f)", a1[0],
           a1[1]);
    memcpy(used + 2 * n, a1, sizeof a1); /* A handed out, still running */
    double b0[2], b1[2];
    REQUIRE_OK(smbo_propose(&s2, used, n + 1, used, y, n, b0));
    REQUIRE_OK(smbo_propose_pending(&s3, used, n + 1, used, y, n, a1, 1, b1));
    double d0 = hypot(b0[0] - a1[0], b0[1] - a1[1]), d1 = hypot(b1[0] - a1[0], b1[1] - a1[1]);
    EXPECT(d1 > 0.02 && d1 > d0, "A pending: the next proposal (%.4f, %.4f) is %.4f from A; without the lie %.4f",
           b1[0], b1[1], d1, d0);
    smbo_free(&s1), smbo_free(&s2), smbo_free(&s3);

    /* the initial design needs no lie: Sobol points indexed by n_used, pending ones counted */
    REQUIRE_OK(smbo_init(&s1, &sp, 5, 3));
    double p0[2], p1[2];
    REQUIRE_OK(smbo_propose_pending(&s1, used, 0, used, y, 0, NULL, 0, p0));
    REQUIRE_OK(smbo_propose_pending(&s1, p0, 1, used, y, 0, p0, 1, p1));
    EXPECT(p0[0] != p1[0] || p0[1] != p1[1], "initial design: two concurrent proposals differ");
    smbo_free(&s1);

    /* grid mode (the detector's space): with one pending, a different point from the same history */
    detector_space(&sp, 0.1);
    double g[40], gy[20];
    int m = 6;
    REQUIRE_OK(smbo_init(&s1, &sp, 5, 5));
    for (int i = 0; i < m; i++) {
        REQUIRE_OK(smbo_propose(&s1, g, i, g, gy, i, g + 2 * i));
        gy[i] = smooth(g + 2 * i);
    }
    double q0[2], q1[2];
    REQUIRE_OK(smbo_propose(&s1, g, m, g, gy, m, q0));
    memcpy(g + 2 * m, q0, sizeof q0);
    REQUIRE_OK(smbo_propose_pending(&s1, g, m + 1, g, gy, m, q0, 1, q1));
    EXPECT(!hp_space_same(&sp, q0, q1), "grid: two proposals with one pending differ (%g,%g) vs (%g,%g)", q0[0], q0[1],
           q1[0], q1[1]);
    smbo_free(&s1);
}

int main(void) {
    EXPECT_RUN(case_constant_liar);
    const char *src = getenv("OTE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/smbo_ref.fx", src ? src : ".");
    fx_file f;
    REQUIRE_OK(fx_load(&f, path));

    /* 1. Yeo-Johnson after standardising, lambda by ML, vs sklearn's PowerTransformer */
    for (int k = 0; k < 3; k++) {
        char ny[8], nz[8], nl[16];
        snprintf(ny, sizeof ny, "y%d", k);
        snprintf(nz, sizeof nz, "yj%d", k);
        snprintf(nl, sizeof nl, "lambda%d", k);
        const fx_array *y = fx_get(&f, ny), *z = fx_get(&f, nz), *l = fx_get(&f, nl);
        int n = (int)y->dims[0];
        double out[64], lam = 0;
        REQUIRE_OK(smbo_transform_y(SMBO_YTF_YJ, y->v, n, out, &lam));
        /* sklearn's Brent stops at ~1.5e-8 relative in lambda; ours at 1e-10 absolute */
        double el = fabs(lam - l->v[0]), ez = fx_max_rel(out, z->v, n, 1.0);
        EXPECT(el < 1e-5 && ez < 1e-5, "Yeo-Johnson case %d: lambda %.6f vs sklearn %.6f, max err %.2g", k, lam,
               l->v[0], ez);
    }
    /* the formula at the lambda = 0 and 2 branches, by hand: log1p(x) and -log1p(-x) */
    EXPECT(fabs(smbo_yeo_johnson(1.5, 0) - log(2.5)) < 1e-15 && fabs(smbo_yeo_johnson(-1.5, 2) + log(2.5)) < 1e-15 &&
               fabs(smbo_yeo_johnson(3, 2) - 7.5) < 1e-12 && fabs(smbo_yeo_johnson(-3, 0) + 7.5) < 1e-12,
           "Yeo-Johnson branches: lambda 0 / 2 logs, (4^2-1)/2 = 7.5, -(4^2-1)/2");
    {
        const fx_array *y = fx_get(&f, "yr"), *z = fx_get(&f, "rank");
        double out[16];
        int n = (int)y->dims[0];
        REQUIRE_OK(smbo_transform_y(SMBO_YTF_RANK, y->v, n, out, NULL));
        double e = fx_max_rel(out, z->v, n, 1.0);
        EXPECT(e < 1e-9, "rank transform (ties: mean rank) vs scipy norm.ppf((rankdata - 0.5) / n), err %.2g", e);
    }
    {
        /* log transform by hand: y = {0, 1, 3, 4}: max 4, median 2, c = 0.02 */
        double y[4] = {0, 1, 3, 4}, z[4];
        REQUIRE_OK(smbo_transform_y(SMBO_YTF_LOG, y, 4, z, NULL));
        EXPECT(fabs(z[0] + log(4.02)) < 1e-12 && fabs(z[3] + log(0.02)) < 1e-12 && fabs(z[1] + log(3.02)) < 1e-12,
               "log transform -log(max - y + 0.01 (max - median))");
    }
    fx_free(&f);

    /* 2. trust region, hand-worked: d = 2 -> failure tolerance 4, success tolerance 3 */
    {
        double up[6] = {0, 1, 2, 3, 4, 5};          /* 2 initial, then 4 successes: 0.8 -> 1.6 (cap) */
        double flat[7] = {1, 1, 0, 0, 0, 0, 0};     /* 4 failures halve once (0.4), the 5th counts anew */
        double tiny[5] = {100, 100, 100.05, 100.06, 100.07}; /* each step < 1e-3 * 100: 3 failures, no success */
        double mix[9] = {0, 1, 2, 3, 4, 4, 4, 4, 4}; /* 3 successes (1.6), then 4 failures (0.8) */
        EXPECT(smbo_tr_side(up, 6, 2, 2) == 1.6, "TR: 3 successes double the side, capped at 1.6 (%g)",
               smbo_tr_side(up, 6, 2, 2));
        EXPECT(smbo_tr_side(flat, 7, 2, 2) == 0.4, "TR: 4 failures halve the side (%g)", smbo_tr_side(flat, 7, 2, 2));
        EXPECT(smbo_tr_side(tiny, 5, 2, 2) == 0.8, "TR: an improvement below 1e-3 |best| is a failure (%g)",
               smbo_tr_side(tiny, 5, 2, 2));
        EXPECT(smbo_tr_side(mix, 9, 2, 2) == 0.8, "TR: 3 successes then 4 failures: 0.8 -> 1.6 -> 0.8 (%g)",
               smbo_tr_side(mix, 9, 2, 2));
        double many[40];
        many[0] = 1;
        for (int i = 1; i < 40; i++) many[i] = 0; /* d = 6 (tolerance 6): 36 failures = 6 halvings -> 0.0125
                                                   * (with tolerance 4 it would be 9 halvings -> reset) */
        EXPECT(fabs(smbo_tr_side(many, 37, 1, 6) - 0.8 / 64) < 1e-15, "TR: tolerance max(4, d) = 6 for d = 6 (%g)",
               smbo_tr_side(many, 37, 1, 6));
        double c[2] = {0.5, 0.9}, lls[2] = {0, log(4.0)}, lo[2], hi[2];
        /* geomean(1, 4) = 2 -> weights 0.5, 2 -> half widths 0.1, 0.4 */
        smbo_tr_box(c, 2, 0.4, lls, lo, hi);
        EXPECT(fabs(lo[0] - 0.4) < 1e-12 && fabs(hi[0] - 0.6) < 1e-12 && fabs(lo[1] - 0.5) < 1e-12 && hi[1] == 1.0,
               "TR box: half-width L/2 ls_j/geomean(ls), clipped to [0,1] ([%g,%g] x [%g,%g])", lo[0], hi[0], lo[1],
               hi[1]);
    }

    /* 3. no duplicates on the detector's grid (100 x 3 = 300 points), to the last free point */
    hp_space sp;
    detector_space(&sp, 0.1);
    smbo_opts o;
    smbo_opts_default(&o);
    int rc, n = run_to_exhaustion(&sp, &o, 400, &rc);
    EXPECT(n == 300 && rc == SMBO_EXHAUSTED, "grid mode: 300 distinct grid proposals, then SMBO_EXHAUSTED (%d, rc %d)",
           n, rc);
    /* the decode-and-skip path of non-enumerated spaces, on a 20 x 3 grid */
    detector_space(&sp, 0.02);
    o.grid_max = 0;
    n = run_to_exhaustion(&sp, &o, 100, &rc);
    EXPECT(n == 60 && rc == SMBO_EXHAUSTED,
           "continuous path: 60 distinct proposals on a 60-point grid, then SMBO_EXHAUSTED (%d, rc %d)", n, rc);
    smbo_opts_legacy(&o);
    n = run_to_exhaustion(&sp, &o, 100, &rc);
    EXPECT(n >= 40 && n <= 60 && rc == SMBO_EXHAUSTED, "legacy optimiser: no duplicate either (%d proposals)", n);

    /* 4. grid initial design: 4 proposals from nothing visit all 3 batch sizes and the 4 quarters
     * of the learning-rate levels (whatever the seed) */
    detector_space(&sp, 0.1);
    int ok_levels = 1;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        smbo s;
        REQUIRE_OK(smbo_init(&s, &sp, 5, seed));
        double used[8];
        int bs_seen[3] = {0}, q_seen[4] = {0};
        for (int i = 0; i < 4; i++) {
            REQUIRE_OK(smbo_propose(&s, used, i, used, NULL, 0, used + 2 * i));
            bs_seen[(int)(used[2 * i + 1] - 4) / 2] = 1;
            q_seen[(int)((used[2 * i] - 0.001) / 0.001 + 0.5) / 25] = 1;
        }
        smbo_free(&s);
        ok_levels &= bs_seen[0] && bs_seen[1] && bs_seen[2] && q_seen[0] && q_seen[1] && q_seen[2] && q_seen[3];
    }
    EXPECT(ok_levels, "grid initial design: every batch size and every lr quarter within 4 trials (20 seeds)");

    /* 5. the GP phase finds the grid optimum (lr 0.006, batch 6) well before random search would
     * (random: 25 of 300 points -> 8% chance) */
    {
        int found = 0;
        for (uint64_t seed = 1; seed <= 5; seed++) {
            smbo s;
            REQUIRE_OK(smbo_init(&s, &sp, 5, seed));
            double used[60], y[30];
            int hit = 0;
            for (int i = 0; i < 25 && !hit; i++) {
                REQUIRE_OK(smbo_propose(&s, used, i, used, y, i, used + 2 * i));
                y[i] = smooth(used + 2 * i);
                hit = used[2 * i] == 0.006 && used[2 * i + 1] == 6;
            }
            smbo_free(&s);
            found += hit;
        }
        EXPECT(found == 5, "GP phase on the grid: optimum found within 25 trials for %d of 5 seeds", found);
    }

    /* 6. the driver on a grid smaller than num_trials: runs each point once, stops, succeeds */
    {
        char dir[] = "/tmp/ote_hpo_smbo_XXXXXX";
        if (!mkdtemp(dir)) return 1;
        hpo_config cfg;
        REQUIRE_OK(hpo_config_parse(&cfg,
                                    "metric: mAP\nsearch_algorithm: smbo\nearly_stop: None\nhp_space:\n"
                                    "  learning_parameters.learning_rate:\n    param_type: quniform\n"
                                    "    range: [0.001, 0.002, 0.001]\n"
                                    "  learning_parameters.batch_size:\n    param_type: qloguniform\n"
                                    "    range: [4, 8, 2]\n",
                                    "hpo_config.yaml"));
        char *msg = NULL;
        size_t msg_len = 0;
        FILE *out = open_memstream(&msg, &msg_len);
        hpo_options opt;
        memset(&opt, 0, sizeof opt);
        opt.work_dir = dir;
        opt.resume = HPO_RESUME_NO;
        opt.out = out;
        opt.num_trials = 10;
        opt.seed = 3;
        double defaults[2] = {0.002, 8};
        opt.defaults = defaults;
        hpo_result res;
        int s = hpo_run(&cfg, &opt, train_smooth, NULL, &res);
        fclose(out);
        EXPECT(s == 0 && res.trials_run == 6 && res.trials_total == 6 && msg &&
                   strstr(msg, "HPO search space exhausted after 6 trials."),
               "driver: 2 x 3 grid with num_trials 10 -> 6 trials, 'exhausted' message, success (rc %d, %d trials)",
               s, res.trials_run);
        EXPECT(res.best_id >= 0 && res.best_values[0] == 0.002 && res.best_values[1] == 6,
               "driver: best of the exhausted grid is lr 0.002, batch 6");
        free(msg);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    }
    return expect_finish();
}
