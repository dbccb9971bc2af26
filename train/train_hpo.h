/* train_hpo.h - `ote train --enable-hpo`: the HPO phase before the final training (DESIGN.md §5,
 * spec-ote-hpo.md §4).
 *
 * Steps: load <template dir>/hpo_config.yaml and check its hp_space names against the template;
 * time a few real training steps and predictions at full size (trainer_time_steps) and estimate
 * one plain training run; plan the budget (hpo_plan_budget, R = --hpo-time-ratio: HPO gets
 * (R - 1) x one training, minus the calibration) or adopt the plan recorded by an earlier search
 * (hpo/plan_record.h) so that resume and reuse survive timing noise; print the plan; run the SMBO
 * trials in-process (hpo_run) in `hpo/` beside weights.pth (`X.hpo/` beside any other X.pth), each a trainer_run on the seeded
 * training subset at the reduced input size, validated on the full validation set at that size,
 * reporting every epoch and stopping on HPO_STOP_TRIAL or at the budget's deadline; print OTE's
 * table; write the best values into the template settings for the final training.
 *
 * Trials: template defaults are trial 0; they never write weights; their warm-up is scaled by
 * max_iterations / full epochs (as OTE >= v0.3); --load-weights (if any) is every trial's start.
 * A failing trial (non-finite loss, allocation failure, a value the template rejects) is recorded
 * as failed and the search goes on.
 * Output: progress, the plan and the table go to `out`; errors are one line on stderr.
 */
#ifndef OTE_TRAIN_HPO_H
#define OTE_TRAIN_HPO_H

#include <stdio.h>

#include "data/coco.h"
#include "hpo/plan.h"
#include "hpo/hpo.h"
#include "train/config.h"
#include "train/trainer.h"

typedef struct train_hpo_args {
    const coco_dataset *train, *val;
    const char *weights_path;   /* final weights file; the work dir is dirname(weights_path)/hpo */
    const char *init_weights;   /* --load-weights, or NULL */
    double ratio;               /* --hpo-time-ratio R (> 0; R <= 1 leaves the minimal plan) */
    hpo_resume resume;          /* --hpo-resume ask|yes|no */
    int interactive;            /* stdin is a terminal */
    FILE *out;                  /* stdout */
    int nthreads;               /* OpenMP threads of the calibration and of every trial (0: default) */
} train_hpo_args;

/* Returned when the resume prompt got no valid answer: OTE then exits with status 0. */
#define TRAIN_HPO_QUIT (-1)

/* Under mpirun (dist_size() > 1; issue 18) every rank calls it: rank 0 calibrates, plans for
 * dist_size() parallel workers, runs the search (hpo/hpo.h, parallel trials) and then sends every
 * worker the outcome (the exit status and the values applied); the other ranks serve trials
 * (hpo_serve) until then and return the same status with the same values in *cfg, so that the
 * final training starts on every rank with one configuration. A failure on rank 0 other than the
 * prompt's quit ends the whole job (dist_abort) after its message. Trials never use collectives
 * (trainer_opts.data_parallel = 0); each rank trains its trial alone with `nthreads` threads.
 *
 * Runs the HPO phase; on 0, *cfg holds the best values (the final training's settings). Otherwise
 * returns the exit status for `ote train` (1 runtime error, 2 bad hpo_config.yaml / unknown
 * hyper-parameter name) or TRAIN_HPO_QUIT; the error line has been printed on stderr. */
int train_hpo_run(const train_hpo_args *a, config_template *cfg);

/* The pieces train_hpo_run is made of, for bench/bench_hpo_fidelity.c (which must run exactly the
 * trials a search would). */

/* One plain training run estimated from the calibration (seconds). */
typedef struct train_hpo_estimate {
    int epochs, repeat, batches;
    long iters;
    double train_s, val_s, setup_s, total_s;
} train_hpo_estimate;
void train_hpo_estimate_run(const config_template *cfg, const coco_dataset *train, const coco_dataset *val,
                            const trainer_timing *tm, train_hpo_estimate *e);
/* The planner's input for ratio R from the estimate (values fixed in eff are kept) and the plan. */
int train_hpo_plan(const config_template *cfg, const coco_dataset *train, const train_hpo_estimate *est,
                   const hpo_config *eff, double ratio, hpo_budget_in *bi, hpo_plan *plan);
/* A trial's template: cfg with the trial's values, the warm-up scaled by trial / full epochs (unless
 * searched) and the input size scaled by image_resize (multiples of 32, at least 96 a side). */
int train_hpo_trial_template(const config_template *cfg, const hp_space *space, const double *values, int trial_epochs,
                             int full_epochs, double image_resize, config_template *tc);

/* A trial's trainer options (the objective and bench_hpo_fidelity both use them): tc's settings,
 * no weights or labels written, no log, the plan's training subset and epochs. */
void train_hpo_trial_opts(const config_template *tc, double subset_ratio, int max_epochs, trainer_opts *o);

/* "ask" | "yes" | "no" -> policy; -1 for anything else. */
int train_hpo_parse_resume(const char *s);

#endif
