/* assigner.h - ATSS assignment of anchors to ground-truth boxes for one image (spec §6).
 *
 * Inputs: the anchor grid, all anchors (total, 4), the image's valid (= inside) flags, its gt
 * boxes (m, 4) xyxy and labels (0..C-1). Only valid anchors take part; per-level candidate counts are
 * the per-level numbers of valid anchors, as in mmdet. All arithmetic is f32 in torch's order except
 * the candidate IoU mean and unbiased std (double, rounded to f32 before adding; torch reduces
 * with a wider accumulator too).
 * Deterministic tie rules (documented choices, spec §12):
 *   - top-k by centre distance: among equal distances the LOWER anchor index is taken first;
 *   - an anchor that is a positive candidate of several gts goes to the highest IoU, exact IoU
 *     ties to the lower gt index (torch max returns the first index).
 * Output per anchor: assigned -1 = not valid (ignored by every loss), 0 = negative, j+1 = gt j;
 * label = gt class for positives, C (background) otherwise.
 * The caller provides the workspace (assigner_ws_bytes) so a training step allocates nothing.
 * OpenMP over gts only above 256 gts (the per-gt work is a few microseconds); the result does not
 * depend on the thread count. Calls for different images may run concurrently, each with its own
 * workspace and outputs.
 */
#ifndef OTE_ASSIGNER_H
#define OTE_ASSIGNER_H

#include <stddef.h>

#include "models/anchors.h"

/* Workspace bytes for up to max_gts boxes with top-k `topk` (9 in OTE). */
size_t assigner_ws_bytes(const anchor_grid *g, int max_gts, int topk);

/* ATSS assignment. assigned, labels: (g->total). Returns OTE_EINVAL (with message) for a
 * workspace that is too small, a negative count or a label outside 0..n_classes-1. */
int assigner_atss(const anchor_grid *g, const float *anchors, const unsigned char *valid,
                  const float *gt_boxes, const int *gt_labels, int n_gts, int n_classes, int topk,
                  void *ws, size_t ws_bytes, int *assigned, int *labels);

#endif
