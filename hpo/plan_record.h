/* plan_record.h - the budget plan recorded by an earlier search, so that `ote train --enable-hpo`
 * can resume or reuse it.
 *
 * Why: subset_ratio, image_resize and max_iterations are chosen by the budget planner from timed
 * steps, and timings differ from run to run; re-planning on a restart would almost always change
 * them, and hpo_run would then see "a changed configuration" and discard every finished trial.
 * So when hpopt_status.json records a search whose configuration equals the current one in
 * everything the user controls (search_algorithm, search_space, metric, mode, early_stop / ASHA
 * keys, full_dataset_size, and the planned keys the config fixes), the recorded planned values are
 * adopted instead of a new plan. Consequence: changing --hpo-time-ratio alone does not invalidate
 * a recorded search (use --hpo-resume no to rerun).
 * Ownership: plain values; the status file is only read (a corrupt one is moved aside by
 * hpo_store_read, never overwritten).
 */
#ifndef OTE_HPO_PLAN_RECORD_H
#define OTE_HPO_PLAN_RECORD_H

#include "hpo/hpo_config.h"

/* c: the configuration as loaded (planned values 0 = open). On return 1, *out = c with the
 * recorded subset_ratio / image_resize / max_iterations filled into its open values; 0: no
 * usable record (absent or a different configuration; *out = c); OTE_ESTATE: dir/hpopt_status.json
 * is corrupt (moved aside; the message says where); OTE_EIO. */
int hpo_plan_record_load(const char *dir, const hpo_config *c, long full_dataset_size, hpo_config *out);

#endif
