/* test_hpo_space.c - search-space encode/decode and rounding for every type (expected values
 * derived by hand from hpopt's rules, spec §4.4), Python-repr printing, duplicates on the grid,
 * and hpo_config.yaml validation errors naming file and line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "io/yd.h"
#include "hpo/hpo_config.h"
#include "hpo/hp.h"
#include "tests/expect.h"


static hp_param mk(hp_type t, const double *r, int n, int is_int) {
    hp_param p;
    int s = hp_param_make(&p, "p", t, r, n, is_int, "test");
    if (s < 0) printf("unexpected error: %s\n", ote_errmsg());
    return p;
}

static const char *fmt(const hp_param *p, double v) {
    static char b[64];
    hp_format_value(p, v, b, sizeof b);
    return b;
}

static const char *fd(double v) {
    static char b[64];
    hp_format_double(v, b, sizeof b);
    return b;
}

/* parse a config text named "hpo_config.yaml"; expect an error containing both substrings */
static void expect_err(const char *text, const char *a, const char *b, const char *what) {
    hpo_config c;
    int s = hpo_config_parse(&c, text, "hpo_config.yaml");
    const char *m = ote_errmsg();
    EXPECT(s < 0 && strstr(m, a) && strstr(m, b), "%s -> error \"%s\"", what, s < 0 ? m : "(none)");
}

static const char *ote_default =
    "metric: mAP\n"
    "search_algorithm: smbo\n"
    "early_stop: None\n"
    "hp_space:\n"
    "  learning_parameters.learning_rate:\n"
    "    param_type: quniform\n"
    "    range:\n"
    "      - 0.001\n"
    "      - 0.1\n"
    "      - 0.001\n"
    "  learning_parameters.batch_size:\n"
    "    param_type: qloguniform\n"
    "    range:\n"
    "      - 4\n"
    "      - 8\n"
    "      - 2\n";

int main(void) {
    /* uniform */
    double ru[2] = {0, 10};
    hp_param u = mk(HP_UNIFORM, ru, 2, 1);
    EXPECT(hp_decode(&u, 0.25) == 2.5 && hp_encode(&u, 2.5) == 0.25, "uniform [0,10]: 0.25 <-> 2.5");
    double rr[4];
    EXPECT(hp_param_range(&u, rr) == 3 && rr[2] == 2, "uniform: log base 2 appended to the range");
    /* quniform: Python round half to even */
    double rq[3] = {0, 10, 2};
    hp_param q = mk(HP_QUNIFORM, rq, 3, 1);
    EXPECT(hp_decode(&q, 0.5) == 4, "quniform [0,10,2]: x=5 -> round(2.5)=2 -> 4 (half to even), got %g",
            hp_decode(&q, 0.5));
    EXPECT(hp_decode(&q, 0.7) == 8, "quniform [0,10,2]: x=7 -> round(3.5)=4 -> 8, got %g", hp_decode(&q, 0.7));
    EXPECT(hp_decode(&q, 0.0) == 0 && hp_decode(&q, 1.0) == 10, "quniform: ends of the range");
    EXPECT(!strcmp(fmt(&q, 8), "8"), "quniform with integer range prints as int: %s", fmt(&q, 8));
    EXPECT(hp_param_range(&q, rr) == 4 && rr[3] == 2, "quniform: base appended -> [lo, hi, q, 2]");
    /* quniform learning rate: clean values */
    double rl[3] = {0.001, 0.1, 0.001};
    hp_param lr = mk(HP_QUNIFORM, rl, 3, 0);
    double v9 = hp_decode(&lr, (0.009 - 0.001) / (0.1 - 0.001));
    EXPECT(v9 == 0.009, "quniform lr: decoded value is the double 0.009 (not 9*0.001)");
    EXPECT(!strcmp(fmt(&lr, v9), "0.009"), "lr prints 0.009, got %s", fmt(&lr, v9));
    EXPECT(!strcmp(fd(9 * 0.001), "0.009000000000000001"), "raw 9*0.001 has Python repr %s", fd(9 * 0.001));
    EXPECT(hp_snap(&lr, 0.0004) == 0.001 && hp_snap(&lr, 0.5) == 0.1, "quniform snap clamps onto the grid");
    /* loguniform */
    double rlg[2] = {1e-4, 1e-1};
    hp_param lg = mk(HP_LOGUNIFORM, rlg, 2, 0);
    double mid = hp_decode(&lg, 0.5);
    EXPECT(fabs(mid - pow(10, -2.5)) < 1e-15, "loguniform [1e-4,1e-1]: u=0.5 -> 10^-2.5 (%.17g)", mid);
    EXPECT(fabs(hp_encode(&lg, 1e-3) - 1.0 / 3) < 1e-12, "loguniform encodes in log space: 1e-3 -> 1/3");
    double rlg10[3] = {1e-4, 1e-1, 10};
    hp_param lg10 = mk(HP_LOGUNIFORM, rlg10, 3, 0);
    EXPECT(hp_param_range(&lg10, rr) == 3 && rr[2] == 10, "loguniform: given base 10 kept");
    /* qloguniform [4, 8, 2]: 4 if 2^x <= 5, 6 if 5 < 2^x < 7, 8 if >= 7 (spec §4.4) */
    double rb[3] = {4, 8, 2};
    hp_param bs = mk(HP_QLOGUNIFORM, rb, 3, 1);
    double ub5 = log2(5.0 / 4), ub7 = log2(7.0 / 4);
    EXPECT(hp_decode(&bs, ub5 - 1e-9) == 4 && hp_decode(&bs, ub5 + 1e-9) == 6 && hp_decode(&bs, ub7 - 1e-9) == 6 &&
                hp_decode(&bs, ub7 + 1e-9) == 8,
            "qloguniform [4,8,2]: thresholds at 2^x = 5 and 7");
    int cnt[9] = {0};
    for (int i = 0; i < 100000; i++) cnt[(int)hp_decode(&bs, (i + 0.5) / 100000)]++;
    EXPECT(fabs(cnt[4] / 1e5 - 0.3219) < 1e-3 && fabs(cnt[6] / 1e5 - 0.4854) < 1e-3 && fabs(cnt[8] / 1e5 - 0.1926) < 1e-3,
            "qloguniform [4,8,2] probabilities 0.32/0.49/0.19 (got %.4f/%.4f/%.4f, tol 1e-3)", cnt[4] / 1e5,
            cnt[6] / 1e5, cnt[8] / 1e5);
    EXPECT(!strcmp(fmt(&bs, 6), "6"), "batch size prints as int");
    EXPECT(fabs(hp_encode(&bs, 8) - 1) < 1e-15 && fabs(hp_encode(&bs, 4)) < 1e-15, "qloguniform encode ends");
    /* choice */
    double rc[3] = {1, 3, 7};
    hp_param ch = mk(HP_CHOICE, rc, 3, 1);
    EXPECT(hp_decode(&ch, 0) == 1 && hp_decode(&ch, 0.5) == 3 && hp_decode(&ch, 0.99) == 7 && hp_decode(&ch, 1) == 7,
            "choice decode by thirds");
    EXPECT(hp_encode(&ch, 3) == 0.5 && hp_snap(&ch, 6) == 7, "choice encode to the centre / snap to nearest");
    /* round trip for every type: decode(encode(v)) == v for grid values */
    int rt = 1;
    for (int k = 0; k <= 99; k++) {
        double v = hp_snap(&lr, 0.001 * (k + 1));
        rt &= hp_decode(&lr, hp_encode(&lr, v)) == v;
    }
    rt &= hp_decode(&bs, hp_encode(&bs, 6)) == 6 && hp_decode(&q, hp_encode(&q, 6)) == 6;
    EXPECT(rt, "decode(encode(v)) == v on the grids");

    /* Python repr printing */
    EXPECT(!strcmp(fd(0.1 + 0.2), "0.30000000000000004"), "repr(0.1+0.2) = %s", fd(0.1 + 0.2));
    EXPECT(!strcmp(fd(1e-5), "1e-05"), "repr(1e-5) = %s", fd(1e-5));
    EXPECT(!strcmp(fd(1.5e-7), "1.5e-07"), "repr(1.5e-7) = %s", fd(1.5e-7));
    EXPECT(!strcmp(fd(0.0001), "0.0001"), "repr(0.0001) = %s", fd(0.0001));
    EXPECT(!strcmp(fd(123.0), "123.0"), "repr(123.0) = %s", fd(123.0));
    EXPECT(!strcmp(fd(1e16), "1e+16"), "repr(1e16) = %s", fd(1e16));
    EXPECT(!strcmp(fd(0.6179835230685988), "0.6179835230685988"), "repr keeps 16 digits: %s", fd(0.6179835230685988));
    EXPECT(!strcmp(fd(-2.5), "-2.5"), "repr(-2.5) = %s", fd(-2.5));

    /* duplicates on the quantised grid */
    hp_space sp;
    memset(&sp, 0, sizeof sp);
    sp.n = 3;
    sp.p[0] = lr;
    sp.p[1] = bs;
    sp.p[2] = u;
    double a[3] = {0.009, 8, 0.5}, b[3] = {9 * 0.001, 8, 0.5 + 1e-12}, c[3] = {0.009, 6, 0.5}, e[3] = {0.009, 8, 0.51};
    EXPECT(hp_space_same(&sp, a, b), "0.009 == 9*0.001 on the grid (and uniform within 1e-9 relative)");
    EXPECT(!hp_space_same(&sp, a, c) && !hp_space_same(&sp, a, e), "different batch size / uniform value differ");

    /* config: the OTE default parses */
    hpo_config cfg;
    int s = hpo_config_parse(&cfg, ote_default, "hpo_config.yaml");
    EXPECT(s == 0, "OTE default hpo_config.yaml parses (%s)", s ? ote_errmsg() : "ok");
    if (s == 0) {
        EXPECT(!strcmp(cfg.metric, "mAP") && cfg.algo == HPO_ALGO_SMBO && cfg.early_stop == HPO_ES_NONE &&
                    cfg.mode_max == 1 && cfg.space.n == 2,
                "defaults: mAP, smbo, early_stop None (string), mode max, 2 params");
        int n = hp_param_range(&cfg.space.p[0], rr);
        EXPECT(n == 4 && rr[0] == 0.001 && rr[1] == 0.1 && rr[2] == 0.001 && rr[3] == 2 &&
                    !strcmp(cfg.space.p[0].name, "learning_parameters.learning_rate") && !cfg.space.p[0].is_int,
                "lr range [0.001, 0.1, 0.001, 2], float");
        EXPECT(cfg.space.p[1].type == HP_QLOGUNIFORM && cfg.space.p[1].is_int && cfg.space.p[1].line == 11,
                "bs qloguniform, integer, declared on line 11");
    }
    s = hpo_config_parse(&cfg,
                         "metric: loss\nmode: min\nsearch_algorithm: asha\nearly_stop: median_stop\nmax_iterations: 9\n"
                         "min_iterations: 1\nreduction_factor: 3\nnum_brackets: 2\nnum_trials: 12\nnum_init_trials: 4\n"
                         "subset_ratio: 0.5\nimage_resize: 0.75\nhp_space:\n  x:\n    param_type: choice\n"
                         "    range: [1, 2, 4]\n",
                         "c.yaml");
    EXPECT(s == 0 && !cfg.mode_max && cfg.algo == HPO_ALGO_ASHA && cfg.early_stop == HPO_ES_MEDIAN &&
                cfg.max_iterations == 9 && cfg.reduction_factor == 3 && cfg.num_brackets == 2 && cfg.num_trials == 12 &&
                cfg.num_init_trials == 4 && cfg.subset_ratio == 0.5 && cfg.image_resize == 0.75 &&
                cfg.space.p[0].nchoice == 3,
            "every optional key read (%s)", s ? ote_errmsg() : "ok");

    /* config errors naming file and line */
    expect_err("metric: mAP\nsearch_algorithm: smbo\nsearchalgo: x\nhp_space:\n  a:\n    param_type: uniform\n"
               "    range: [0, 1]\n",
               "hpo_config.yaml:3:", "unknown key 'searchalgo'", "unknown top-level key");
    expect_err("hp_space:\n  a:\n    param_typ: uniform\n    range: [0, 1]\n", "hpo_config.yaml:3:",
               "unknown key 'param_typ'", "unknown key in a parameter");
    expect_err("hp_space:\n  a:\n    param_type: gaussian\n    range: [0, 1]\n", "hpo_config.yaml:3:",
               "unknown type 'gaussian'", "bad param_type");
    expect_err("metric: mAP\nsearch_algorithm: smbo\nearly_stop: None\nhp_space:\n"
               "  learning_parameters.learning_rate:\n    param_type: quniform\n    range: [0.001, abc, 0.001]\n",
               "hpo_config.yaml:7: learning_parameters.learning_rate: range: expected a number, got 'abc'", "",
               "non-number in range (exact message)");
    expect_err("hp_space:\n  a:\n    param_type: uniform\n    range: [2, 1]\n", "hpo_config.yaml:4:",
               "lower bound 2 is above upper bound 1", "lo > hi");
    expect_err("hp_space:\n  a:\n    param_type: quniform\n    range:\n      - 0\n      - 1\n      - 5\n",
               "hpo_config.yaml:5:", "quantum 5 is larger than the range", "quantum > range");
    expect_err("hp_space:\n  a:\n    param_type: loguniform\n    range: [0, 1]\n", "hpo_config.yaml:4:",
               "log range must be positive", "log range touching 0");
    expect_err("hp_space:\n  a:\n    param_type: qloguniform\n    range: [-4, 8, 2]\n", "hpo_config.yaml:4:",
               "log range must be positive", "negative log range");
    expect_err("mode: maximum\nhp_space:\n  a:\n    param_type: uniform\n    range: [0, 1]\n", "hpo_config.yaml:1:",
               "mode: expected max or min", "bad mode");
    expect_err("early_stop: sometimes\nhp_space:\n  a:\n    param_type: uniform\n    range: [0, 1]\n",
               "hpo_config.yaml:1:", "early_stop", "bad early_stop");
    expect_err("num_trials: many\nhp_space:\n  a:\n    param_type: uniform\n    range: [0, 1]\n",
               "hpo_config.yaml:1:", "num_trials: expected an integer, got 'many'", "bad integer");
    expect_err("hp_space:\n  a:\n    param_type: uniform\n    range: 3\n", "hpo_config.yaml:4:", "expected a list",
               "range not a list");
    expect_err("metric: mAP\n", "hpo_config.yaml", "hp_space: missing", "missing hp_space");
    expect_err("hp_space: [1,\n", "hpo_config.yaml:", "", "YAML syntax error");

    /* unknown hyper-parameter name against the template's list, with the line of the name */
    s = hpo_config_parse(&cfg, ote_default, "hpo_config.yaml");
    static const char *const known[] = {"learning_parameters.learning_rate", "learning_parameters.batch_size", NULL};
    static const char *const known2[] = {"learning_parameters.learning_rate", NULL};
    EXPECT(s == 0 && hpo_config_check_names(&cfg, known) == 0, "known hyper-parameter names accepted");
    s = hpo_config_check_names(&cfg, known2);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "hpo_config.yaml:11: hp_space: unknown hyper-parameter "
                                                    "'learning_parameters.batch_size'"),
            "unknown hyper-parameter name -> \"%s\"", ote_errmsg());

    /* yamldoc: files and typed getters */
    yd_doc d;
    s = yd_load_file(&d, "/nonexistent/hpo_config.yaml");
    EXPECT(s == OTE_EIO && strstr(ote_errmsg(), "/nonexistent/hpo_config.yaml"), "missing file -> EIO naming it");
    s = yd_load_string(&d, "a: 'x'\nb: [1, 2.5e-3]\nc: {d: true}\n", "t.yaml");
    const yd_node *bn = yd_map_get(d.root, "b");
    double dv = 0;
    int bv = 0;
    EXPECT(s == 0 && bn && bn->kind == YD_SEQ && bn->n == 2 && yd_get_double(&d, bn->items[1], "b", &dv) == 0 &&
                dv == 2.5e-3 && yd_get_bool(&d, yd_map_get(yd_map_get(d.root, "c"), "d"), "c.d", &bv) == 0 && bv == 1 &&
                !yd_is_number(yd_map_get(d.root, "a")) && yd_map_get(d.root, "c")->line == 3,
            "yamldoc tree, lines, quoted strings are not numbers");
    yd_free(&d);
    s = yd_load_string(&d, "a: 1\na: 2\n", "dup.yaml");
    EXPECT(s < 0 && strstr(ote_errmsg(), "dup.yaml:2:") && strstr(ote_errmsg(), "duplicate key 'a'"),
            "duplicate key rejected with line (%s)", ote_errmsg());
    return expect_finish();
}
