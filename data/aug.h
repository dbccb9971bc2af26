/* aug.h - training / test-time augmentation of one image and its boxes (spec-detector.md §1).
 *
 * Train: MinIoURandomCrop -> resize without keeping the ratio to one of the configured sizes ->
 * horizontal flip (p = 0.5) -> normalise to float CHW (x = RGB * (1/255), mean 0, std 255).
 * Test: plain resize to sizes[0]. All randomness comes from explicit rng states derived from
 * (seed, epoch, image index, stream), so a sample's augmentation never depends on thread timing.
 * The geometric draws (size, flip) use their own stream, so a batch's padded size is known before
 * any image is decoded; the crop uses another stream (same distributions as mmdetection, where all
 * draws share one global generator).
 * Boxes are (n, 4) float xyxy arrays in pixels of the current image; labels travel alongside.
 */
#ifndef OTE_AUG_H
#define OTE_AUG_H

#include <stdint.h>

#include "engine/rng.h"

#define AUG_MAX_SIZES 16

typedef struct aug_size {
    int w, h;
} aug_size;

typedef struct aug_config {
    aug_size sizes[AUG_MAX_SIZES]; /* train: one drawn uniformly per image; test: sizes[0] */
    int n_sizes;
    int min_iou_crop;              /* 1: MinIoURandomCrop enabled (train) */
    double min_crop_size;          /* 0.3: crop sides drawn from U(0.3 w, w), U(0.3 h, h) */
    double flip_prob;              /* 0.5 (train), 0 (test) */
} aug_config;

/* The spec's training pipeline: sizes (992,736) (896,736) (1088,736) (992,672) (992,800), crop on,
 * flip 0.5. */
void aug_config_train_default(aug_config *c);
/* Training pipeline with other sizes (e.g. HPO's reduced input, or tests at 320x320).
 * OTE_EINVAL if n is not 1..AUG_MAX_SIZES or a size is not positive. */
int aug_config_train_sizes(aug_config *c, const aug_size *sizes, int n);
/* The spec's 5 sizes scaled by `factor` (e.g. a reduced HPO input), each side rounded to the
 * nearest multiple of 32 (at least 32) so no batch padding is wasted. factor 1 = the default.
 * OTE_EINVAL unless 0 < factor <= 8. */
int aug_config_train_scaled(aug_config *c, double factor);
/* Test-time: resize to exactly (w, h), no crop, no flip (spec: 992x736). */
int aug_config_test(aug_config *c, int w, int h);

enum { AUG_STREAM_GEOM = 0, AUG_STREAM_CROP = 1, AUG_STREAM_SHUFFLE = 2 };
/* Seeds `r` for one (seed, epoch, index, stream): independent streams by hashing all four. */
void aug_rng(rng *r, uint64_t seed, int epoch, int index, int stream);

/* Size and flip of one sample (drawn from its GEOM stream; test configs draw nothing). */
typedef struct aug_geom {
    int size_idx;
    int out_w, out_h; /* resized image size (img_shape), before batch padding */
    int flip;
} aug_geom;
void aug_draw_geom(const aug_config *c, rng *r, aug_geom *g);

/* MinIoURandomCrop's patch search (mmdetection 2.x semantics): draw a mode uniformly from
 * {1 (no crop), 0.1, 0.3, 0.5, 0.7, 0.9, 0}; for mode m try up to 50 patches: new_w ~ U(s*w, w),
 * new_h ~ U(s*h, h), reject unless 0.5 <= new_h/new_w <= 2; left ~ numpy's uniform(w - new_w)
 * (i.e. low = w - new_w, high = 1: mmdetection's call passes one positional argument),
 * top likewise; patch = int-truncated (left, top, left+new_w, top+new_h); reject a line/point
 * patch, a patch whose IoU with any gt is < m, or one that contains no gt centre strictly inside.
 * If 50 trials fail a new mode is drawn. With no boxes the first valid patch is taken.
 * Returns 1 and the patch (x1, y1, x2, y2) if cropped, 0 for no crop (mode 1). *mode_out gets the
 * mode (1.0 for no crop). The mode loop is capped (10000 draws, practically unreachable: mode 1
 * has probability 1/7 per draw) and then gives up without cropping. */
int aug_min_iou_crop(rng *r, int w, int h, const float *boxes, int n, double min_crop_size, int patch[4],
                     double *mode_out);
/* mmdetection's bbox_overlaps (numpy, mode 'iou', no +1, union floored at 1e-6) of one patch. */
double aug_iou(const double a[4], const double b[4]);
/* Applies a chosen patch: keeps boxes whose centre is strictly inside, clips them to the patch and
 * shifts by (x1, y1); labels compacted alongside (may be NULL). Returns the new count. */
int aug_crop_boxes(float *boxes, int *labels, int n, const int patch[4]);
/* scale_factor = [w'/w, h'/h, w'/w, h'/h] as float32 (mmcv.imresize with return_scale). */
void aug_scale_factor(int w, int h, int out_w, int out_h, float scale[4]);
/* boxes *= scale (float32), then x clipped to [0, out_w] and y to [0, out_h]. */
void aug_resize_boxes(float *boxes, int n, const float scale[4], int out_w, int out_h);
/* Horizontal flip in an image of width w: x1' = w - x2, x2' = w - x1 (no -1). */
void aug_flip_boxes(float *boxes, int n, int w);

/* Renders one sample: the patch [x1,x2)x[y1,y2) of an (h, w, 3) RGB u8 image (row stride 3*w) is
 * resized (cv2 INTER_LINEAR) to out_w x out_h, optionally mirrored, normalised by 1/255 and written
 * as 3 float planes of `dst` with row stride pad_w and plane stride pad_w*pad_h; columns
 * [out_w, pad_w) and rows [out_h, pad_h) are set to 0. scratch: at least out_w*out_h*3 bytes.
 * patch NULL = whole image. */
int aug_render(const uint8_t *rgb, int w, int h, const int patch[4], int out_w, int out_h, int flip,
               uint8_t *scratch, float *dst, int pad_w, int pad_h);

#endif
