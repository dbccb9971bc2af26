/* draw.h - boxes, class names and scores drawn onto an RGB image, behind a plain C API (the OpenCV
 * imgproc shim for `ote predict` and the training samples, issue 14 section 3).
 *
 * data/draw.cpp draws with cv::rectangle / cv::putText straight into the caller's pixels (no copy,
 * no allocation kept). Predictions get one colour per class from a fixed palette without greens;
 * ground truth is always drawn in one green, so the two never look alike. Every box line has a
 * one-pixel dark rim on both sides and every label sits on a filled tag of the box's colour with
 * black or white text (whichever contrasts more), so both stay readable on any background. Line
 * width and text size grow with the image's shorter side (2 px and the smallest readable font up
 * to ~1000 px; ground truth one pixel thinner).
 * Pixel layout as image.h: interleaved HWC RGB, row stride 3*w bytes. Every C++ exception is
 * caught inside and becomes OTE_EINVAL.
 */
#ifndef OTE_DRAW_H
#define OTE_DRAW_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct draw_box {
    float x1, y1, x2, y2; /* original-image pixels, xyxy (partly outside the image is clipped) */
    int label;            /* contiguous class index: colour and name */
    float score;          /* shown after the name with two decimals; < 0: no score (ground truth) */
} draw_box;

typedef enum draw_kind {
    DRAW_PREDICTION = 0,   /* class colour, tag "name 0.87" above the box's top-left corner */
    DRAW_GROUND_TRUTH = 1, /* green, thinner, tag "name" below the box's bottom-left corner */
} draw_kind;

/* The colour of class `label` for predictions (RGB). Labels beyond the palette get hues spread
 * by the golden angle, skipping the greens kept for ground truth. */
void draw_class_colour(int label, uint8_t rgb[3]);
/* The ground-truth colour (RGB). */
void draw_gt_colour(uint8_t rgb[3]);

/* Box line width in pixels for a w x h image (the rims add one pixel each side). */
int draw_line_width(int w, int h);

/* Draws the ground truth (gt, n_gt) and the predictions (pred, n_pred) onto img (w x h RGB):
 * every box line first, then every tag, so no line crosses a label; names[label] for
 * label < n_names, else "class <label>". Predictions go in ascending score order, so the most
 * confident box and tag end on top. Boxes with a non-finite coordinate or entirely outside the
 * image are skipped. OTE_EINVAL on a bad image (NULL, w or h <= 0) or list. Returns the number of
 * boxes drawn. */
int draw_detections(uint8_t *img, int w, int h, const draw_box *gt, int n_gt, const draw_box *pred, int n_pred,
                    const char *const *names, int n_names);
/* One kind only (draw_detections with the other list empty). */
int draw_boxes(uint8_t *img, int w, int h, const draw_box *boxes, int n, const char *const *names, int n_names,
               draw_kind kind);

/* A legend strip: the height (>= 1) that n tags (texts) need below a w x h image, wrapping at
 * its width, at the image's text size. */
int draw_legend_height(int w, int h, const char *const *texts, int n);
/* Fills rows y0..h-1 of img (w x h RGB) dark grey and lays the tags out there, each in its colour
 * (e.g. {"ground truth", green}, then one per class), at the text size of a w x style_h image.
 * OTE_EINVAL on a bad image or row. */
int draw_legend(uint8_t *img, int w, int h, int y0, int style_h, const char *const *texts,
                const uint8_t (*colours)[3], int n);

#ifdef __cplusplus
}
#endif

#endif
