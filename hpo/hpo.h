/* hpo.h - the HPO driver: runs trials one after another through an objective callback, records
 * them (store.h), decides early stops (median stop, ASHA rungs, the wall-clock budget), handles
 * resume / reuse / rerun, and prints OTE's result table.
 *
 * The callback trains one trial and calls hpo_report() after every epoch. hpo_report() returns
 * HPO_CONTINUE or HPO_STOP_TRIAL (median stop, ASHA rung cut, budget, max epochs reached); the
 * trainer must then end the trial (it is scored on the epochs it finished). The callback returns
 * 0 when the trial ended normally (or was stopped), OTE_ECANCEL to abort the whole search at once
 * (like an interruption: the trial stays RUNNING on disk and is rerun on resume), and any other
 * negative code for a failed trial (recorded as HPO_FAILED with the message; the search goes on).
 * A non-finite reported score also fails the trial.
 *
 * Trial score = best epoch score (max, or min with mode: min). Trial order: trial 0 = the given
 * defaults (if any), then Sobol points up to num_init_trials, then SMBO proposals (asha: Sobol
 * points throughout, as hpopt's ASHA never fed results back).
 *
 * Resume (spec §4.8 + DESIGN.md §5): an existing hpopt_status.json with the same configuration
 * (search_algorithm, search_space, metric, mode, subset_ratio, image_resize, early_stop /
 * ASHA keys, max_iterations, full_dataset_size) is resumed (unfinished: finished and failed
 * trials kept, the interrupted or pending ones rerun with the same values) or reused (finished: no
 * trial runs, the best is recomputed and printed). A different configuration reruns from scratch
 * without asking. Policy HPO_RESUME_ASK prompts with OTE's strings when `interactive`, otherwise
 * resumes/reuses and says so; HPO_RESUME_YES does so silently-but-announced; HPO_RESUME_NO reruns.
 *
 * Budget: `budget_seconds` > 0 bounds the wall clock of the search (seconds already recorded in
 * kept trials count). A report stops its trial when one more epoch (mean epoch time of the trial so
 * far) would overrun; no new trial starts when less than one epoch's time is left.
 *
 * Median stop (spec §4.6): from trial num_init_trials on, after each report the median of the
 * other finished trials' running means at the same epoch must not beat this trial's best so far.
 * ASHA (spec §4.7, sequential variant): trial i is in bracket i % num_brackets (hpopt weights
 * brackets by size; we deal them round-robin); at each rung r of its bracket (r = min-1 +
 * rf^(k+s)) the trial stops when the (1 - 1/rf) percentile (linear interpolation, like numpy) of
 * the best-within-rung scores of every trial of the bracket that reached r beats its own. Trials
 * are stopped, never paused and promoted later (a sequential in-process run cannot resume a
 * stopped trial's weights), so "promotion" = being allowed past the rung.
 *
 * Output: messages, the prompt and the table go to opt->out (NULL = silent); library code never
 * writes to stdout by itself.
 *
 * Parallel trials (opt->link, `mpirun -np N`; issue 18). hpo knows no MPI: the caller gives a
 * message link (train/hpo_dist.c puts dist/ under it). Rank 0 (hpo_run) is the driver: it owns the
 * optimiser and every file, hands a trial to each free worker rank 1..W as a JSON order, and runs
 * trials itself in-process as well (so -np 2 runs 2 at once); between and inside its own trials
 * (after every hpo_report, i.e. at epoch boundaries) it collects finished results without
 * blocking, records each at once (trial file, status file, table, figures) and gives that worker
 * the next trial; when it has no trial of its own left it waits for the workers. Proposals while
 * trials run use smbo_propose_pending (constant liar). Workers (hpo_serve) run each order through
 * the same objective callback with a local reporter that applies the same stop rules (max
 * iterations, the budget's deadline sent with the order, median stop / ASHA against the finished
 * trials sent with the order: a snapshot, possibly a few trials older than rank 0's record) and
 * write no file; the result goes back whole. Trial files record the rank that ran them ("rank").
 * A kill of the whole job leaves the finished trials on disk; resume reruns the ones that were
 * running, as in the single-process search. A worker's fatal error (not a failed trial: a bad
 * message, OTE_ECANCEL) comes back as an error message; hpo_run prints it and fails. Budget:
 * wall clock as before; kept trials' seconds count divided by the number of parallel workers.
 * Messages: order {"type":"trial", id, values {name: v}, max_epochs, subset_ratio, image_resize,
 * seed, deadline_in (s, 0 = none), cfg {...}, others [{id, bracket, scores}], extra};
 * result {"type":"result", id, rc, failed, reason, scores, seconds, images};
 * error {"type":"error", message}; stop {"type":"stop", payload} (hpo_par_stop).
 *
 * Wiring for `ote train --enable-hpo` (tools/): hpo_config_load(<template dir>/hpo_config.yaml);
 * hpo_config_check_names(template names); time a few real steps -> train_seconds;
 * hpo_plan_budget_from_config() + hpo_plan_budget() + hpo_plan_format() (print the plan) +
 * hpo_plan_apply(); options: work_dir = dirname(save_model_to)/hpo, defaults = template values in
 * hp_space order, full_dataset_size, budget_seconds ~ (R - 1) x train_seconds, interactive =
 * isatty(0); hpo_run() with a callback that trains t->max_epochs epochs on the seeded subset
 * (t->subset_ratio) at t->image_resize, reports each epoch's val mAP and stops on HPO_STOP_TRIAL;
 * then retrain with res.best_values.
 */
#ifndef OTE_HPO_H
#define OTE_HPO_H

#include <stdint.h>
#include <stdio.h>

#include "hpo/hpo_config.h"
#include "hpo/store.h"

enum { HPO_CONTINUE = 0, HPO_STOP_TRIAL = 1 };
typedef enum hpo_resume { HPO_RESUME_ASK = 0, HPO_RESUME_YES = 1, HPO_RESUME_NO = 2 } hpo_resume;

typedef struct hpo_trial {
    int id;
    const hp_space *space;
    double values[HP_MAX_PARAMS]; /* real values in hp_space order */
    int max_epochs;               /* epochs this trial may run (max_iterations) */
    double subset_ratio;          /* of the training set */
    double image_resize;          /* of the training input size */
    uint64_t seed;                /* for the trial's own randomness */
    const char *extra;            /* hpo_options.order_extra as the worker received it (NULL alone) */
} hpo_trial;

/* Value of a named parameter, or `fallback` if it is not searched. */
double hpo_trial_value(const hpo_trial *t, const char *name, double fallback);

typedef struct hpo_reporter hpo_reporter;
/* Records epoch `epoch` (1-based, consecutive) of the running trial: its validation score, the
 * seconds it took and the training images seen so far. Returns HPO_CONTINUE, HPO_STOP_TRIAL or a
 * negative OTE_E* code (status file could not be written, epoch out of order). */
int hpo_report(hpo_reporter *r, int epoch, double score, double seconds, long images);
/* When the search's wall-clock budget ends, on opt->clock's time scale (CLOCK_MONOTONIC seconds by
 * default), counting the seconds of kept trials; 0 when the budget is unlimited. Lets a trainer
 * stop a trial inside an epoch instead of only between epochs. */
double hpo_reporter_deadline(const hpo_reporter *r);

typedef int (*hpo_train_fn)(void *ctx, const hpo_trial *t, hpo_reporter *r);

/* A message link between the ranks of a parallel search (see above). Rank 0 sends orders to
 * 1..workers and receives results from any; a worker sends to and receives from 0. send: 0 or
 * OTE_E*. recv: 1 and a malloc'd NUL-terminated *text from *src, 0 when block == 0 and nothing is
 * waiting, or OTE_E*. */
typedef struct hpo_link {
    int workers;                 /* remote worker ranks (the job's size - 1) */
    int (*send)(void *ctx, int dest, const char *text, size_t len);
    int (*recv)(void *ctx, int block, int *src, char **text);
    void *ctx;
} hpo_link;

typedef struct hpo_options {
    const char *work_dir;        /* created if missing */
    hpo_resume resume;
    int interactive;             /* the prompt may be shown (stdin is a terminal) */
    FILE *in;                    /* prompt answers (default stdin) */
    FILE *out;                   /* messages and the table (NULL: silent) */
    int num_trials;              /* > 0 overrides the config's num_trials */
    long full_dataset_size;      /* recorded and compared on resume */
    double budget_seconds;       /* <= 0: unlimited */
    const double *defaults;      /* trial 0 values (hp_space order), or NULL */
    uint64_t seed;
    double (*clock)(void *clock_ctx); /* seconds; NULL = CLOCK_MONOTONIC (tests inject a fake) */
    void *clock_ctx;
    /* Called (if set) after each trial's result is recorded and once when the search ends or is
     * reused (best_id set then): e.g. to redraw figures of the search. Cannot fail the search. */
    void (*on_record)(void *ctx, const hpo_state *st);
    void *on_record_ctx;
    /* parallel trials (rank 0): NULL or workers == 0 = the single-process search, unchanged */
    const hpo_link *link;
    const char *order_extra;     /* a JSON value sent with every order (hpo_trial.extra), or NULL */
} hpo_options;

typedef struct hpo_result {
    int best_id;                 /* -1 if no trial produced a score */
    double best_score;
    double best_values[HP_MAX_PARAMS];
    int trials_run;              /* trials trained by this call */
    int trials_total;            /* trials on record */
    int trials_scored;           /* finished trials with a score */
    double score_min, score_max; /* over those (equal: the search saw no difference) */
    int reused;                  /* a finished search was reused (no trial ran) */
    int resumed;                 /* an unfinished search was continued */
    int rerun_changed;           /* an old search with another configuration was discarded */
    double seconds;              /* wall time of this call */
} hpo_result;

/* Defaults used when the config leaves a value open and no planner filled it in. */
#define HPO_DEFAULT_NUM_TRIALS 10
#define HPO_DEFAULT_NUM_INIT 5
#define HPO_DEFAULT_MAX_ITERATIONS 1

/* Runs (or resumes / reuses) the search. cfg's max_iterations / subset_ratio / image_resize are
 * used as given (0 -> defaults 1 epoch / 1.0 / 1.0). Returns 0, OTE_ECANCEL (aborted by the
 * callback or the prompt), OTE_ESTATE (corrupt status file; moved aside), OTE_EIO, ... */
int hpo_run(const hpo_config *cfg, const hpo_options *opt, hpo_train_fn train, void *ctx, hpo_result *res);
/* The defaults hpo_run fills into open values (max_iterations, subset_ratio, image_resize, ASHA
 * keys), i.e. the effective configuration that hpopt_status.json records. */
void hpo_config_fill_defaults(hpo_config *c);

/* A worker rank's side of a parallel search: serves orders from rank 0 with `train` until a stop
 * message arrives; cfg is this rank's hpo_config (its hp_space; the effective values come with each
 * order), or NULL when it could not be loaded (then any order is answered with an error). out gets
 * one line per trial (NULL: silent). On stop, *payload (if not NULL) receives a malloc'd copy of the
 * stop's payload (NULL if none). Returns 0, or OTE_E* when the link fails. */
int hpo_serve(const hpo_link *l, const hpo_config *cfg, hpo_train_fn train, void *ctx, FILE *out, char **payload);
/* Rank 0: tells every worker to stop and hands them `payload` (text, may be NULL). */
int hpo_par_stop(const hpo_link *l, const char *payload);

/* Prints the OTE result table, "Best Hyper-parameters" and the dict for a state. */
void hpo_print_table(FILE *f, const hpo_state *st);
/* Python dict repr of a configuration with sorted keys: {'a': 8, 'b': 0.004}. */
int hpo_format_dict(const hp_space *sp, const double *values, char *buf, size_t size);

#endif
