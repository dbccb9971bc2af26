/* anchors.c - ATSS anchor grid (see anchors.h). Coordinates are small integers times the stride,
 * so the f32 values are exact and equal mmdet's AnchorGenerator output bit for bit. */
#include "models/anchors.h"

#include "engine/ote.h"

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

int anchors_grid_init(anchor_grid *g, int in_h, int in_w) {
    if (in_h <= 0 || in_w <= 0)
        return ote_err(OTE_EINVAL, "anchors: input size: %dx%d (must be positive)", in_h, in_w);
    g->in_h = in_h;
    g->in_w = in_w;
    g->start[0] = 0;
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        g->stride[l] = 8 << l;
        g->h[l] = ceil_div(in_h, g->stride[l]);
        g->w[l] = ceil_div(in_w, g->stride[l]);
        g->start[l + 1] = g->start[l] + g->h[l] * g->w[l];
    }
    g->total = g->start[ANCHORS_LEVELS];
    return OTE_OK;
}

void anchors_fill(const anchor_grid *g, float *boxes) {
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        float s = (float)g->stride[l], half = 4.0f * s;
        float *b = boxes + 4 * (size_t)g->start[l];
        for (int y = 0; y < g->h[l]; y++)
            for (int x = 0; x < g->w[l]; x++, b += 4) {
                float cx = (float)x * s, cy = (float)y * s;
                b[0] = cx - half;
                b[1] = cy - half;
                b[2] = cx + half;
                b[3] = cy + half;
            }
    }
}

void anchors_valid(const anchor_grid *g, int img_h, int img_w, unsigned char *valid) {
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        int vh = ceil_div(img_h, g->stride[l]), vw = ceil_div(img_w, g->stride[l]);
        if (vh > g->h[l]) vh = g->h[l];
        if (vw > g->w[l]) vw = g->w[l];
        unsigned char *v = valid + g->start[l];
        for (int y = 0; y < g->h[l]; y++)
            for (int x = 0; x < g->w[l]; x++) *v++ = (unsigned char)(y < vh && x < vw);
    }
}
