/* postprocess.h - ATSS inference post-processing of one image (spec §8a, the OTE fork's variant).
 *
 * 1. Per level: s = sigmoid(cls) (HW x C), c = sigmoid(ctr); m_i = max_c s_ic*c_i; the top
 *    min(nms_pre, HW) locations by m, by a stable descending sort (ties: lower location first),
 *    decoded with clipping to the resized image (img_h x img_w).
 * 2. Levels concatenated P3..P7; boxes divided by scale = [w_scale, h_scale, w_scale, h_scale].
 * 3. Pairs (i, c) with s_ic*c_i > score_thr, in row-major order over (i, c).
 * 4. Class-aware NMS with mmcv's offset trick (box + label*(max coordinate + 1), f32), CPU semantics:
 *    stable sort by score descending (ties keep the earlier pair; torch.sort is not stable, so
 *    this is our documented choice), a box is suppressed if IoU >= iou_thr with a kept box.
 * 5. The first max_per_img survivors, in score-descending order; boxes are the un-offset ones.
 * Reads nChw<B>c head outputs (head_io.h). Allocates its scratch (inference is not a training step).
 */
#ifndef OTE_POSTPROCESS_H
#define OTE_POSTPROCESS_H

#include "models/anchors.h"
#include "models/head_io.h"

typedef struct postprocess_cfg {
    int nms_pre;      /* 1000 */
    float score_thr;  /* 0.05, applied to s*c with '>' */
    float iou_thr;    /* 0.6, suppress with '>=' (mmcv CPU) */
    int max_per_img;  /* 100 */
} postprocess_cfg;

typedef struct detection {
    float box[4];     /* xyxy in original-image pixels */
    float score;      /* sigmoid(cls) * sigmoid(centerness) */
    int label;        /* 0..C-1 */
} detection;

/* OTE's test_cfg: 1000, 0.05, 0.6, 100. */
postprocess_cfg postprocess_default_cfg(void);

/* Detections of image n of a batch of N. dets must hold cfg->max_per_img entries; *n_dets receives
 * the count. OTE_ENOMEM on allocation failure, OTE_EINVAL on a bad argument. */
int postprocess_image(const anchor_grid *g, const float *anchors, int n_classes, int N, int n,
                      const head_out out[ANCHORS_LEVELS], int img_h, int img_w, const float scale[4],
                      const postprocess_cfg *cfg, detection *dets, int *n_dets);

/* Plain NMS on f32 boxes (mmcv CPU semantics, offset 0): order = stable descending sort of
 * scores; keeps at most max_keep indices (into boxes) in order; returns the number kept.
 * order_ws: n ints of scratch. */
int postprocess_nms(const float *boxes, const float *scores, int n, float iou_thr, int max_keep,
                    int *keep, int *order_ws);

/* Class-aware NMS as mmcv batched_nms: boxes shifted by label*(max coordinate + 1) in f32, then
 * postprocess_nms. keep: max_keep ints; returns the number kept (or OTE_ENOMEM). */
int postprocess_nms_classaware(const float *boxes, const float *scores, const int *labels, int n,
                               float iou_thr, int max_keep, int *keep);

#endif
