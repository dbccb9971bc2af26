/* eval_threshold.c - the confidence threshold stored with trained weights: the score cut with the
 * best F-measure on the validation set (see eval.h; used by train/trainer.c when the template sets
 * postprocessing.result_based_confidence_threshold).
 *
 * Boxes are compared with the COCO evaluator's IoU (eval_coco_iou), so the search and the metrics
 * share one overlap definition. Owns only temporaries (freed before returning).
 */
#include "data/eval.h"

#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

/* Thresholds 0.025 * ti for ti = 1 .. EVAL_THRESHOLD_STEPS - 1. */
enum { EVAL_THRESHOLD_STEPS = 40 };
static const double eval_threshold_iou = 0.5;

/* One threshold: greedy matching of the detections in `order` (descending score) with score >=
 * thr; used[] (gt->n_boxes) is scratch. Returns the F-measure. */
static double eval_threshold_f1(const coco_dataset *gt, const eval_det *dets, const int *order, int n_dets,
                                int n_gt, double thr, char *used) {
    memset(used, 0, (size_t)gt->n_boxes);
    int tp = 0, fp = 0;
    for (int r = 0; r < n_dets; r++) {
        const eval_det *e = &dets[order[r]];
        if ((double)e->score < thr) break;
        const float db[4] = {e->x1, e->y1, e->x2, e->y2};
        const coco_image *im = &gt->images[e->image];
        int best = -1;
        double best_iou = eval_threshold_iou;
        for (int k = im->first_box; k < im->first_box + im->n_boxes; k++) {
            const coco_box *g = &gt->boxes[k];
            if (g->iscrowd || g->label != e->label || used[k]) continue;
            const float gb[4] = {g->x1, g->y1, g->x2, g->y2};
            double iou = eval_coco_iou(db, gb, 0);
            if (iou >= best_iou) best_iou = iou, best = k;
        }
        if (best >= 0) used[best] = 1, tp++;
        else fp++;
    }
    double denom = 2.0 * tp + fp + (n_gt - tp);
    return 2.0 * tp / (denom > 0 ? denom : 1);
}

int eval_threshold(const coco_dataset *gt, const eval_det *dets, int n_dets, double fallback, double *threshold,
                   double *f1) {
    *threshold = fallback;
    if (f1) *f1 = -1;
    CHECK(eval_check_dets(gt, dets, n_dets, "confidence threshold"));
    if (gt->n_boxes == 0 || n_dets == 0) return OTE_OK;
    int *order = malloc((size_t)n_dets * sizeof *order);
    int *tmp = malloc((size_t)n_dets * sizeof *tmp);
    float *score = malloc((size_t)n_dets * sizeof *score);
    char *used = malloc((size_t)gt->n_boxes);
    int s = OTE_OK;
    if (!order || !tmp || !score || !used) {
        s = ote_err(OTE_ENOMEM, "confidence threshold: out of memory (%d detections)", n_dets);
        goto done;
    }
    for (int i = 0; i < n_dets; i++) order[i] = i, score[i] = dets[i].score;
    eval_argsort_desc(score, order, n_dets, tmp);
    int n_gt = 0;
    for (int b = 0; b < gt->n_boxes; b++) n_gt += !gt->boxes[b].iscrowd;
    double best_f = -1;
    for (int ti = 1; ti < EVAL_THRESHOLD_STEPS; ti++) {
        double thr = 0.025 * ti;
        double f = eval_threshold_f1(gt, dets, order, n_dets, n_gt, thr, used);
        if (f > best_f + 1e-12) best_f = f, *threshold = thr;
    }
    if (f1) *f1 = best_f;
done:
    free(order), free(tmp), free(score), free(used);
    return s;
}
