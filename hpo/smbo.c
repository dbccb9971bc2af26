/* smbo.c - Sobol initial design, GP fit schedule and log-EI maximisation (see smbo.h). */
#include "hpo/smbo.h"

#include <gsl/gsl_qrng.h>
#include <math.h>
#include <nlopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/status.h"

#define N_RANDOM 256
#define N_LOCAL 128
#define N_REFINE 3
#define REFINE_EVALS 60

int smbo_init(smbo *s, const hp_space *sp, int num_init, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->sp = sp;
    s->d = sp->n;
    s->num_init = num_init < 1 ? 1 : num_init;
    s->seed = seed;
    rng_seed(&s->r, seed);
    for (int j = 0; j < s->d; j++) s->shift[j] = rng_uniform(&s->r);
    return gp_init(&s->g, s->d);
}

void smbo_free(smbo *s) { gp_free(&s->g); }

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

typedef struct acq_ctx {
    smbo *s;
    double best;
} acq_ctx;

static double acq(gp *g, const double *u, double best) {
    double mu, var;
    gp_predict(g, u, 1, &mu, &var);
    double v = gp_log_ei(mu, sqrt(var), best);
    return isfinite(v) ? v : -1e300;
}

static double nl_acq(unsigned n, const double *u, double *grad, void *data) {
    (void)n;
    (void)grad;
    acq_ctx *c = data;
    return acq(&c->s->g, u, c->best);
}

typedef struct cand {
    double u[HP_MAX_PARAMS];
    double v;
} cand;

static int cand_cmp(const void *a, const void *b) {
    double x = ((const cand *)a)->v, y = ((const cand *)b)->v;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int fit(smbo *s, const double *obs, const double *obs_y, int n_obs) {
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

int smbo_propose(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                 double *out) {
    int d = s->d;
    double u[HP_MAX_PARAMS], v[HP_MAX_PARAMS];
    if (n_used < s->num_init || n_obs < 2) {
        for (int k = 0; k < 1000; k++) {
            smbo_sobol_point(s, n_used + k, u);
            hp_space_decode(s->sp, u, v);
            if (!is_used(s, v, used, n_used)) {
                memcpy(out, v, (size_t)d * sizeof *out);
                return 0;
            }
        }
        return 1;
    }
    int st = fit(s, obs, obs_y, n_obs);
    if (st < 0) return st;
    s->proposals++;
    double best = -HUGE_VAL;
    for (int i = 0; i < s->g.n; i++) best = fmax(best, s->g.y[i]);

    int nc = N_RANDOM + N_LOCAL;
    cand *c = malloc((size_t)nc * sizeof *c);
    if (!c) return ote_err(OTE_ENOMEM, "smbo: out of memory");
    for (int i = 0; i < N_RANDOM; i++)
        for (int j = 0; j < d; j++) c[i].u[j] = rng_uniform(&s->r);
    /* local candidates around the best observed points (encoded) */
    int top[5], ntop = 0;
    for (int t = 0; t < 5 && t < n_obs; t++) {
        int bi = -1;
        for (int i = 0; i < n_obs; i++) {
            int taken = 0;
            for (int k = 0; k < ntop; k++) taken |= top[k] == i;
            if (!taken && (bi < 0 || obs_y[i] > obs_y[bi])) bi = i;
        }
        top[ntop++] = bi;
    }
    for (int i = 0; i < N_LOCAL; i++) {
        double base[HP_MAX_PARAMS];
        hp_space_encode(s->sp, obs + (size_t)top[i % ntop] * d, base);
        double sd = (i / ntop) % 2 ? 0.02 : 0.1;
        for (int j = 0; j < d; j++) {
            /* reflect at the walls: clamping would pile candidates onto the boundary, where a
             * long length scale makes EI look flat and the search can stall */
            double w = base[j] + sd * rng_normal(&s->r);
            if (w < 0) w = -w;
            if (w > 1) w = 2 - w;
            c[N_RANDOM + i].u[j] = w < 0 ? 0 : w > 1 ? 1 : w;
        }
    }
    for (int i = 0; i < nc; i++) c[i].v = acq(&s->g, c[i].u, best);
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);

    /* local refinement of the best few (derivative-free, bounded to the unit box) */
    nlopt_opt o = nlopt_create(NLOPT_LN_BOBYQA, (unsigned)d);
    if (o) {
        double lo[HP_MAX_PARAMS], hi[HP_MAX_PARAMS];
        for (int j = 0; j < d; j++) lo[j] = 0, hi[j] = 1;
        acq_ctx ac = {s, best};
        nlopt_set_lower_bounds(o, lo);
        nlopt_set_upper_bounds(o, hi);
        nlopt_set_max_objective(o, nl_acq, &ac);
        nlopt_set_maxeval(o, REFINE_EVALS);
        nlopt_set_xtol_abs1(o, 1e-4);
        nlopt_set_initial_step1(o, 0.05);
        for (int i = 0; i < N_REFINE && i < nc; i++) {
            double x[HP_MAX_PARAMS], val = -HUGE_VAL;
            memcpy(x, c[i].u, (size_t)d * sizeof *x);
            if (nlopt_optimize(o, x, &val) > 0 && val > c[i].v) {
                memcpy(c[i].u, x, (size_t)d * sizeof *x);
                c[i].v = val;
            }
        }
        nlopt_destroy(o);
        qsort(c, (size_t)nc, sizeof *c, cand_cmp);
    }
    for (int i = 0; i < nc; i++) {
        hp_space_decode(s->sp, c[i].u, v);
        if (!is_used(s, v, used, n_used)) {
            memcpy(out, v, (size_t)d * sizeof *out);
            free(c);
            return 0;
        }
    }
    free(c);
    for (int k = 0; k < 200; k++) {
        for (int j = 0; j < d; j++) u[j] = rng_uniform(&s->r);
        hp_space_decode(s->sp, u, v);
        if (!is_used(s, v, used, n_used)) {
            memcpy(out, v, (size_t)d * sizeof *out);
            return 0;
        }
    }
    return 1;
}
