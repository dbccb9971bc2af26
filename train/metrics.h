/* metrics.h - the run folder's record of a training (issue 14 §2): OUT/metrics.csv, one row per
 * epoch, and the figures OUT/curves.png (losses and lr over iterations, validation mAP over
 * epochs) and OUT/pr_curves.png (per-class precision-recall curves of the best epoch).
 *
 * Files sit beside the weights with weights_side_path's naming: DIR/weights.pth -> DIR/metrics.csv,
 * DIR/curves.png, DIR/pr_curves.png; DIR/X.pth -> DIR/X.metrics.csv, DIR/X.curves.png, ...
 *
 * metrics.csv columns (a header line first; one row written and flushed at the end of each
 * validated epoch, so a killed run keeps every finished epoch):
 *   epoch            1-based
 *   iterations       done so far (cumulative)
 *   lr               learning rate of the epoch's last iteration (warm-up applied)
 *   loss, loss_cls, loss_bbox, loss_centerness
 *                    means over the epoch's iterations (as the progress lines average them)
 *   train_images_per_s  cumulative training images / training seconds (the epoch line's img/s)
 *   val_voc_map50    validation VOC mAP@0.5 (the epoch line's mAP)
 *   val_coco_ap, val_coco_ap50  COCO bbox AP@[.5:.95] and AP@.5 (maxDets 100)
 *   epoch_seconds    training + validation time of the epoch
 *   wall_seconds     since the start of the training run
 *   best             1 when the epoch improved the best mAP (its weights were kept)
 *
 * Nothing here can fail a training: a file that cannot be written or a figure that cannot be
 * drawn is one "warning:" line on the log and the training goes on. metrics_iter() runs inside
 * the training loop: it writes into a buffer sized at metrics_open for every planned iteration
 * and never allocates (DESIGN.md §2); iterations beyond the plan are not recorded.
 *
 * Ownership: metrics_run owns its buffers, the open CSV file, and the best epoch's PR curves;
 * the validation dataset (class names, ground truth) belongs to the caller and must outlive it.
 */
#ifndef OTE_METRICS_H
#define OTE_METRICS_H

#include <stdio.h>

#include "data/coco.h"
#include "data/eval.h"

/* One training iteration (index = iteration - 1). */
typedef struct metrics_iter {
    float lr, total, cls, box, ctr;
} metrics_iter;

/* One epoch's row of metrics.csv. */
typedef struct metrics_epoch {
    int epoch;
    long iters;
    double lr, loss, loss_cls, loss_box, loss_ctr;
    double images_per_s;
    double voc_map50, coco_ap, coco_ap50;
    double epoch_seconds, wall_seconds;
    int best;
} metrics_epoch;

typedef struct metrics_run metrics_run;

/* Opens metrics.csv beside weights_path (truncating it) and reserves room for total_iters
 * iterations and `epochs` rows. val (may be NULL) names the classes and is the ground truth of the
 * PR curves. resume_epochs > 0 (a --resume-from training with that many epochs finished): the
 * existing file's rows of those epochs are kept (and drawn; their iterations at the epoch means),
 * later rows dropped. Returns NULL (after a warning on log) if nothing can be recorded. */
metrics_run *metrics_open(const char *weights_path, long total_iters, int epochs, const coco_dataset *val, FILE *log,
                          int resume_epochs);
/* Records one iteration (no allocation, no I/O). */
void metrics_iter_add(metrics_run *m, double lr, double total, double cls, double box, double ctr);
/* The end of a validated epoch: row's epoch, iters, images_per_s, voc_map50, coco_ap, coco_ap50,
 * epoch_seconds, wall_seconds and best come from the caller; lr and the losses are filled in from
 * the iterations since the previous row. Writes and flushes the row, recomputes the PR curves from
 * dets when row->best, and redraws both figures. */
void metrics_epoch_end(metrics_run *m, const metrics_epoch *row, const eval_det *dets, int n_dets);
/* The end of training: redraws the figures (iterations after the last validation included). */
void metrics_finish(metrics_run *m);
/* Closes the CSV and frees everything (NULL is fine). */
void metrics_close(metrics_run *m);

/* Paths beside a weights file: "metrics.csv", "curves.png" or "pr_curves.png" (weights_side_path). */
int metrics_side_path(const char *weights_path, const char *name, char *buf, size_t n);

#endif
