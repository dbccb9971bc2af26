/* gp.c - ARD Matern-5/2 Gaussian process: Cholesky posterior, log marginal likelihood with its
 * analytic gradient, NLopt maximum-likelihood fit, and the stable log expected improvement.
 *
 * Gradient of the log marginal likelihood: d/dtheta = 0.5 tr((alpha alpha^T - K^-1) dK/dtheta),
 * with dK/dlog(l_j) = sf2 * (5/3) (1 + sqrt5 r) exp(-sqrt5 r) * ((a_j - b_j) / l_j)^2 (no 1/r
 * singularity), dK/dlog(sf2) = the signal part of K, dK/dlog(sn2) = sn2 I.
 */
#include "hpo/gp.h"

#include <gsl/gsl_sf_erf.h>
#include <math.h>
#include <nlopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

#define SQRT5 2.23606797749979
#define LOG_2PI 1.8378770664093453

int gp_init(gp *g, int d) {
    memset(g, 0, sizeof *g);
    if (d < 1 || d > GP_MAX_DIM) return ote_err(OTE_EINVAL, "gp: dimension %d outside 1..%d", d, GP_MAX_DIM);
    g->d = d;
    for (int j = 0; j < d; j++) g->log_ls[j] = log(0.3);
    g->log_sf2 = 0;
    g->log_sn2 = log(1e-4);
    g->ystd = 1;
    return 0;
}

void gp_free(gp *g) {
    free(g->x);
    free(g->y);
    free(g->L);
    free(g->alpha);
    free(g->work);
    memset(g, 0, sizeof *g);
}

int gp_set_data(gp *g, const double *x, const double *y, int n) {
    if (n > g->cap) {
        int cap = n + 16;
        double *nx = realloc(g->x, (size_t)cap * (size_t)g->d * sizeof *nx);
        if (nx) g->x = nx;
        double *ny = realloc(g->y, (size_t)cap * sizeof *ny);
        if (ny) g->y = ny;
        double *nl = realloc(g->L, (size_t)cap * (size_t)cap * sizeof *nl);
        if (nl) g->L = nl;
        double *na = realloc(g->alpha, (size_t)cap * sizeof *na);
        if (na) g->alpha = na;
        double *nw = realloc(g->work, (size_t)cap * (size_t)cap * sizeof *nw);
        if (nw) g->work = nw;
        if (!nx || !ny || !nl || !na || !nw) return ote_err(OTE_ENOMEM, "gp: cannot hold %d points", n);
        g->cap = cap;
    }
    g->n = n;
    memcpy(g->x, x, (size_t)n * (size_t)g->d * sizeof *x);
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += y[i];
    m = n ? m / n : 0;
    for (int i = 0; i < n; i++) v += (y[i] - m) * (y[i] - m);
    double sd = n ? sqrt(v / n) : 1;
    if (!(sd > 0) || !isfinite(sd)) sd = 1; /* sklearn's _handle_zeros_in_scale */
    g->ymean = m;
    g->ystd = sd;
    for (int i = 0; i < n; i++) g->y[i] = (y[i] - m) / sd;
    g->factored = 0;
    return 0;
}

void gp_set_hyper(gp *g, const double *log_ls, double log_sf2, double log_sn2) {
    memcpy(g->log_ls, log_ls, (size_t)g->d * sizeof *log_ls);
    g->log_sf2 = log_sf2;
    g->log_sn2 = log_sn2;
    g->factored = 0;
}

/* Scaled squared distance and the kernel value for two points. */
static double kern(const gp *g, const double *inv_ls, const double *a, const double *b, double sf2) {
    double r2 = 0;
    for (int j = 0; j < g->d; j++) {
        double t = (a[j] - b[j]) * inv_ls[j];
        r2 += t * t;
    }
    double r = sqrt(r2);
    return sf2 * (1 + SQRT5 * r + (5.0 / 3.0) * r2) * exp(-SQRT5 * r);
}

/* In-place Cholesky of the lower triangle of A (n x n, row-major). 0 or -1 if not PD. */
static int cholesky(double *A, int n) {
    for (int j = 0; j < n; j++) {
        double *rj = A + (size_t)j * n;
        double s = rj[j];
        for (int k = 0; k < j; k++) s -= rj[k] * rj[k];
        if (!(s > 0)) return -1;
        double ljj = sqrt(s);
        rj[j] = ljj;
        for (int i = j + 1; i < n; i++) {
            double *ri = A + (size_t)i * n;
            /* four partial sums: independent chains instead of one long dependency */
            double t0 = 0, t1 = 0, t2 = 0, t3 = 0;
            int k = 0;
            for (; k + 4 <= j; k += 4) {
                t0 += ri[k] * rj[k];
                t1 += ri[k + 1] * rj[k + 1];
                t2 += ri[k + 2] * rj[k + 2];
                t3 += ri[k + 3] * rj[k + 3];
            }
            for (; k < j; k++) t0 += ri[k] * rj[k];
            ri[j] = (ri[j] - ((t0 + t1) + (t2 + t3))) / ljj;
        }
    }
    return 0;
}

/* Solves L z = b in place (forward substitution). */
static void solve_lower(const double *L, int n, double *b) {
    for (int i = 0; i < n; i++) {
        const double *ri = L + (size_t)i * n;
        double t0 = 0, t1 = 0, t2 = 0, t3 = 0; /* independent partial sums, as in cholesky() */
        int k = 0;
        for (; k + 4 <= i; k += 4) {
            t0 += ri[k] * b[k];
            t1 += ri[k + 1] * b[k + 1];
            t2 += ri[k + 2] * b[k + 2];
            t3 += ri[k + 3] * b[k + 3];
        }
        for (; k < i; k++) t0 += ri[k] * b[k];
        b[i] = (b[i] - ((t0 + t1) + (t2 + t3))) / ri[i];
    }
}

/* Solves L^T z = b in place (back substitution). */
static void solve_upper_t(const double *L, int n, double *b) {
    for (int i = n - 1; i >= 0; i--) {
        double t = b[i];
        for (int k = i + 1; k < n; k++) t -= L[(size_t)k * n + i] * b[k];
        b[i] = t / L[(size_t)i * n + i];
    }
}

int gp_factor(gp *g) {
    int n = g->n, d = g->d;
    double inv_ls[GP_MAX_DIM];
    for (int j = 0; j < d; j++) inv_ls[j] = exp(-g->log_ls[j]);
    double sf2 = exp(g->log_sf2), sn2 = exp(g->log_sn2);
    for (double jitter = 0;; jitter = jitter == 0 ? 1e-10 : jitter * 10) {
        for (int i = 0; i < n; i++) {
            double *ri = g->L + (size_t)i * n;
            for (int k = 0; k < i; k++) ri[k] = kern(g, inv_ls, g->x + (size_t)i * d, g->x + (size_t)k * d, sf2);
            ri[i] = sf2 + sn2 + jitter;
        }
        if (cholesky(g->L, n) == 0) break;
        if (jitter >= 1e-6) {
            g->factored = 0;
            return ote_err(OTE_ENAN, "gp: kernel matrix not positive definite (n=%d)", n);
        }
    }
    memcpy(g->alpha, g->y, (size_t)n * sizeof *g->alpha);
    solve_lower(g->L, n, g->alpha);
    solve_upper_t(g->L, n, g->alpha);
    g->factored = 1;
    return 0;
}

double gp_lml(gp *g, double *grad) {
    int n = g->n, d = g->d;
    g->n_lml++;
    if (gp_factor(g) < 0) {
        if (grad) memset(grad, 0, (size_t)(d + 2) * sizeof *grad);
        return -HUGE_VAL;
    }
    double lml = 0;
    for (int i = 0; i < n; i++) lml += -0.5 * g->y[i] * g->alpha[i] - log(g->L[(size_t)i * n + i]);
    lml -= 0.5 * n * LOG_2PI;
    if (!grad) return lml;
    /* T row c = column c of L^-1 (zero before c); K^-1_ij = sum_{k >= max(i,j)} T[i][k] T[j][k]. */
    double *T = g->work;
    for (int c = 0; c < n; c++) {
        double *t = T + (size_t)c * n;
        for (int i = 0; i < c; i++) t[i] = 0;
        for (int i = c; i < n; i++) {
            const double *ri = g->L + (size_t)i * n;
            double s = i == c ? 1.0 : 0.0;
            for (int k = c; k < i; k++) s -= ri[k] * t[k];
            t[i] = s / ri[i];
        }
    }
    double inv_ls[GP_MAX_DIM];
    for (int j = 0; j < d; j++) inv_ls[j] = exp(-g->log_ls[j]);
    double sf2 = exp(g->log_sf2), sn2 = exp(g->log_sn2);
    double gl[GP_MAX_DIM] = {0}, gsf = 0, gsn = 0;
    for (int i = 0; i < n; i++) {
        const double *ti = T + (size_t)i * n;
        for (int j = 0; j <= i; j++) {
            const double *tj = T + (size_t)j * n;
            double kinv = 0;
            for (int k = i; k < n; k++) kinv += ti[k] * tj[k];
            double w = g->alpha[i] * g->alpha[j] - kinv;
            if (i == j) {
                gsf += 0.5 * w * sf2;
                gsn += 0.5 * w * sn2;
                continue;
            }
            const double *a = g->x + (size_t)i * d, *b = g->x + (size_t)j * d;
            double r2 = 0, s2[GP_MAX_DIM];
            for (int m = 0; m < d; m++) {
                double t = (a[m] - b[m]) * inv_ls[m];
                s2[m] = t * t;
                r2 += s2[m];
            }
            double r = sqrt(r2), e = exp(-SQRT5 * r);
            gsf += w * sf2 * (1 + SQRT5 * r + (5.0 / 3.0) * r2) * e;
            double c = w * sf2 * (5.0 / 3.0) * (1 + SQRT5 * r) * e;
            for (int m = 0; m < d; m++) gl[m] += c * s2[m];
        }
    }
    for (int m = 0; m < d; m++) grad[m] = gl[m];
    grad[d] = gsf;
    grad[d + 1] = gsn;
    return lml;
}

static double nl_obj(unsigned nt, const double *th, double *grad, void *data) {
    gp *g = data;
    (void)nt;
    gp_set_hyper(g, th, th[g->d], th[g->d + 1]);
    double v = gp_lml(g, grad);
    if (!isfinite(v)) {
        if (grad) memset(grad, 0, (size_t)(g->d + 2) * sizeof *grad);
        return -1e300;
    }
    return v;
}

int gp_fit(gp *g, rng *r, int restarts, int max_evals) {
    int d = g->d, nt = d + 2;
    double lo[GP_MAX_DIM + 2], hi[GP_MAX_DIM + 2], th[GP_MAX_DIM + 2], best[GP_MAX_DIM + 2];
    for (int j = 0; j < d; j++) lo[j] = GP_LOG_LS_MIN, hi[j] = GP_LOG_LS_MAX;
    lo[d] = GP_LOG_SF2_MIN, hi[d] = GP_LOG_SF2_MAX;
    lo[d + 1] = GP_LOG_SN2_MIN, hi[d + 1] = GP_LOG_SN2_MAX;
    memcpy(best, g->log_ls, (size_t)d * sizeof *best);
    best[d] = g->log_sf2;
    best[d + 1] = g->log_sn2;
    for (int j = 0; j < nt; j++) best[j] = fmin(fmax(best[j], lo[j]), hi[j]);
    double best_v = nl_obj((unsigned)nt, best, NULL, g);
    nlopt_opt o = nlopt_create(NLOPT_LD_LBFGS, (unsigned)nt);
    if (!o) return ote_err(OTE_ENOMEM, "gp: cannot create NLopt optimiser");
    nlopt_set_lower_bounds(o, lo);
    nlopt_set_upper_bounds(o, hi);
    nlopt_set_max_objective(o, nl_obj, g);
    nlopt_set_maxeval(o, max_evals);
    nlopt_set_ftol_rel(o, 1e-7);
    nlopt_set_xtol_rel(o, 1e-5);
    for (int s = 0; s <= restarts; s++) {
        if (s == 0)
            memcpy(th, best, sizeof th);
        else
            for (int j = 0; j < nt; j++) th[j] = lo[j] + rng_uniform(r) * (hi[j] - lo[j]);
        double v = -HUGE_VAL;
        nlopt_optimize(o, th, &v); /* a failed run still leaves its best point in th/v */
        if (isfinite(v) && v > best_v) {
            best_v = v;
            memcpy(best, th, sizeof best);
        }
    }
    nlopt_destroy(o);
    gp_set_hyper(g, best, best[d], best[d + 1]);
    return gp_factor(g);
}

/* Points per block of gp_predict: the triangular solve runs over a block at once, so its inner
 * loop is a fixed-length axpy across the block (vectorised) and L is read once per block instead
 * of once per point. */
#define GP_PRED_BLOCK 32

void gp_predict(gp *g, const double *xs, int m, double *mu, double *var) {
    int n = g->n, d = g->d;
    if (!g->factored && n > 0) gp_factor(g);
    double inv_ls[GP_MAX_DIM];
    for (int j = 0; j < d; j++) inv_ls[j] = exp(-g->log_ls[j]);
    double sf2 = exp(g->log_sf2);
    if (m < 8 && n > 0 && g->factored) { /* a few points (the local optimiser): one at a time */
        double kbuf[512];
        double *k = n <= 512 ? kbuf : malloc((size_t)n * sizeof *k);
        for (int p = 0; p < m; p++) {
            const double *x = xs + (size_t)p * d;
            if (!k) {
                mu[p] = 0, var[p] = sf2;
                continue;
            }
            double f = 0;
            for (int i = 0; i < n; i++) {
                k[i] = kern(g, inv_ls, x, g->x + (size_t)i * d, sf2);
                f += k[i] * g->alpha[i];
            }
            solve_lower(g->L, n, k);
            double v = sf2;
            for (int i = 0; i < n; i++) v -= k[i] * k[i];
            mu[p] = f;
            var[p] = v > 0 ? v : 0;
        }
        if (k != kbuf) free(k);
        return;
    }
    double *kb = n > 0 && g->factored ? malloc((size_t)n * GP_PRED_BLOCK * sizeof *kb) : NULL;
    if (!kb) {
        for (int p = 0; p < m; p++) mu[p] = 0, var[p] = sf2;
        return;
    }
    for (int p0 = 0; p0 < m; p0 += GP_PRED_BLOCK) {
        int b = m - p0 < GP_PRED_BLOCK ? m - p0 : GP_PRED_BLOCK;
        double f[GP_PRED_BLOCK] = {0}, v[GP_PRED_BLOCK];
        /* kb row i = k(x_i, block points); unused columns stay 0 */
        for (int i = 0; i < n; i++) {
            double *ki = kb + (size_t)i * GP_PRED_BLOCK;
            const double *xi = g->x + (size_t)i * d;
            for (int p = 0; p < b; p++) ki[p] = kern(g, inv_ls, xs + (size_t)(p0 + p) * d, xi, sf2);
            for (int p = b; p < GP_PRED_BLOCK; p++) ki[p] = 0;
            for (int p = 0; p < GP_PRED_BLOCK; p++) f[p] += ki[p] * g->alpha[i];
        }
        /* forward substitution L Z = K for the whole block */
        for (int p = 0; p < GP_PRED_BLOCK; p++) v[p] = sf2;
        for (int i = 0; i < n; i++) {
            const double *ri = g->L + (size_t)i * n;
            double *restrict zi = kb + (size_t)i * GP_PRED_BLOCK;
            int k = 0;
            for (; k + 4 <= i; k += 4) { /* 4 rows per pass: one load/store of zi per 4 updates */
                const double l0 = ri[k], l1 = ri[k + 1], l2 = ri[k + 2], l3 = ri[k + 3];
                const double *restrict z0 = kb + (size_t)k * GP_PRED_BLOCK, *restrict z1 = z0 + GP_PRED_BLOCK,
                                       *restrict z2 = z1 + GP_PRED_BLOCK, *restrict z3 = z2 + GP_PRED_BLOCK;
                for (int p = 0; p < GP_PRED_BLOCK; p++)
                    zi[p] -= (l0 * z0[p] + l1 * z1[p]) + (l2 * z2[p] + l3 * z3[p]);
            }
            for (; k < i; k++) {
                const double l = ri[k], *restrict zk = kb + (size_t)k * GP_PRED_BLOCK;
                for (int p = 0; p < GP_PRED_BLOCK; p++) zi[p] -= l * zk[p];
            }
            const double inv = ri[i];
            for (int p = 0; p < GP_PRED_BLOCK; p++) {
                zi[p] /= inv;
                v[p] -= zi[p] * zi[p];
            }
        }
        for (int p = 0; p < b; p++) {
            mu[p0 + p] = f[p];
            var[p0 + p] = v[p] > 0 ? v[p] : 0; /* sklearn clips negative variances to 0 as well */
        }
    }
    free(kb);
}

double gp_log_h(double z) {
    if (z > -1) {
        double h = z * 0.5 * erfc(-z / M_SQRT2) + exp(-0.5 * z * z) / sqrt(2 * M_PI);
        return log(h);
    }
    double lphi = -0.5 * z * z - 0.5 * LOG_2PI;
    if (z > -40) {
        /* h = phi(z) (1 + z sqrt(pi/2) erfcx(-z/sqrt2)), erfcx(t) = exp(log_erfc(t) + t^2) */
        double t = -z / M_SQRT2;
        double erfcx = exp(gsl_sf_log_erfc(t) + t * t);
        return lphi + log1p(z * sqrt(M_PI / 2) * erfcx);
    }
    /* Asymptotic series: h = phi(z) / z^2 (1 - 3/z^2 + 15/z^4 - 105/z^6 + 945/z^8 - 10395/z^10);
     * at |z| >= 40 the first omitted term is below 1e-14 relative. */
    double w = 1 / (z * z);
    double s = w * (-3 + w * (15 + w * (-105 + w * (945 + w * -10395))));
    return lphi - 2 * log(fabs(z)) + log1p(s);
}

double gp_log_ei(double mu, double sigma, double best) {
    if (!(sigma > 1e-300)) return mu > best ? log(mu - best) : -HUGE_VAL;
    return log(sigma) + gp_log_h((mu - best) / sigma);
}
