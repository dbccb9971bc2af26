/* plots.h - the PNG figures of a training and of an HPO search, drawn with PLplot's cairo PNG
 * driver (Debian libplplot-dev + plplot-driver-cairo).
 *
 * Each function draws one figure from plain data into path (through a temporary file renamed
 * into place, so a viewer never sees half a PNG) and returns 0 or a negative OTE_E* status with
 * an ote_err message naming the file; callers print that as a warning and carry on.
 *
 * PLplot keeps global state (its stream table and an exit handler). Every figure uses a stream
 * of its own (plmkstrm ... plend1) and restores the caller's current stream; PLplot's fatal
 * errors, which would call exit(), are turned into an error return by a thread-local jump out
 * of its exit handler. One figure at a time per thread; not for concurrent use across threads.
 */
#ifndef OTE_PLOTS_H
#define OTE_PLOTS_H

#include "data/eval.h"
#include "hpo/store.h"
#include "train/metrics.h"

/* Figure sizes in pixels (tests check them). */
enum {
    PLOTS_CURVES_W = 1200, PLOTS_CURVES_H = 1000,
    PLOTS_PR_W = 1150, PLOTS_PR_H = 750,
    PLOTS_HISTORY_W = 1000, PLOTS_HISTORY_H = 600,
    PLOTS_SPACE_W = 950, PLOTS_SPACE_H = 750,
};

/* curves.png: three panels - the loss parts over iterations (raw faint, moving average bold,
 * epoch boundaries dashed), the learning rate over iterations (log scale), and the validation
 * VOC mAP@0.5, COCO AP and AP50 over epochs (best epoch marked). n_it may be 0. */
int plots_training_curves(const char *path, const metrics_iter *it, long n_it, const metrics_epoch *ep, int n_ep);

/* pr_curves.png: per class with gts, the precision envelope over recall whose area is the VOC AP
 * (label: class name and AP); the title gives the epoch and mAP. names[k] may be NULL. */
int plots_pr_curves(const char *path, const eval_pr_curves *c, const eval_voc_result *voc, const char *const *names,
                    int epoch);

/* hpo/history.png: each trial's score (failed trials marked at the bottom), the best-so-far line
 * and the best trial. */
int plots_hpo_history(const char *path, const hpo_state *st);

/* hpo/space.png: the scored trials over the two most important parameters (two parameters: both,
 * x = the learning rate when searched; more: the two shortest GP length scales), coloured by
 * score over the mean of a GP fitted to the scores (hpo/gp.h; the other parameters held at the
 * best trial's values). One parameter: score over it with the GP mean and +-2 sd band. */
int plots_hpo_space(const char *path, const hpo_state *st);

#endif
