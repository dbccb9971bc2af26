/* anchors.h - ATSS anchor grid: per-level feature sizes, anchor boxes and valid flags (spec §5).
 *
 * One square anchor of side 8*stride per feature location, centred on the cell's top-left corner
 * (mmdet center_offset 0): level l, location (y, x) -> [x*s - 4s, y*s - 4s, x*s + 4s, y*s + 4s],
 * flat index start[l] + y*W_l + x, levels P3..P7 concatenated (strides 8..128). Feature sizes are
 * ceil(in / stride), which is what the stride-2 convolutions produce. Pure functions, no allocation.
 */
#ifndef OTE_ANCHORS_H
#define OTE_ANCHORS_H

#define ANCHORS_LEVELS 5

typedef struct anchor_grid {
    int in_h, in_w;                    /* padded network input size */
    int stride[ANCHORS_LEVELS];        /* 8, 16, 32, 64, 128 */
    int h[ANCHORS_LEVELS], w[ANCHORS_LEVELS]; /* feature map size per level */
    int start[ANCHORS_LEVELS + 1];     /* first flat anchor index of each level; start[5] = total */
    int total;                         /* anchors per image (15213 at 736x992) */
} anchor_grid;

/* Fills the grid for a padded input of in_h x in_w; OTE_EINVAL if a size is not positive. */
int anchors_grid_init(anchor_grid *g, int in_h, int in_w);
/* Writes all anchors, (total, 4) xyxy f32. */
void anchors_fill(const anchor_grid *g, float *boxes);
/* Valid (= inside, allowed_border -1) flags for an image whose own, unpadded size is img_h x img_w:
 * location (y, x) of level l is valid iff x < min(ceil(img_w/s), W_l) and y < min(ceil(img_h/s), H_l).
 * valid: (total) 0/1. */
void anchors_valid(const anchor_grid *g, int img_h, int img_w, unsigned char *valid);

#endif
