/* store.h - the HPO records on disk: hpopt_status.json and hpopt_trial_<id>.json (hpopt v0.1.0
 * layout, spec-ote-hpo.md §5) and their in-memory form.
 *
 * hpopt_status.json keys in write order: search_algorithm, search_space {name: {type, range}},
 * metric, mode (ours), subset_ratio, image_resize (ratios), early_stop ("None"|"median_stop";
 * smbo only), max_iterations (epochs per trial; smbo only), reduction_factor (asha only),
 * full_dataset_size, config_list [{trial_id, config {name: value, keys sorted}, status, score,
 * (asha) bracket}], num_gen_config, best_config_id (only once the search has ended).
 * hpopt_trial_<id>.json: status, scores (per epoch), median (running means), seconds (per epoch),
 * images (seen so far, per report), stop_reason (ours: "", "median_stop", "asha", "budget",
 * "max_iterations", or the failure message), early_stopped (hpopt's flag, 1 when > 5 scores and
 * the last 5 steps never improved), rank (parallel search only: the rank that ran the trial).
 *
 * Status codes as hpopt (HPO_READY 0, HPO_RUNNING 1, HPO_STOP 2, HPO_CUDAOOM 3, HPO_NORESULT 4,
 * HPO_PARTIALRESULT 5, HPO_COMPLETERESULT 6) plus ours: HPO_FAILED 7 = the trial ended with an
 * error (NaN loss, allocation failure, a failing objective command); it has no score, is kept on
 * resume and never retried.
 *
 * Crash safety: every file is written with io/atomic.h ("<name>.tmp-<pid>", fsync'ed, renamed over
 * the old one, the directory fsync'ed), so `kill -9` at any moment leaves either the old or the
 * new file.
 * A status file that fails validation is renamed "hpopt_status.json.corrupt-<UTC timestamp>" and
 * reported as OTE_ESTATE; it is never silently overwritten.
 * Ownership: hpo_state owns its trial array and each trial's per-epoch arrays.
 */
#ifndef OTE_HPO_STORE_H
#define OTE_HPO_STORE_H

#include <stddef.h>

#include "hpo/hpo_config.h"

enum {
    HPO_UNKNOWN = -1,
    HPO_READY = 0,
    HPO_RUNNING = 1,
    HPO_STOP = 2,
    HPO_CUDAOOM = 3,
    HPO_NORESULT = 4,
    HPO_PARTIALRESULT = 5,
    HPO_COMPLETERESULT = 6,
    HPO_FAILED = 7,
};

typedef struct hpo_trial_rec {
    int id;
    int status;
    double values[HP_MAX_PARAMS]; /* real values, hp_space order */
    int has_score;
    double score;                 /* best epoch score (max or min per mode) */
    int bracket;                  /* ASHA bracket, -1 for smbo */
    int n, cap;                   /* reports so far */
    double *scores, *median, *seconds;
    long *images;
    char stop_reason[160];
    int rank;                     /* parallel search: the rank that ran it (-1: single-process, not written) */
} hpo_trial_rec;

typedef struct hpo_state {
    hpo_config cfg;               /* effective configuration (max_iterations etc. filled in) */
    long full_dataset_size;
    int n, cap;
    hpo_trial_rec *t;
    int best_id;                  /* -1 until the search has ended */
} hpo_state;

void hpo_store_state_free(hpo_state *st);
/* Appends a trial (id = position); NULL on allocation failure. */
hpo_trial_rec *hpo_store_state_add(hpo_state *st);
/* Appends one report to a trial (keeps the running mean in median[]). 0 or OTE_ENOMEM. */
int hpo_store_trial_push(hpo_trial_rec *t, double score, double seconds, long images);
void hpo_store_trial_clear(hpo_trial_rec *t);

/* Writes hpopt_status.json and then trials.csv (hpo_trials_csv_save). */
int hpo_store_save(const char *dir, const hpo_state *st);
int hpo_store_trial_save(const char *dir, const hpo_state *st, const hpo_trial_rec *t);

/* dir/trials.csv (trials_csv.c): a header, then one row per trial in id order:
 *   trial_id, <each hp_space name in its order: the value as hpopt_status.json prints it>,
 *   status (ready|running|stop|failed|...), score (best epoch score; empty without one),
 *   epochs (reports), seconds (sum of the reported epochs' seconds), best (1 for best_config_id),
 *   stop_reason (quoted when it holds a comma or quote).
 * Written atomically. */
int hpo_trials_csv_save(const char *dir, const hpo_state *st);
/* "ready", "running", "stop", ..., "failed"; "unknown" otherwise. */
const char *hpo_store_status_name(int status);

/* Loads dir/hpopt_status.json. Returns 1 if absent, 0 if loaded into *old (cJSON tree, caller
 * deletes with hpo_store_json_free), OTE_ESTATE if corrupt (the file has been moved aside). */
int hpo_store_read(const char *dir, void **old);
void hpo_store_json_free(void *j);
/* Compares the configuration keys of an old status with the current state. 0 same; 1 differs
 * (`what` gets the first differing key). */
int hpo_store_same_config(const void *old, const hpo_state *cur, char *what, size_t what_size);
/* Has the old run finished (best_config_id present)? */
int hpo_store_complete(const void *old);
/* Fills cur's trials from the old config_list (values by parameter name). OTE_ESTATE if an entry
 * does not fit the current space (the file is then moved aside). */
int hpo_store_trials(const char *dir, const void *old, hpo_state *cur);
/* Loads the per-epoch arrays of trial t from its file. 1 if the file is absent, 0 ok, OTE_ESTATE
 * if corrupt (moved aside). */
int hpo_store_trial_load(const char *dir, hpo_trial_rec *t);
/* Removes hpopt_status.json and every hpopt_trial_*.json in dir. */
int hpo_store_clear(const char *dir);
/* Renames a bad file to "<path>.corrupt-<UTC timestamp>"; writes the new name into out. */
int hpo_store_move_aside(const char *path, char *out, size_t out_size);

#endif
