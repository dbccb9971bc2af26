/* plan.h - the HPO budget planner: from the time of one plain training run and the ratio R,
 * choose the number of trials, epochs per trial, subset_ratio and image_resize.
 *
 * Meaning of R (DESIGN.md §5, OTE tutorial): the whole run (HPO + final training) should take
 * about R x one training, so HPO gets b = R - 1 trainings' worth of time.
 *
 * Time model, in units of one full training (E epochs over N images at full size, taking
 * train_seconds, of which the share v is validation):
 *     cost(T, I, s, z) = T * I * P(z) * ((1 - v) * img(sN) / img(N) + v) / E
 * T trials of I epochs on a subset of s*N training images at input size z x the full size;
 * img(n) = images one epoch processes for a training set of n images (the trainer's adaptive
 * repeat: a smaller subset gets more passes per epoch; epoch_images gives it, NULL = n);
 * validation always uses the whole validation set, at the reduced size (so P(z) but not s).
 * P(z) = z^2, unless the caller gives the full input size (input_w, input_h): then P(z) is the
 * trial's real pixel count over the full one, with each side rounded down to a multiple of 32
 * (hpo_plan_trial_size) and raised to min_side where the trainer raises it (so shrinking z below
 * that point saves nothing, and the plan knows it).
 *
 * What makes a trial predict the full run (issue 11; bench/hpo_fidelity.sh measures it): its
 * horizon h = I * img(sN) / (E * img(N)), the share of the full run's SGD iterations it trains
 * for (a short horizon favours large learning rates), and its input size (small inputs lose the
 * small objects). So the planner keeps z >= 0.5 and h >= H_MIN = 0.1, and gives up trials before
 * fidelity below z = 0.5 / h = H_GOOD = 0.3: T_TARGET = 5 trials per searched parameter is what a
 * GP needs on these small spaces, more trials are added only once every trial is at full fidelity.
 * Planning (free variables only; values fixed in hpo_config.yaml are never changed):
 *  1. start at full fidelity with the target count: z = 1, s = 1, I = E, T = T_TARGET;
 *  2. while cost > b shrink, in this order: z by 0.05 down to 0.5; I by 1 then s by /1.05 (down to
 *     max(OTE's min(1, 500/N), 0.05)) while h > H_GOOD; T by 1 down to T_MIN = 3 (the defaults and
 *     two proposals); I then s (down to max(1/N, 0.05)) while h > H_MIN; T down to 2. If still
 *     cost > b the plan is that minimum with over_budget = 1 and meaningful = 0: the caller should
 *     not run a search whose trials cannot rank configurations;
 *  3. otherwise grow: fidelity one step at a time, the less advanced of z ((z - 0.5)/0.5) and h
 *     first (h: I + 1, or s x 1.05 once I = E; never h > 1), while it fits; then T by 1 up to
 *     Tmax = 20 x number of hyper-parameters (OTE's max_trials) while it fits.
 * The caller rounds z x input size to what the network accepts (multiples of 32).
 *
 * Parallel trials (workers W > 1, `mpirun -np W`, hpo/hpo_par.h): the budget stays wall clock and
 * train_seconds is one training at one worker's speed (the calibration runs on rank 0 with its
 * own threads), so T trials cost ceil(T / W) trial times: cost() above with T replaced by
 * ceil(T / W) (trials run in waves of W), and Tmax = 20 x W x parameters (OTE's max_trials counts
 * parallelism). W <= 1 is the single-process plan, number for number.
 */
#ifndef OTE_HPO_PLAN_H
#define OTE_HPO_PLAN_H

#include <stddef.h>

#include "hpo/hpo_config.h"

typedef struct hpo_budget_in {
    double train_seconds;   /* one plain training run (estimated by the caller from timed steps) */
    double val_fraction;    /* share v of train_seconds spent in validation, 0..1 */
    double ratio;           /* R */
    long full_dataset_size; /* N */
    int full_epochs;        /* E */
    int num_hyperparams;    /* searched parameters */
    /* values fixed by hpo_config.yaml (0 = free) */
    int fixed_trials, fixed_epochs;
    double fixed_subset, fixed_resize;
    /* optional (0 = the z^2 model): full input size, and the smallest trial side the trainer runs */
    int input_w, input_h, min_side;
    /* optional: images one epoch processes for a training set of n images (NULL: n) */
    long (*epoch_images)(void *ctx, long n);
    void *epoch_ctx;
    int workers;            /* trials run at once (0 or 1: one after another) */
} hpo_budget_in;

typedef struct hpo_plan {
    int num_trials;
    int epochs;             /* per trial (max_iterations) */
    double subset_ratio;
    double image_resize;
    double cost;            /* in units of one full training */
    double expected_seconds;/* cost x train_seconds */
    double horizon;         /* h: a trial's share of the full run's training iterations */
    int over_budget;        /* even the minimal meaningful plan exceeds R - 1 */
    int meaningful;         /* 1: h >= H_MIN and z >= 0.5 (trials can rank configurations) */
    int workers;            /* as hpo_budget_in.workers (the format says "on W parallel workers") */
} hpo_plan;

/* Copies the values hpo_config.yaml fixes (num_trials, max_iterations, subset_ratio, image_resize)
 * and the number of searched parameters into `in`. */
void hpo_plan_budget_from_config(hpo_budget_in *in, const hpo_config *c);
/* Writes the plan into the config's open values (those that were 0); fixed ones stay. */
void hpo_plan_apply(const hpo_plan *p, hpo_config *c);

/* 0, or OTE_EINVAL for nonsensical inputs (non-positive time, epochs or dataset size). */
int hpo_plan_budget(const hpo_budget_in *in, hpo_plan *out);
/* One line describing the plan, e.g. "HPO plan: 12 trials x 8 epochs, subset 500 of 1000 training
 * images (subset_ratio 0.5), trial input 496x368 (image_resize 0.5), expected HPO time 1790 s
 * (0.50 x one training)". input_w/h: the full training input size (0: omit the pixel sizes);
 * trial sizes are rounded down to multiples of 32 (at least 32). Returns the length. */
int hpo_plan_format(const hpo_plan *p, long full_dataset_size, int input_w, int input_h, char *buf, int size);
/* The trial input size for a full size and a resize ratio: floor(full * z / 32) * 32, >= 32. */
int hpo_plan_trial_size(int full, double image_resize);
/* P(z) above: the pixel share of a trial image. */
double hpo_plan_pixel_share(const hpo_budget_in *in, double image_resize);
/* The cost formula above (wall clock: ceil(trials / workers) waves). */
double hpo_plan_cost(const hpo_budget_in *in, int trials, int epochs, double subset, double resize);
/* The horizon h above. */
double hpo_plan_horizon(const hpo_budget_in *in, int epochs, double subset);

#define HPO_PLAN_Z_MIN 0.5
#define HPO_PLAN_H_MIN 0.1
#define HPO_PLAN_H_GOOD 0.3
#define HPO_PLAN_T_MIN 3
#define HPO_PLAN_T_PER_PARAM 5

#endif
