/* aug.c - MinIoURandomCrop, resize, flip and normalisation of one sample (see aug.h).
 *
 * Pure functions over caller-owned buffers; owns nothing. Numbers follow mmdetection 2.x's
 * transforms.py (MinIoURandomCrop, Resize keep_ratio=False, RandomFlip, Normalize) and mmcv's
 * imresize / imnormalize, as restated in spec-detector.md §1.
 */
#include "data/aug.h"

#include <math.h>
#include <string.h>

#include "data/image.h"
#include "engine/ote.h"

static const aug_size aug_default_sizes[5] = {{992, 736}, {896, 736}, {1088, 736}, {992, 672}, {992, 800}};

void aug_config_train_default(aug_config *c) {
    int st = aug_config_train_sizes(c, aug_default_sizes, 5);
    ASSERT(st == OTE_OK);
}

int aug_config_train_sizes(aug_config *c, const aug_size *sizes, int n) {
    if (n < 1 || n > AUG_MAX_SIZES) return ote_err(OTE_EINVAL, "augment: %d sizes (want 1..%d)", n, AUG_MAX_SIZES);
    for (int i = 0; i < n; i++)
        if (sizes[i].w < 1 || sizes[i].h < 1 || sizes[i].w > 16384 || sizes[i].h > 16384)
            return ote_err(OTE_EINVAL, "augment: size %d is %dx%d", i, sizes[i].w, sizes[i].h);
    memset(c, 0, sizeof *c);
    memcpy(c->sizes, sizes, sizeof *sizes * (size_t)n);
    c->n_sizes = n;
    c->min_iou_crop = 1;
    c->min_crop_size = 0.3;
    c->flip_prob = 0.5;
    return OTE_OK;
}

int aug_config_train_scaled(aug_config *c, double factor) {
    if (!(factor > 0 && factor <= 8)) return ote_err(OTE_EINVAL, "augment: size factor %g not in (0, 8]", factor);
    aug_size s[5];
    for (int i = 0; i < 5; i++) {
        int w = (int)lround(aug_default_sizes[i].w * factor / 32.0) * 32;
        int h = (int)lround(aug_default_sizes[i].h * factor / 32.0) * 32;
        s[i].w = w < 32 ? 32 : w;
        s[i].h = h < 32 ? 32 : h;
    }
    return aug_config_train_sizes(c, s, 5);
}

int aug_config_test(aug_config *c, int w, int h) {
    aug_size s = {w, h};
    CHECK(aug_config_train_sizes(c, &s, 1));
    c->min_iou_crop = 0;
    c->flip_prob = 0;
    return OTE_OK;
}

static uint64_t aug_mix(uint64_t x) {
    /* splitmix64 finaliser: a bijective avalanche mix, enough to decorrelate nearby keys */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void aug_rng(rng *r, uint64_t seed, int epoch, int index, int stream) {
    uint64_t k = aug_mix(seed);
    k = aug_mix(k ^ (uint64_t)(uint32_t)epoch);
    k = aug_mix(k ^ ((uint64_t)(uint32_t)index << 8));
    k = aug_mix(k ^ (uint64_t)(uint32_t)stream);
    rng_seed(r, k);
}

void aug_draw_geom(const aug_config *c, rng *r, aug_geom *g) {
    ASSERT(c->n_sizes >= 1);
    /* mmdet Resize(multiscale_mode='value') picks an index uniformly; RandomFlip draws after it. */
    g->size_idx = c->n_sizes > 1 ? (int)rng_below(r, (uint64_t)c->n_sizes) : 0;
    g->out_w = c->sizes[g->size_idx].w;
    g->out_h = c->sizes[g->size_idx].h;
    g->flip = c->flip_prob > 0 && rng_uniform(r) < c->flip_prob;
}

double aug_iou(const double a[4], const double b[4]) {
    double area1 = (a[2] - a[0]) * (a[3] - a[1]);
    double area2 = (b[2] - b[0]) * (b[3] - b[1]);
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]);
    double ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double overlap = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    double uni = area1 + area2 - overlap;
    if (uni < 1e-6) uni = 1e-6;
    return overlap / uni;
}

/* numpy.random.uniform(low, high) = low + (high - low) * U[0,1). */
static double aug_np_uniform(rng *r, double low, double high) { return low + (high - low) * rng_uniform(r); }

static int aug_center_inside(const float *b, const int p[4]) {
    /* float32 centre as numpy computes (boxes[:, :2] + boxes[:, 2:]) / 2 on a float32 array */
    float cx = (b[0] + b[2]) / 2.0f, cy = (b[1] + b[3]) / 2.0f;
    return cx > (float)p[0] && cy > (float)p[1] && cx < (float)p[2] && cy < (float)p[3];
}

int aug_min_iou_crop(rng *r, int w, int h, const float *boxes, int n, double min_crop_size, int patch[4],
                     double *mode_out) {
    static const double modes[7] = {1.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.0}; /* (1, *min_ious, 0) */
    for (int round = 0; round < 10000; round++) {
        double mode = modes[rng_below(r, 7)];
        if (mode == 1.0) break;
        for (int t = 0; t < 50; t++) {
            double new_w = aug_np_uniform(r, min_crop_size * w, w);
            double new_h = aug_np_uniform(r, min_crop_size * h, h);
            if (new_h / new_w < 0.5 || new_h / new_w > 2) continue;
            double left = aug_np_uniform(r, w - new_w, 1.0);
            double top = aug_np_uniform(r, h - new_h, 1.0);
            int p[4] = {(int)left, (int)top, (int)(left + new_w), (int)(top + new_h)};
            if (p[2] == p[0] || p[3] == p[1]) continue;
            if (n > 0) {
                double pd[4] = {p[0], p[1], p[2], p[3]};
                int ok = 1, any_centre = 0;
                for (int i = 0; i < n && ok; i++) {
                    double bd[4] = {boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]};
                    if (aug_iou(pd, bd) < mode) ok = 0;
                    any_centre |= aug_center_inside(boxes + 4 * i, p);
                }
                if (!ok || !any_centre) continue;
            }
            memcpy(patch, p, sizeof p);
            if (mode_out) *mode_out = mode;
            return 1;
        }
    }
    patch[0] = 0;
    patch[1] = 0;
    patch[2] = w;
    patch[3] = h;
    if (mode_out) *mode_out = 1.0;
    return 0;
}

int aug_crop_boxes(float *boxes, int *labels, int n, const int patch[4]) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        if (!aug_center_inside(b, patch)) continue;
        /* clip(max=patch[2:]) on x2,y2, clip(min=patch[:2]) on x1,y1, then shift; float64 then float32 */
        double x1 = fmax(b[0], patch[0]), y1 = fmax(b[1], patch[1]);
        double x2 = fmin(b[2], patch[2]), y2 = fmin(b[3], patch[3]);
        float *o = boxes + 4 * m;
        o[0] = (float)(x1 - patch[0]);
        o[1] = (float)(y1 - patch[1]);
        o[2] = (float)(x2 - patch[0]);
        o[3] = (float)(y2 - patch[1]);
        if (labels) labels[m] = labels[i];
        m++;
    }
    return m;
}

void aug_scale_factor(int w, int h, int out_w, int out_h, float scale[4]) {
    scale[0] = scale[2] = (float)((double)out_w / w);
    scale[1] = scale[3] = (float)((double)out_h / h);
}

static float aug_clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

void aug_resize_boxes(float *boxes, int n, const float scale[4], int out_w, int out_h) {
    for (int i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        for (int k = 0; k < 4; k++) b[k] = b[k] * scale[k];
        b[0] = aug_clampf(b[0], 0.0f, (float)out_w);
        b[2] = aug_clampf(b[2], 0.0f, (float)out_w);
        b[1] = aug_clampf(b[1], 0.0f, (float)out_h);
        b[3] = aug_clampf(b[3], 0.0f, (float)out_h);
    }
}

void aug_flip_boxes(float *boxes, int n, int w) {
    for (int i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        float x1 = (float)w - b[2], x2 = (float)w - b[0];
        b[0] = x1;
        b[2] = x2;
    }
}

int aug_render(const uint8_t *rgb, int w, int h, const int patch[4], int out_w, int out_h, int flip,
               uint8_t *scratch, float *dst, int pad_w, int pad_h) {
    int p[4] = {0, 0, w, h};
    if (patch) memcpy(p, patch, sizeof p);
    if (p[0] < 0 || p[1] < 0 || p[2] > w || p[3] > h || p[2] <= p[0] || p[3] <= p[1])
        return ote_err(OTE_EINVAL, "augment: patch [%d,%d,%d,%d] outside a %dx%d image", p[0], p[1], p[2], p[3], w, h);
    if (out_w > pad_w || out_h > pad_h)
        return ote_err(OTE_EINVAL, "augment: output %dx%d larger than the padded %dx%d", out_w, out_h, pad_w, pad_h);
    const uint8_t *src = rgb + ((size_t)p[1] * (size_t)w + (size_t)p[0]) * 3;
    CHECK(image_resize_u8(src, p[2] - p[0], p[3] - p[1], (size_t)w * 3, 3, scratch, out_w, out_h,
                          (size_t)out_w * 3));
    /* mmcv imnormalize multiplies by 1/std computed once (float32 arithmetic), mean 0 here. A
     * 256-entry table holds exactly those products; one pass de-interleaves into the 3 planes. */
    float lut[256];
    const float inv = 1.0f / 255.0f;
    for (int v = 0; v < 256; v++) lut[v] = (float)v * inv;
    size_t plane = (size_t)pad_w * (size_t)pad_h;
    for (int y = 0; y < out_h; y++) {
        const uint8_t *row = scratch + (size_t)y * (size_t)out_w * 3;
        float *o0 = dst + (size_t)y * (size_t)pad_w, *o1 = o0 + plane, *o2 = o1 + plane;
        if (flip) {
            const uint8_t *q = row + (size_t)(out_w - 1) * 3;
            for (int x = 0; x < out_w; x++, q -= 3) {
                o0[x] = lut[q[0]];
                o1[x] = lut[q[1]];
                o2[x] = lut[q[2]];
            }
        } else {
            const uint8_t *q = row;
            for (int x = 0; x < out_w; x++, q += 3) {
                o0[x] = lut[q[0]];
                o1[x] = lut[q[1]];
                o2[x] = lut[q[2]];
            }
        }
        if (pad_w > out_w) {
            size_t tail = sizeof *o0 * (size_t)(pad_w - out_w);
            memset(o0 + out_w, 0, tail);
            memset(o1 + out_w, 0, tail);
            memset(o2 + out_w, 0, tail);
        }
    }
    if (pad_h > out_h)
        for (int c = 0; c < 3; c++)
            memset(dst + plane * (size_t)c + (size_t)out_h * (size_t)pad_w, 0,
                   sizeof *dst * (size_t)(pad_h - out_h) * (size_t)pad_w);
    return OTE_OK;
}
