/* gp.h - Gaussian-process regression for the SMBO surrogate.
 *
 * Model: y_norm ~ GP(0, k) + N(0, sn2), with the ARD Matern-5/2 kernel
 *     k(a, b) = sf2 * (1 + sqrt5 r + 5 r^2 / 3) * exp(-sqrt5 r),  r^2 = sum_j ((a_j - b_j) / l_j)^2
 * on inputs in [0,1]^d. Targets are normalised like scikit-learn's normalize_y=True
 * (y_norm = (y - mean) / std, std with ddof 0, a zero std treated as 1); the noise sn2 is in
 * normalised units, like sklearn's `alpha`. So with fixed hyper-parameters the posterior equals
 * sklearn's GaussianProcessRegressor(ConstantKernel(sf2) * Matern(l, nu=2.5), alpha=sn2,
 * normalize_y=True, optimizer=None) - which is what tests/test_hpo_gp.c checks.
 *
 * Hyper-parameters theta = (log l_1..log l_d, log sf2, log sn2) are fitted by maximising the log
 * marginal likelihood (analytic gradient, NLopt L-BFGS, box bounds below, restarts from random
 * points plus the previous optimum). Posterior via a hand-written Cholesky factorisation.
 *
 * Ownership: gp owns its copies of the data and its factor. Not thread-safe per object.
 */
#ifndef OTE_HPO_GP_H
#define OTE_HPO_GP_H

#include "engine/rng.h"

#define GP_MAX_DIM 16
/* Bounds of the log hyper-parameters (inputs live in [0,1], targets are normalised). */
#define GP_LOG_LS_MIN (-4.605170185988091) /* l >= 0.01 */
#define GP_LOG_LS_MAX (3.0)                /* l <= ~20 */
#define GP_LOG_SF2_MIN (-3.0)
#define GP_LOG_SF2_MAX (3.0)
#define GP_LOG_SN2_MIN (-13.815510557964274) /* sn2 >= 1e-6 */
#define GP_LOG_SN2_MAX (0.0)                 /* sn2 <= 1 */

typedef struct gp {
    int d, n, cap;
    double *x;      /* (n, d) inputs in [0,1], row-major */
    double *y;      /* (n) normalised targets */
    double ymean, ystd;
    double log_ls[GP_MAX_DIM], log_sf2, log_sn2;
    double *L;      /* (n, n) lower Cholesky factor of K + sn2 I, row-major */
    double *alpha;  /* (n) (K + sn2 I)^-1 y */
    double *work;   /* (n, n) scratch for the gradient */
    int factored;   /* L/alpha match the current data and hyper-parameters */
    long n_lml;     /* likelihood evaluations so far (for benchmarks) */
} gp;

int gp_init(gp *g, int d);
void gp_free(gp *g);
/* Copies n points (x in [0,1]^d) and targets, normalises the targets. */
int gp_set_data(gp *g, const double *x, const double *y, int n);
void gp_set_hyper(gp *g, const double *log_ls, double log_sf2, double log_sn2);
/* Factorises K + sn2 I (adding jitter up to 1e-6 if needed). 0 or OTE_ENAN. */
int gp_factor(gp *g);
/* Log marginal likelihood (normalised targets) at the current hyper-parameters; if grad != NULL
 * also its gradient w.r.t. theta (d + 2 values). -HUGE_VAL if K is not positive definite. */
double gp_lml(gp *g, double *grad);
/* Maximum-likelihood fit: L-BFGS from the current theta and from `restarts` random points in the
 * bounds, each at most max_evals evaluations; keeps the best and factorises. 0 or OTE_ENAN. */
int gp_fit(gp *g, rng *r, int restarts, int max_evals);
/* Posterior mean and variance (of the latent f, no noise) at m points xs (m, d), normalised units. */
void gp_predict(gp *g, const double *xs, int m, double *mu, double *var);
/* log(z Phi(z) + phi(z)), stable for every finite z (far tail via an asymptotic series). */
double gp_log_h(double z);
/* log expected improvement over `best` for maximisation, posterior N(mu, sigma^2). */
double gp_log_ei(double mu, double sigma, double best);

#endif
