/* losses.h - ATSS training losses and their gradients w.r.t. the head outputs (spec §7, §11).
 *
 * Element functions (f32 in torch's operation order, used by the batch function and by tests):
 * sigmoid focal loss (gamma 2, alpha 0.25, the mmcv kernel formula), GIoU (eps 1e-6), the
 * centerness target and BCE-with-logits. losses_batch() computes every loss part per level and the
 * gradients of the total loss w.r.t. the head outputs, reading and writing nChw<B>c directly.
 * Normalisers (spec §7c, one process = mmdet's single GPU): N_pos = max(sum_img max(npos_img, 1), 1);
 * B = sum of centerness targets over all positives, replaced by 1 if < 1e-12 (OTE / v2.9); under
 * data-parallel training both sums run over every process's images (losses_batch_reduced).
 * Regression targets are the round trip decode(anchor, encode(anchor, gt)) (OTE / v2.9).
 * Sums are accumulated in double (torch sums f32 with its own order; differences are ~1e-7 relative);
 * the focal sum is an OpenMP reduction, bitwise reproducible for a fixed thread count.
 */
#ifndef OTE_LOSSES_H
#define OTE_LOSSES_H

#include "models/anchors.h"
#include "models/head_io.h"

#define LOSSES_GIOU_WEIGHT 2.0f
#define LOSSES_GIOU_EPS 1e-6f

typedef struct loss_parts {
    double cls[ANCHORS_LEVELS]; /* sum of focal losses of the level / N_pos */
    double box[ANCHORS_LEVELS]; /* 2 * sum c*(1 - GIoU) of the level / B (as mmdet reports it) */
    double ctr[ANCHORS_LEVELS]; /* sum of centerness BCE of the level / N_pos */
    double cls_sum, box_sum, ctr_sum;
    double total;               /* the scalar whose gradient is returned */
    double n_pos;               /* N_pos normaliser */
    double b_norm;              /* B normaliser */
    int npos_level[ANCHORS_LEVELS]; /* positives per level over the batch */
} loss_parts;

/* Focal loss of one logit x with target t (0/1), unnormalised; *grad = d loss / d x. */
float losses_focal(float x, int t, float *grad);
/* GIoU of pred and target boxes (xyxy); g_pred (may be NULL) = d GIoU / d pred. */
float losses_giou(const float pred[4], const float target[4], float g_pred[4]);
/* Centerness target of an anchor for its (decoded) target box: sqrt of the min/max ratios. */
float losses_centerness_target(const float anchor[4], const float box[4]);
/* BCE with logits of z against target c; *grad = d loss / d z. */
float losses_bce_logits(float z, float c, float *grad);

/* All loss parts and gradients for a batch of n_img images.
 *   anchors:  (g->total, 4); assigned, labels: (n_img, g->total) from assigner_atss
 *   gt_boxes: (G, 4) all images' gts concatenated; gt_first: (n_img + 1), image n owns rows
 *             gt_first[n] .. gt_first[n+1]-1 (assigned value j+1 refers to row gt_first[n] + j)
 *   out[l]:   head outputs of level l; grad: NULL (loss only) or per-level gradients to overwrite
 * Returns OTE_ENAN (with a message naming the part and level) if a loss or a gradient is not finite. */
int losses_batch(const anchor_grid *g, const float *anchors, int n_img, int n_classes,
                 const int *assigned, const int *labels, const float *gt_boxes, const int *gt_first,
                 const head_out out[ANCHORS_LEVELS], const head_grad grad[ANCHORS_LEVELS], loss_parts *parts);

/* Data-parallel training: replaces the batch's own normaliser sums v[0] = sum_img max(npos_img, 1)
 * and v[1] = sum of the positives' centerness targets by their sums over all processes, before
 * the clamps above are applied and the losses divided (mmdetection's ATSSHead reduce_mean of
 * num_pos and of the centerness sum, times the process count: each process's loss is then its
 * share of the global batch's loss, and the gradients of all processes add up to the global
 * batch's gradient). Returns 0 or a negative status, which losses_batch_reduced returns. */
typedef int (*losses_reduce_fn)(void *ctx, double v[2]);

/* losses_batch with the normalisers passed through reduce (NULL: losses_batch). */
int losses_batch_reduced(const anchor_grid *g, const float *anchors, int n_img, int n_classes,
                         const int *assigned, const int *labels, const float *gt_boxes, const int *gt_first,
                         const head_out out[ANCHORS_LEVELS], const head_grad grad[ANCHORS_LEVELS],
                         losses_reduce_fn reduce, void *reduce_ctx, loss_parts *parts);

#endif
