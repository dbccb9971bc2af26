/* smbo.c - Sobol / grid initial design, output transforms, GP fit schedule, trust region and
 * log-EI maximisation (see smbo.h). propose_legacy() is the de9139a optimiser, unchanged. */
#include "hpo/smbo.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_min.h>
#include <gsl/gsl_qrng.h>
#include <math.h>
#include <nlopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

/* legacy candidate counts */
#define L_RANDOM 256
#define L_LOCAL 128
#define L_REFINE 3
#define REFINE_EVALS 60
#define N_TOP 5
#define N_TR 256 /* trust-region candidates */

void smbo_opts_default(smbo_opts *o) {
    memset(o, 0, sizeof *o);
    o->ytf = SMBO_YTF_YJ;
    o->tr = 1;
    o->n_cand = 512;
    o->n_local = 128;
    o->starts = 3;
    o->fit_max = 150;
    o->grid_max = 4096;
    o->lowd = 2;
}

void smbo_opts_legacy(smbo_opts *o) {
    memset(o, 0, sizeof *o);
    o->legacy = 1;
}

static const char *const ytf_names[] = {"none", "yj", "rank", "log"};

int smbo_opts_parse(smbo_opts *o, const char *s) {
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf) return ote_err(OTE_EINVAL, "smbo options too long");
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return ote_err(OTE_EINVAL, "smbo option '%s': expected key=value", tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        char *end;
        long iv = strtol(v, &end, 10);
        int is_num = *v && !*end;
        if (!strcmp(k, "ytf")) {
            int f = -1;
            for (int i = 0; i < 4; i++)
                if (!strcmp(v, ytf_names[i])) f = i;
            if (f < 0) return ote_err(OTE_EINVAL, "smbo option ytf=%s: expected none, yj, rank or log", v);
            o->ytf = f;
            continue;
        }
        int *dst = !strcmp(k, "legacy")     ? &o->legacy
                   : !strcmp(k, "tr")       ? &o->tr
                   : !strcmp(k, "cand")     ? &o->n_cand
                   : !strcmp(k, "local")    ? &o->n_local
                   : !strcmp(k, "starts")   ? &o->starts
                   : !strcmp(k, "fit_max")  ? &o->fit_max
                   : !strcmp(k, "grid_max") ? &o->grid_max
                   : !strcmp(k, "lowd")     ? &o->lowd
                                            : NULL;
        if (!dst) return ote_err(OTE_EINVAL, "smbo option '%s': unknown key", k);
        if (!is_num || iv < 0 || iv > 1000000) return ote_err(OTE_EINVAL, "smbo option %s=%s: expected 0..1000000", k, v);
        *dst = (int)iv;
    }
    return 0;
}

void smbo_opts_format(const smbo_opts *o, char *buf, size_t size) {
    if (o->legacy) {
        snprintf(buf, size, "legacy=1");
        return;
    }
    snprintf(buf, size, "ytf=%s,tr=%d,cand=%d,local=%d,starts=%d,fit_max=%d,grid_max=%d,lowd=%d",
             (unsigned)o->ytf < 4 ? ytf_names[o->ytf] : "?", o->tr, o->n_cand, o->n_local, o->starts, o->fit_max,
             o->grid_max, o->lowd);
}

/* ---- grid tables ---- */

static int is_discrete(const hp_param *p) {
    return p->type == HP_QUNIFORM || p->type == HP_QLOGUNIFORM || p->type == HP_CHOICE;
}

static long q_kmin(const hp_param *p) { return (long)ceil(p->lo / p->q - 1e-9); }
static long q_kmax(const hp_param *p) { return (long)floor(p->hi / p->q + 1e-9); }

/* level index of a value of a discrete parameter */
static int level_of(const smbo *s, int j, double v) {
    const hp_param *p = &s->sp->p[j];
    double x = hp_snap(p, v);
    if (p->type == HP_CHOICE) {
        for (int k = 0; k < s->levels[j]; k++)
            if (s->level_val[j][k] == x) return k;
        return 0;
    }
    long k = (long)rint(x / p->q) - q_kmin(p);
    return k < 0 ? 0 : k >= s->levels[j] ? s->levels[j] - 1 : (int)k;
}

static int grid_setup(smbo *s) {
    const hp_space *sp = s->sp;
    double n = 1;
    for (int j = 0; j < s->d; j++) {
        const hp_param *p = &sp->p[j];
        if (!is_discrete(p)) return 0;
        long nl = p->type == HP_CHOICE ? p->nchoice : q_kmax(p) - q_kmin(p) + 1;
        if (nl < 1) return 0;
        n *= (double)nl;
        if (n > s->opt.grid_max) return 0;
        s->levels[j] = (int)nl;
    }
    for (int j = 0; j < s->d; j++) {
        const hp_param *p = &sp->p[j];
        int nl = s->levels[j];
        s->level_val[j] = malloc((size_t)nl * sizeof(double));
        s->level_enc[j] = malloc((size_t)nl * sizeof(double));
        if (!s->level_val[j] || !s->level_enc[j]) return ote_err(OTE_ENOMEM, "smbo: out of memory");
        for (int k = 0; k < nl; k++) {
            double v = p->type == HP_CHOICE ? p->choice[k] : hp_snap(p, (double)(q_kmin(p) + k) * p->q);
            s->level_val[j][k] = v;
            s->level_enc[j][k] = hp_encode(p, v);
        }
    }
    s->grid_n = (long)n;
    s->grid_used = malloc((size_t)s->grid_n);
    if (!s->grid_used) return ote_err(OTE_ENOMEM, "smbo: out of memory");
    return 0;
}

/* mixed-radix grid index <-> level indices (parameter 0 varies fastest) */
static void grid_levels(const smbo *s, long g, int *k) {
    for (int j = 0; j < s->d; j++) {
        k[j] = (int)(g % s->levels[j]);
        g /= s->levels[j];
    }
}

static long grid_index(const smbo *s, const int *k) {
    long g = 0;
    for (int j = s->d - 1; j >= 0; j--) g = g * s->levels[j] + k[j];
    return g;
}

/* marks used grid points; returns how many grid points are free */
static long grid_mark(smbo *s, const double *used, int n_used) {
    memset(s->grid_used, 0, (size_t)s->grid_n);
    long taken = 0;
    for (int i = 0; i < n_used; i++) {
        int k[HP_MAX_PARAMS];
        for (int j = 0; j < s->d; j++) k[j] = level_of(s, j, used[(size_t)i * s->d + j]);
        long g = grid_index(s, k);
        if (!s->grid_used[g]) taken++;
        s->grid_used[g] = 1;
    }
    return s->grid_n - taken;
}

static void grid_value(const smbo *s, long g, double *v, double *u) {
    int k[HP_MAX_PARAMS];
    grid_levels(s, g, k);
    for (int j = 0; j < s->d; j++) {
        if (v) v[j] = s->level_val[j][k[j]];
        if (u) u[j] = s->level_enc[j][k[j]];
    }
}

int smbo_init_opts(smbo *s, const hp_space *sp, int num_init, uint64_t seed, const smbo_opts *o) {
    memset(s, 0, sizeof *s);
    s->sp = sp;
    s->d = sp->n;
    s->num_init = num_init < 1 ? 1 : num_init;
    s->seed = seed;
    if (o)
        s->opt = *o;
    else
        smbo_opts_default(&s->opt);
    if (!s->opt.legacy && s->d <= s->opt.lowd) { /* see smbo_opts.lowd */
        s->opt.ytf = SMBO_YTF_NONE;
        s->opt.tr = 0;
        s->opt.n_cand = 256;
    }
    rng_seed(&s->r, seed);
    for (int j = 0; j < s->d; j++) s->shift[j] = rng_uniform(&s->r);
    CHECK(gp_init(&s->g, s->d));
    if (!s->opt.legacy && s->opt.grid_max > 0) {
        int st = grid_setup(s);
        if (st < 0) {
            smbo_free(s);
            return st;
        }
    }
    return 0;
}

int smbo_init(smbo *s, const hp_space *sp, int num_init, uint64_t seed) {
    return smbo_init_opts(s, sp, num_init, seed, NULL);
}

void smbo_free(smbo *s) {
    gp_free(&s->g);
    for (int j = 0; j < HP_MAX_PARAMS; j++) {
        free(s->level_val[j]);
        free(s->level_enc[j]);
        s->level_val[j] = s->level_enc[j] = NULL;
    }
    free(s->grid_used);
    s->grid_used = NULL;
    s->grid_n = 0;
}

void smbo_sobol_point(const smbo *s, int i, double *u) {
    /* GSL's Sobol generator supports up to 40 dimensions; the space has at most HP_MAX_PARAMS. */
    gsl_qrng *q = gsl_qrng_alloc(gsl_qrng_sobol, (unsigned)s->d);
    ASSERT(q);
    for (int k = 0; k <= i; k++) gsl_qrng_get(q, u);
    gsl_qrng_free(q);
    for (int j = 0; j < s->d; j++) u[j] = fmod(u[j] + s->shift[j], 1.0);
}

static int is_used(const smbo *s, const double *v, const double *used, int n_used) {
    for (int i = 0; i < n_used; i++)
        if (hp_space_same(s->sp, v, used + (size_t)i * s->d)) return 1;
    return 0;
}

/* ---- output transforms ---- */

double smbo_yeo_johnson(double x, double lambda) {
    if (x >= 0) return fabs(lambda) < 1e-12 ? log1p(x) : (pow(x + 1, lambda) - 1) / lambda;
    return fabs(lambda - 2) < 1e-12 ? -log1p(-x) : -(pow(1 - x, 2 - lambda) - 1) / (2 - lambda);
}

typedef struct yj_data {
    const double *x;
    int n;
    double *t;
} yj_data;

/* negative profile log-likelihood of lambda (sklearn's _yeo_johnson_optimize) */
static double yj_nll(double lambda, void *p) {
    yj_data *d = p;
    double m = 0, v = 0, jac = 0;
    for (int i = 0; i < d->n; i++) {
        d->t[i] = smbo_yeo_johnson(d->x[i], lambda);
        m += d->t[i];
        jac += (d->x[i] >= 0 ? 1 : -1) * log1p(fabs(d->x[i]));
    }
    m /= d->n;
    for (int i = 0; i < d->n; i++) v += (d->t[i] - m) * (d->t[i] - m);
    v /= d->n;
    if (!(v > 0) || !isfinite(v)) return HUGE_VAL;
    return -(-0.5 * d->n * log(v) + (lambda - 1) * jac);
}

#define YJ_LO (-3.0)
#define YJ_HI (5.0)

/* lambda maximising the likelihood in [YJ_LO, YJ_HI]: a grid for the bracket, then GSL's Brent */
static double yj_fit(const double *x, int n, double *t) {
    yj_data d = {x, n, t};
    double best_l = 1, best_v = HUGE_VAL;
    const double step = 0.25;
    for (double l = YJ_LO; l <= YJ_HI + 1e-9; l += step) {
        double v = yj_nll(l, &d);
        if (v < best_v) best_v = v, best_l = l;
    }
    if (best_l - step < YJ_LO || best_l + step > YJ_HI || !isfinite(best_v)) return best_l;
    gsl_function F = {yj_nll, &d};
    gsl_min_fminimizer *m = gsl_min_fminimizer_alloc(gsl_min_fminimizer_brent);
    if (!m) return best_l;
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    double lam = best_l;
    if (gsl_min_fminimizer_set_with_values(m, &F, best_l, best_v, best_l - step, yj_nll(best_l - step, &d),
                                           best_l + step, yj_nll(best_l + step, &d)) == GSL_SUCCESS) {
        for (int it = 0; it < 100; it++) {
            if (gsl_min_fminimizer_iterate(m) != GSL_SUCCESS) break;
            double a = gsl_min_fminimizer_x_lower(m), b = gsl_min_fminimizer_x_upper(m);
            if (gsl_min_test_interval(a, b, 1e-10, 0) == GSL_SUCCESS) break;
        }
        lam = gsl_min_fminimizer_x_minimum(m);
    }
    gsl_set_error_handler(old);
    gsl_min_fminimizer_free(m);
    return lam;
}

typedef struct idx_val {
    double v;
    int i;
} idx_val;

static int iv_cmp(const void *a, const void *b) {
    double x = ((const idx_val *)a)->v, y = ((const idx_val *)b)->v;
    return x < y ? -1 : x > y;
}

static int dbl_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int smbo_transform_y(int ytf, const double *y, int n, double *z, double *lambda) {
    if (n <= 0) return 0;
    if (ytf == SMBO_YTF_YJ) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += y[i];
        m /= n;
        for (int i = 0; i < n; i++) v += (y[i] - m) * (y[i] - m);
        double sd = sqrt(v / n);
        if (!(sd > 0) || !isfinite(sd)) sd = 1;
        double *x = malloc((size_t)n * 2 * sizeof *x);
        if (!x) return ote_err(OTE_ENOMEM, "smbo: out of memory");
        for (int i = 0; i < n; i++) x[i] = (y[i] - m) / sd;
        double lam = yj_fit(x, n, x + n);
        for (int i = 0; i < n; i++) z[i] = smbo_yeo_johnson(x[i], lam);
        if (lambda) *lambda = lam;
        free(x);
        return 0;
    }
    if (ytf == SMBO_YTF_RANK) {
        idx_val *a = malloc((size_t)n * sizeof *a);
        if (!a) return ote_err(OTE_ENOMEM, "smbo: out of memory");
        for (int i = 0; i < n; i++) a[i].v = y[i], a[i].i = i;
        qsort(a, (size_t)n, sizeof *a, iv_cmp);
        for (int i = 0; i < n;) {
            int j = i;
            while (j + 1 < n && a[j + 1].v == a[i].v) j++;
            double rank = 0.5 * (i + j) + 1; /* 1-based mean rank of the tie group */
            for (int k = i; k <= j; k++) z[a[k].i] = gsl_cdf_ugaussian_Pinv((rank - 0.5) / n);
            i = j + 1;
        }
        free(a);
        return 0;
    }
    if (ytf == SMBO_YTF_LOG) {
        double *s = malloc((size_t)n * sizeof *s);
        if (!s) return ote_err(OTE_ENOMEM, "smbo: out of memory");
        memcpy(s, y, (size_t)n * sizeof *s);
        qsort(s, (size_t)n, sizeof *s, dbl_cmp);
        double mx = s[n - 1], med = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
        double c = 0.01 * (mx - med);
        if (!(c > 0)) c = 1e-3 * fmax(1, fabs(mx)) + 1e-300;
        for (int i = 0; i < n; i++) z[i] = -log(mx - y[i] + c);
        free(s);
        return 0;
    }
    memcpy(z, y, (size_t)n * sizeof *z);
    return 0;
}

/* ---- trust region ---- */

double smbo_tr_side(const double *y, int n, int n_init, int d) {
    const double L0 = 0.8, LMAX = 1.6, LMIN = 1.0 / 128;
    int fail_tol = d > 4 ? d : 4, succ_tol = 3;
    double L = L0, best = -HUGE_VAL;
    int succ = 0, fail = 0;
    for (int i = 0; i < n; i++) {
        if (i < n_init) {
            best = fmax(best, y[i]);
            continue;
        }
        if (y[i] > best + 1e-3 * fabs(best)) {
            succ++;
            fail = 0;
        } else {
            fail++;
            succ = 0;
        }
        best = fmax(best, y[i]);
        if (succ == succ_tol) L = fmin(2 * L, LMAX), succ = 0;
        if (fail == fail_tol) L /= 2, fail = 0;
        if (L < LMIN) L = L0;
    }
    return L;
}

void smbo_tr_box(const double *c, int d, double L, const double *log_ls, double *lo, double *hi) {
    double mean_log = 0;
    for (int j = 0; j < d; j++) mean_log += log_ls[j];
    mean_log /= d;
    for (int j = 0; j < d; j++) {
        double h = 0.5 * L * exp(log_ls[j] - mean_log);
        lo[j] = fmax(0, c[j] - h);
        hi[j] = fmin(1, c[j] + h);
    }
}

/* ---- acquisition ---- */

typedef struct cand {
    double u[HP_MAX_PARAMS];
    double v;
} cand;


typedef struct acq_ctx {
    smbo *s;
    double best;
    int snap; /* evaluate at the grid-snapped point (discrete parameters) */
} acq_ctx;

static double acq(gp *g, const double *u, double best) {
    double mu, var;
    gp_predict(g, u, 1, &mu, &var);
    double v = gp_log_ei(mu, sqrt(var), best);
    return isfinite(v) ? v : -1e300;
}

/* u moved onto the grid of discrete parameters (continuous ones untouched) */
static void snap_u(const smbo *s, const double *u, double *w) {
    for (int j = 0; j < s->d; j++) {
        const hp_param *p = &s->sp->p[j];
        w[j] = is_discrete(p) ? hp_encode(p, hp_decode(p, u[j])) : u[j];
    }
}

/* log-EI of m candidates at once (batched posterior), snapped like acq_at */
static int acq_batch(const acq_ctx *c, cand *cs, int m) {
    int d = c->s->d;
    double *u = calloc((size_t)(m > 0 ? m : 1) * (d + 2), sizeof *u);
    if (!u) return ote_err(OTE_ENOMEM, "smbo: out of memory");
    double *mu = u + (size_t)m * d, *var = mu + m;
    for (int i = 0; i < m; i++) {
        if (c->snap)
            snap_u(c->s, cs[i].u, u + (size_t)i * d);
        else
            memcpy(u + (size_t)i * d, cs[i].u, (size_t)d * sizeof *u);
    }
    gp_predict(&c->s->g, u, m, mu, var);
    for (int i = 0; i < m; i++) {
        double v = gp_log_ei(mu[i], sqrt(var[i]), c->best);
        cs[i].v = isfinite(v) ? v : -1e300;
    }
    free(u);
    return 0;
}

static double acq_at(const acq_ctx *c, const double *u) {
    if (!c->snap) return acq(&c->s->g, u, c->best);
    double w[HP_MAX_PARAMS];
    snap_u(c->s, u, w);
    return acq(&c->s->g, w, c->best);
}

static double nl_acq(unsigned n, const double *u, double *grad, void *data) {
    (void)n;
    (void)grad;
    return acq_at(data, u);
}

static int cand_cmp(const void *a, const void *b) {
    double x = ((const cand *)a)->v, y = ((const cand *)b)->v;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* indices of the (up to) k best observations, best first */
static int top_k(const double *y, int n, int k, int *top) {
    int nt = 0;
    for (int t = 0; t < k && t < n; t++) {
        int bi = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int q = 0; q < nt; q++) taken |= top[q] == i;
            if (!taken && (bi < 0 || y[i] > y[bi])) bi = i;
        }
        top[nt++] = bi;
    }
    return nt;
}

/* ---- GP fit ---- */

static int fit_legacy(smbo *s, const double *obs, const double *obs_y, int n_obs) {
    double *x = malloc((size_t)n_obs * (size_t)s->d * sizeof *x);
    if (!x) return ote_err(OTE_ENOMEM, "smbo: out of memory");
    for (int i = 0; i < n_obs; i++) hp_space_encode(s->sp, obs + (size_t)i * s->d, x + (size_t)i * s->d);
    int st = gp_set_data(&s->g, x, obs_y, n_obs);
    free(x);
    CHECK(st);
    int grown = n_obs >= s->last_fit_n + (s->last_fit_n + 9) / 10;
    if (s->last_fit_n == 0 || n_obs <= 40 || grown) {
        /* beyond 100 points one likelihood evaluation costs milliseconds: warm start only */
        int restarts = n_obs <= 40 ? 4 : n_obs <= 100 ? 1 : 0;
        st = gp_fit(&s->g, &s->r, restarts, n_obs <= 100 ? 100 : 50);
        s->last_fit_n = n_obs;
    } else {
        st = gp_factor(&s->g);
    }
    return st;
}

/* x (n, d) encoded inputs, z (n) transformed targets */
static int fit_new(smbo *s, const double *x, const double *z, int n) {
    int grown = n >= s->last_fit_n + (s->last_fit_n + 9) / 10;
    if (!(s->last_fit_n == 0 || n <= 40 || grown)) {
        CHECK(gp_set_data(&s->g, x, z, n));
        return gp_factor(&s->g);
    }
    int restarts = n <= 40 ? 4 : n <= 100 ? 1 : 0, evals = n <= 100 ? 100 : 50;
    s->last_fit_n = n;
    if (n <= s->opt.fit_max || s->opt.fit_max < 10) {
        CHECK(gp_set_data(&s->g, x, z, n));
        return gp_fit(&s->g, &s->r, restarts, evals);
    }
    /* hyper-parameters from a subset: the best half (where the search concentrates) and a random
     * half of the rest (so the length scales still see the whole box) */
    int m = s->opt.fit_max, *idx = malloc((size_t)n * sizeof *idx);
    double *sx = malloc((size_t)m * s->d * sizeof *sx), *sz = malloc((size_t)m * sizeof *sz);
    idx_val *a = malloc((size_t)n * sizeof *a);
    int st = 0;
    if (!idx || !sx || !sz || !a) st = ote_err(OTE_ENOMEM, "smbo: out of memory");
    if (st == 0) {
        for (int i = 0; i < n; i++) a[i].v = -z[i], a[i].i = i;
        qsort(a, (size_t)n, sizeof *a, iv_cmp);
        for (int i = 0; i < n; i++) idx[i] = a[i].i;
        int half = m / 2;
        rng_shuffle_int(&s->r, idx + half, n - half);
        for (int i = 0; i < m; i++) {
            memcpy(sx + (size_t)i * s->d, x + (size_t)idx[i] * s->d, (size_t)s->d * sizeof *sx);
            sz[i] = z[idx[i]];
        }
        st = gp_set_data(&s->g, sx, sz, m);
        if (st == 0) st = gp_fit(&s->g, &s->r, restarts, evals);
        if (st == 0) st = gp_set_data(&s->g, x, z, n);
        if (st == 0) st = gp_factor(&s->g);
    }
    free(idx), free(sx), free(sz), free(a);
    return st;
}

/* ---- proposals ---- */

static int random_free(smbo *s, const double *used, int n_used, double *out) {
    double u[HP_MAX_PARAMS], v[HP_MAX_PARAMS];
    for (int k = 0; k < 1000; k++) {
        for (int j = 0; j < s->d; j++) u[j] = rng_uniform(&s->r);
        hp_space_decode(s->sp, u, v);
        if (!is_used(s, v, used, n_used)) {
            memcpy(out, v, (size_t)s->d * sizeof *out);
            return 0;
        }
    }
    return SMBO_EXHAUSTED;
}

/* BOBYQA refinement of log-EI from the best `starts` candidates of c (sorted best first), in place;
 * skip_near: a candidate within 1e-3 (max norm) of an earlier one is the same basin and does not
 * count as a start. c is sorted again afterwards. */
static void refine_bobyqa(acq_ctx *ac, cand *c, int m, int starts, int skip_near) {
    int d = ac->s->d;
    nlopt_opt o = starts > 0 ? nlopt_create(NLOPT_LN_BOBYQA, (unsigned)d) : NULL;
    if (!o) return;
    double lo[HP_MAX_PARAMS], hi[HP_MAX_PARAMS];
    for (int j = 0; j < d; j++) lo[j] = 0, hi[j] = 1;
    nlopt_set_lower_bounds(o, lo);
    nlopt_set_upper_bounds(o, hi);
    nlopt_set_max_objective(o, nl_acq, ac);
    nlopt_set_maxeval(o, REFINE_EVALS);
    nlopt_set_xtol_abs1(o, 1e-4);
    nlopt_set_initial_step1(o, 0.05);
    int done = 0;
    for (int i = 0; i < m && done < starts; i++) {
        int dup = 0;
        for (int k = 0; skip_near && k < i && !dup; k++) {
            double dist = 0;
            for (int j = 0; j < d; j++) dist = fmax(dist, fabs(c[i].u[j] - c[k].u[j]));
            dup = dist < 1e-3;
        }
        if (dup) continue;
        done++;
        double x[HP_MAX_PARAMS], val = -HUGE_VAL;
        memcpy(x, c[i].u, (size_t)d * sizeof *x);
        if (nlopt_optimize(o, x, &val) > 0 && val > c[i].v) {
            memcpy(c[i].u, x, (size_t)d * sizeof *x);
            c[i].v = val;
        }
    }
    nlopt_destroy(o);
    qsort(c, (size_t)m, sizeof *c, cand_cmp);
}

/* The first candidate (in c's order) whose decoded value is not in `used`, into out: 1, or 0. */
static int pick_unused(smbo *s, const cand *c, int m, const double *used, int n_used, double *out) {
    double v[HP_MAX_PARAMS];
    for (int i = 0; i < m; i++) {
        hp_space_decode(s->sp, c[i].u, v);
        if (!is_used(s, v, used, n_used)) {
            memcpy(out, v, (size_t)s->d * sizeof *out);
            return 1;
        }
    }
    return 0;
}

/* Initial design: the next point of the rotated Sobol sequence (from index n_used on, up to 1000
 * further) whose decoded value is not in `used`, into out: 1, or 0 if none. */
static int sobol_unused(smbo *s, const double *used, int n_used, double *out) {
    double u[HP_MAX_PARAMS], v[HP_MAX_PARAMS];
    for (int k = 0; k < 1000; k++) {
        smbo_sobol_point(s, n_used + k, u);
        hp_space_decode(s->sp, u, v);
        if (!is_used(s, v, used, n_used)) {
            memcpy(out, v, (size_t)s->d * sizeof *out);
            return 1;
        }
    }
    return 0;
}

static int propose_legacy(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                          double *out) {
    int d = s->d;
    double u[HP_MAX_PARAMS], v[HP_MAX_PARAMS];
    if (n_used < s->num_init || n_obs < 2) {
        if (sobol_unused(s, used, n_used, out)) return 0;
        return SMBO_EXHAUSTED;
    }
    int st = fit_legacy(s, obs, obs_y, n_obs);
    if (st < 0) return st;
    s->proposals++;
    double best = -HUGE_VAL;
    for (int i = 0; i < s->g.n; i++) best = fmax(best, s->g.y[i]);

    int nc = L_RANDOM + L_LOCAL;
    cand *c = malloc((size_t)nc * sizeof *c);
    if (!c) return ote_err(OTE_ENOMEM, "smbo: out of memory");
    for (int i = 0; i < L_RANDOM; i++)
        for (int j = 0; j < d; j++) c[i].u[j] = rng_uniform(&s->r);
    /* local candidates around the best observed points (encoded) */
    int top[N_TOP];
    int ntop = top_k(obs_y, n_obs, N_TOP, top);
    for (int i = 0; i < L_LOCAL; i++) {
        double base[HP_MAX_PARAMS];
        hp_space_encode(s->sp, obs + (size_t)top[i % ntop] * d, base);
        double sd = (i / ntop) % 2 ? 0.02 : 0.1;
        for (int j = 0; j < d; j++) {
            /* reflect at the walls: clamping would pile candidates onto the boundary, where a
             * long length scale makes EI look flat and the search can stall */
            double w = base[j] + sd * rng_normal(&s->r);
            if (w < 0) w = -w;
            if (w > 1) w = 2 - w;
            c[L_RANDOM + i].u[j] = w < 0 ? 0 : w > 1 ? 1 : w;
        }
    }
    for (int i = 0; i < nc; i++) c[i].v = acq(&s->g, c[i].u, best);
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);

    /* local refinement of the best few (derivative-free, bounded to the unit box) */
    acq_ctx ac = {s, best, 0};
    refine_bobyqa(&ac, c, nc, L_REFINE, 0);
    int found = pick_unused(s, c, nc, used, n_used, out);
    free(c);
    if (found) return 0;
    for (int k = 0; k < 200; k++) {
        for (int j = 0; j < d; j++) u[j] = rng_uniform(&s->r);
        hp_space_decode(s->sp, u, v);
        if (!is_used(s, v, used, n_used)) {
            memcpy(out, v, (size_t)d * sizeof *out);
            return 0;
        }
    }
    return SMBO_EXHAUSTED;
}

/* Encodes the observations and transforms their scores, then fits. *best = max transformed,
 * normalised target; *inc = index of the incumbent. */
static int prepare_gp(smbo *s, const double *obs, const double *obs_y, int n_obs, double *best, int *inc) {
    int d = s->d;
    double *x = malloc((size_t)n_obs * d * sizeof *x), *z = malloc((size_t)n_obs * sizeof *z);
    int st = !x || !z ? ote_err(OTE_ENOMEM, "smbo: out of memory") : 0;
    if (st == 0) {
        for (int i = 0; i < n_obs; i++) hp_space_encode(s->sp, obs + (size_t)i * d, x + (size_t)i * d);
        st = smbo_transform_y(s->opt.ytf, obs_y, n_obs, z, NULL);
    }
    if (st == 0) st = fit_new(s, x, z, n_obs);
    free(x), free(z);
    if (st < 0) return st;
    *best = -HUGE_VAL;
    *inc = 0;
    for (int i = 0; i < s->g.n; i++)
        if (s->g.y[i] > *best) *best = s->g.y[i], *inc = i;
    return 0;
}

static int propose_grid(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                        double *out) {
    int d = s->d;
    long nfree = grid_mark(s, used, n_used);
    if (nfree == 0) return SMBO_EXHAUSTED;
    if (n_used < s->num_init || n_obs < 2) {
        /* the Sobol sequence including its first point, the origin (GSL skips it), so that points
         * 0..2^m-1 fill every 1/2^m stratum of each coordinate once, before the rotation */
        double u[HP_MAX_PARAMS];
        if (n_used == 0)
            for (int j = 0; j < d; j++) u[j] = s->shift[j];
        else
            smbo_sobol_point(s, n_used - 1, u);
        int k[HP_MAX_PARAMS];
        for (int j = 0; j < d; j++) {
            k[j] = (int)floor(u[j] * s->levels[j]);
            if (k[j] >= s->levels[j]) k[j] = s->levels[j] - 1;
        }
        long g = grid_index(s, k);
        if (s->grid_used[g]) { /* nearest free grid point in level units scaled to [0,1] */
            double bd = HUGE_VAL;
            long bg = -1;
            for (long h = 0; h < s->grid_n; h++) {
                if (s->grid_used[h]) continue;
                int kh[HP_MAX_PARAMS];
                grid_levels(s, h, kh);
                double dist = 0;
                for (int j = 0; j < d; j++) {
                    double t = s->levels[j] > 1 ? (double)(kh[j] - k[j]) / (s->levels[j] - 1) : 0;
                    dist += t * t;
                }
                if (dist < bd) bd = dist, bg = h;
            }
            g = bg;
        }
        grid_value(s, g, out, NULL);
        return 0;
    }
    double best;
    int inc;
    CHECK(prepare_gp(s, obs, obs_y, n_obs, &best, &inc));
    s->proposals++;
    /* exact argmax of log-EI over the free grid points (ties: the lowest grid index) */
    cand *c = malloc((size_t)nfree * sizeof *c);
    long *gi = malloc((size_t)nfree * sizeof *gi);
    if (!c || !gi) {
        free(c), free(gi);
        return ote_err(OTE_ENOMEM, "smbo: out of memory");
    }
    long m = 0;
    for (long h = 0; h < s->grid_n; h++)
        if (!s->grid_used[h]) grid_value(s, h, NULL, c[m].u), gi[m++] = h;
    acq_ctx ac = {s, best, 0};
    int st = acq_batch(&ac, c, (int)m);
    long bi = 0;
    for (long i = 1; st == 0 && i < m; i++)
        if (c[i].v > c[bi].v) bi = i;
    if (st == 0) grid_value(s, gi[bi], out, NULL);
    free(c), free(gi);
    return st;
}

static void reflect01(double *w) {
    if (*w < 0) *w = -*w;
    if (*w > 1) *w = 2 - *w;
    *w = *w < 0 ? 0 : *w > 1 ? 1 : *w;
}

static int propose_new(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                       double *out) {
    int d = s->d;
    if (n_used < s->num_init || n_obs < 2) {
        if (sobol_unused(s, used, n_used, out)) return 0;
        return random_free(s, used, n_used, out);
    }
    double best;
    int inc;
    CHECK(prepare_gp(s, obs, obs_y, n_obs, &best, &inc));
    s->proposals++;
    int snap = 0;
    for (int j = 0; j < d; j++) snap |= is_discrete(&s->sp->p[j]);
    acq_ctx ac = {s, best, snap};

    int n_tr = s->opt.tr ? N_TR : 0;
    int nc = s->opt.n_cand + s->opt.n_local + n_tr;
    cand *c = malloc((size_t)(nc > 0 ? nc : 1) * sizeof *c);
    if (!c) return ote_err(OTE_ENOMEM, "smbo: out of memory");
    int m = 0;
    /* Sobol candidates with a fresh rotation per proposal (low discrepancy, new points each time) */
    if (s->opt.n_cand > 0) {
        gsl_qrng *q = gsl_qrng_alloc(gsl_qrng_sobol, (unsigned)d);
        if (!q) {
            free(c);
            return ote_err(OTE_ENOMEM, "smbo: out of memory");
        }
        double sh[HP_MAX_PARAMS];
        for (int j = 0; j < d; j++) sh[j] = rng_uniform(&s->r);
        for (int i = 0; i < s->opt.n_cand; i++, m++) {
            gsl_qrng_get(q, c[m].u);
            for (int j = 0; j < d; j++) c[m].u[j] = fmod(c[m].u[j] + sh[j], 1.0);
        }
        gsl_qrng_free(q);
    }
    int top[N_TOP];
    int ntop = top_k(s->g.y, s->g.n, N_TOP, top);
    for (int i = 0; i < s->opt.n_local; i++, m++) {
        const double *base = s->g.x + (size_t)top[i % ntop] * d;
        double sd = (i / ntop) % 2 ? 0.02 : 0.1;
        for (int j = 0; j < d; j++) {
            c[m].u[j] = base[j] + sd * rng_normal(&s->r);
            reflect01(&c[m].u[j]);
        }
    }
    if (n_tr > 0) {
        double L = smbo_tr_side(s->g.y, s->g.n, s->num_init, d), lo[HP_MAX_PARAMS], hi[HP_MAX_PARAMS];
        smbo_tr_box(s->g.x + (size_t)inc * d, d, L, s->g.log_ls, lo, hi);
        for (int i = 0; i < n_tr; i++, m++)
            for (int j = 0; j < d; j++) c[m].u[j] = lo[j] + rng_uniform(&s->r) * (hi[j] - lo[j]);
    }
    int st = acq_batch(&ac, c, m);
    if (st < 0) {
        free(c);
        return st;
    }
    qsort(c, (size_t)m, sizeof *c, cand_cmp);

    /* BOBYQA from the best distinct candidates (derivative-free, bounded to the unit box) */
    refine_bobyqa(&ac, c, m, s->opt.starts, 1);
    int found = pick_unused(s, c, m, used, n_used, out);
    free(c);
    if (found) return 0;
    return random_free(s, used, n_used, out);
}

int smbo_propose(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                 double *out) {
    if (s->opt.legacy) return propose_legacy(s, used, n_used, obs, obs_y, n_obs, out);
    if (s->grid_n > 0) return propose_grid(s, used, n_used, obs, obs_y, n_obs, out);
    return propose_new(s, used, n_used, obs, obs_y, n_obs, out);
}

int smbo_propose_pending(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                         const double *pending, int n_pending, double *out) {
    if (n_pending <= 0 || n_used < s->num_init || n_obs < 2)
        return smbo_propose(s, used, n_used, obs, obs_y, n_obs, out);
    int d = s->d, n = n_obs + n_pending;
    double *x = malloc((size_t)n * d * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    if (!x || !y) {
        free(x), free(y);
        return ote_err(OTE_ENOMEM, "smbo: out of memory");
    }
    double lie = 0;
    for (int i = 0; i < n_obs; i++) lie += obs_y[i];
    lie /= n_obs;
    memcpy(x, obs, (size_t)n_obs * d * sizeof *x);
    memcpy(x + (size_t)n_obs * d, pending, (size_t)n_pending * d * sizeof *x);
    memcpy(y, obs_y, (size_t)n_obs * sizeof *y);
    for (int i = n_obs; i < n; i++) y[i] = lie;
    int st = smbo_propose(s, used, n_used, x, y, n, out);
    free(x), free(y);
    return st;
}
