/* hpo_dist.h - the parallel search's message link (hpo/hpo.h hpo_link) over dist/: rank 0 sends
 * orders with tag HPO_DIST_TAG_ORDER and receives results with HPO_DIST_TAG_RESULT from any rank.
 * A blocking receive polls (dist_probe_any, then a 2 ms sleep) instead of sitting in MPI's busy
 * wait, so an idle rank leaves its core to the trials of the others. */
#ifndef OTE_TRAIN_HPO_DIST_H
#define OTE_TRAIN_HPO_DIST_H

#include "hpo/hpo.h"

enum { HPO_DIST_TAG_ORDER = 1801, HPO_DIST_TAG_RESULT = 1802 };

/* The link of this job: workers = dist_size() - 1 (0 alone: hpo_run then runs the single-process
 * search). */
void hpo_dist_link(hpo_link *l);

#endif
