/* smbo.h - sequential model-based optimisation: proposes the next configuration from the finished
 * ones (GP surrogate + log expected improvement), always maximising.
 *
 * Proposal rule (DESIGN.md §5):
 *  - while fewer than num_init configurations exist (or fewer than 2 have a score): the next point
 *    of a Sobol sequence (GSL) in [0,1]^d, randomly shifted modulo 1 by the seed (Cranley-Patterson
 *    rotation, so seeds give different but still low-discrepancy designs), decoded onto the grid;
 *    the driver puts the template defaults first, as trial 0;
 *  - afterwards: fit the GP on the finished points (encoded inputs, scores), maximise log-EI over
 *    the box: 256 random candidates + 128 Gaussian perturbations of the 5 best points, the best 3
 *    refined by NLopt BOBYQA (bounded, derivative-free); the best candidate whose decoded value is
 *    not already used (same point on the quantised grid) wins; if every candidate is a duplicate,
 *    up to 200 random draws; if those fail too the grid is exhausted (return 1).
 *  - kernel hyper-parameters: full ML fit with restarts while n <= 40 and whenever n has grown by
 *    10% since the last full fit (4 random restarts up to 40 points, 1 up to 100, then warm start
 *    only); in between only the Cholesky factor is rebuilt with the last
 *    hyper-parameters (keeps a proposal at 200 points well under 0.1 s; see bench/README.md).
 * Deterministic for a seed and a history.
 * Ownership: smbo owns its GP and scratch; the space is borrowed and must outlive it.
 */
#ifndef OTE_HPO_SMBO_H
#define OTE_HPO_SMBO_H

#include <stdint.h>

#include "engine/rng.h"
#include "hpo/gp.h"
#include "hpo/space.h"

typedef struct smbo {
    const hp_space *sp;
    int d;
    int num_init;
    uint64_t seed;
    rng r;
    double shift[HP_MAX_PARAMS]; /* Sobol rotation */
    gp g;
    int last_fit_n;              /* number of points at the last full ML fit (0: never) */
    int proposals;               /* GP-based proposals made */
} smbo;

int smbo_init(smbo *s, const hp_space *sp, int num_init, uint64_t seed);
void smbo_free(smbo *s);

/* The i-th point of the rotated Sobol sequence, encoded ([0,1]^d). */
void smbo_sobol_point(const smbo *s, int i, double *u);

/* Next configuration (real values, on the grid) into out.
 *   used  (n_used, d): every configuration generated so far (finished, failed or running);
 *   obs   (n_obs, d) and obs_y (n_obs): finished configurations and their scores (maximised).
 * Returns 0, 1 when no new point exists on the grid, or a negative OTE_E* code. */
int smbo_propose(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                 double *out);

#endif
