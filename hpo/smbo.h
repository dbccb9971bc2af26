/* smbo.h - sequential model-based optimisation: proposes the next configuration from the finished
 * ones (GP surrogate + log expected improvement), always maximising.
 *
 * Proposal rule (DESIGN.md §5; bench/README.md records how each choice was measured):
 *  - Discrete spaces (every parameter quniform / qloguniform / choice) with at most
 *    opts.grid_max grid points are enumerated ("grid mode"):
 *      initial design: the next point u of the rotated Sobol sequence picks level
 *      floor(u_j * levels_j) of every parameter, so the levels of each parameter are visited
 *      evenly (a 3-level batch size gets each level once in the first 3-4 trials, whatever its
 *      log spacing); if that grid point was already run, the free grid point nearest to it (in
 *      level-index units scaled to [0,1]) is taken instead;
 *      afterwards: log-EI is evaluated at every grid point not yet run and the best wins, so a
 *      point is never proposed twice; when every grid point has been run smbo_propose returns
 *      SMBO_EXHAUSTED (the driver stops generating trials and says so).
 *  - Other spaces:
 *      initial design: while fewer than num_init configurations exist (or fewer than 2 have a
 *      score), the next point of a Sobol sequence (GSL) in [0,1]^d, randomly shifted modulo 1 by
 *      the seed (Cranley-Patterson rotation), decoded onto the grid, skipping points already used;
 *      afterwards: the scores are warped by a monotone output transform (opts.ytf), the GP is
 *      fitted on the encoded inputs, and log-EI is maximised over a candidate set (freshly
 *      rotated Sobol points, Gaussian perturbations of the best points, and - when the trust
 *      region is on - points of a box around the incumbent), the best opts.starts distinct
 *      candidates refined by NLopt BOBYQA; the best candidate whose decoded value is not already
 *      used wins; if every candidate is a duplicate, random draws; if 1000 fail, SMBO_EXHAUSTED.
 *  - kernel hyper-parameters: full ML fit with restarts while n <= 40 and whenever n has grown by
 *    10% since the last full fit; in between only the Cholesky factor is rebuilt with the last
 *    hyper-parameters. Beyond opts.fit_max points the fit uses a subset (the best half plus a
 *    random half) so that a refit stays cheap at 500 points.
 * opts.legacy selects the optimiser as it was at commit de9139a (no transform, no trust region,
 * random candidates, no grid mode), kept for the benchmark.
 * Deterministic for a seed and a history.
 * Ownership: smbo owns its GP, grid tables and scratch; the space is borrowed and must outlive it.
 */
#ifndef OTE_HPO_SMBO_H
#define OTE_HPO_SMBO_H

#include <stddef.h>
#include <stdint.h>

#include "engine/rng.h"
#include "hpo/gp.h"
#include "hpo/hp.h"

/* smbo_propose's return when no configuration that was not run yet exists */
#define SMBO_EXHAUSTED 1

/* Output transforms of the scores before the GP fit (all monotone increasing). */
typedef enum smbo_ytf {
    SMBO_YTF_NONE = 0, /* the GP's own standardisation only */
    SMBO_YTF_YJ,       /* standardise, then Yeo-Johnson with lambda by maximum likelihood (sklearn) */
    SMBO_YTF_RANK,     /* Gaussian copula: Phi^-1((rank - 0.5) / n), ties get their mean rank */
    SMBO_YTF_LOG,      /* -log(max - y + c), c = 0.01 (max - median): log of the gap to the best */
} smbo_ytf;

typedef struct smbo_opts {
    int legacy;   /* 1: de9139a's optimiser; every field below is ignored */
    int ytf;      /* smbo_ytf */
    int tr;       /* 1: trust-region candidates around the incumbent (side from success/failure) */
    int n_cand;   /* Sobol candidates per proposal */
    int n_local;  /* Gaussian perturbations of the 5 best points */
    int starts;   /* BOBYQA refinements from the best distinct candidates */
    int fit_max;  /* at most this many points in the hyper-parameter fit */
    int grid_max; /* enumerate discrete spaces with at most this many points (0: never) */
    int lowd;     /* spaces of at most this many dimensions (default 2) fit the raw scores, without
                   * trust region, on 256 candidates: measured on Rosenbrock 2-D and Branin, where
                   * warping and the trust region cost 2-5x regret after 50 trials, while from 3-D up
                   * (Hartmann, Rosenbrock 4-D, Styblinski-Tang, Ackley) they win (bench/README.md) */
} smbo_opts;

void smbo_opts_default(smbo_opts *o);
void smbo_opts_legacy(smbo_opts *o);
/* "key=value,key=value" over the fields above (ytf takes none|yj|rank|log). 0 or OTE_EINVAL. */
int smbo_opts_parse(smbo_opts *o, const char *s);
void smbo_opts_format(const smbo_opts *o, char *buf, size_t size);

typedef struct smbo {
    const hp_space *sp;
    int d;
    int num_init;
    uint64_t seed;
    rng r;
    smbo_opts opt;
    double shift[HP_MAX_PARAMS]; /* Sobol rotation */
    gp g;
    int last_fit_n;              /* number of points at the last full ML fit (0: never) */
    int proposals;               /* GP-based proposals made */
    /* grid mode (grid_n > 0) */
    long grid_n;                 /* number of grid points */
    int levels[HP_MAX_PARAMS];   /* levels per parameter */
    double *level_val[HP_MAX_PARAMS]; /* (levels[j]) value of each level, ascending encoding */
    double *level_enc[HP_MAX_PARAMS]; /* (levels[j]) its [0,1] encoding */
    unsigned char *grid_used;    /* (grid_n) scratch */
} smbo;

int smbo_init(smbo *s, const hp_space *sp, int num_init, uint64_t seed);
int smbo_init_opts(smbo *s, const hp_space *sp, int num_init, uint64_t seed, const smbo_opts *o);
void smbo_free(smbo *s);

/* The i-th point of the rotated Sobol sequence, encoded ([0,1]^d). */
void smbo_sobol_point(const smbo *s, int i, double *u);

/* Next configuration (real values, on the grid) into out.
 *   used  (n_used, d): every configuration generated so far (finished, failed or running);
 *   obs   (n_obs, d) and obs_y (n_obs): finished configurations and their scores (maximised).
 * Returns 0, SMBO_EXHAUSTED when no configuration outside `used` exists, or a negative OTE_E* code. */
int smbo_propose(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                 double *out);

/* smbo_propose with trials still running (parallel HPO, hpo_par.c): `pending` (n_pending, d) are
 * configurations handed out whose scores are not known yet (they are in `used` too). Constant liar
 * (Ginsbourger et al. 2010, CL-mean): each pending point joins the observations with the mean of
 * the real scores as a fake score, so the surrogate treats its neighbourhood as explored and the
 * next proposal goes elsewhere; the mean sits between CL-min (pessimistic, over-explores) and CL-max
 * (greedy). The initial design (n_used < num_init or fewer than 2 real scores) needs no lie: it
 * indexes the Sobol sequence by n_used, which counts the pending points. With n_pending == 0 this
 * is exactly smbo_propose (the single-process search is unchanged). */
int smbo_propose_pending(smbo *s, const double *used, int n_used, const double *obs, const double *obs_y, int n_obs,
                         const double *pending, int n_pending, double *out);

/* Output transform z (n) of scores y (n) (see smbo_ytf); *lambda receives the fitted Yeo-Johnson
 * lambda (SMBO_YTF_YJ) when not NULL. Exposed for the tests. 0 or OTE_ENOMEM. */
int smbo_transform_y(int ytf, const double *y, int n, double *z, double *lambda);
/* Yeo-Johnson transform of one value (sklearn's PowerTransformer formula). */
double smbo_yeo_johnson(double x, double lambda);

/* Trust region after a history of scores (in proposal order, the first n_init of them the initial
 * design): TuRBO's rule - side 0.8 at the start, doubled (up to 1.6) after 3 successes in a row,
 * halved after max(4, d) failures in a row, reset to 0.8 below 2^-7; a success improves the best so
 * far by more than 1e-3 |best|. Returns the side (in [0,1]-encoded units, before the length-scale
 * scaling). */
double smbo_tr_side(const double *y, int n, int n_init, int d);
/* The trust-region box around centre c (encoded) for side L and length scales ls (d): half-width
 * L/2 * ls_j / geomean(ls), clipped to [0,1]. */
void smbo_tr_box(const double *c, int d, double L, const double *log_ls, double *lo, double *hi);

#endif
