/* demo.c - synthesis of the built-in demo detection set (see demo.h). */
#include "data/demo.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "data/image.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "io/atomic.h"

enum { DEMO_RECT = 0, DEMO_ELLIPSE = 1, DEMO_TRIANGLE = 2 };
const char *const demo_class_names[DEMO_NCLASS] = {"rectangle", "ellipse", "triangle"};

#define DEMO_MAX_OBJ 3
#define DEMO_MIN_SIDE 40
#define DEMO_MAX_SIDE 120
#define DEMO_MARGIN 6 /* pixels kept free between two shapes' boxes */

typedef struct demo_img {
    int w, h;
    uint8_t *rgb; /* (h, w, 3) */
} demo_img;

static uint8_t demo_clamp(double v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5); }

static void demo_put(demo_img *im, int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->rgb + ((size_t)y * im->w + x) * 3, c, 3);
}

/* Gradient + stripes + noise, then distractors: a few thin lines and small dots (not objects). */
static void demo_background(demo_img *im, rng *r) {
    double c0[3], c1[3];
    for (int k = 0; k < 3; k++) c0[k] = 30 + 190 * rng_uniform(r), c1[k] = 30 + 190 * rng_uniform(r);
    double ang = 6.283185307179586 * rng_uniform(r), ca = cos(ang), sa = sin(ang);
    int stripes = (int)rng_below(r, 4);
    double sp = 16 + 40 * rng_uniform(r);
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) {
            double t = ((x - im->w / 2.0) * ca + (y - im->h / 2.0) * sa) / (im->w + im->h) + 0.5;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double stripe = stripes && fmod(x * sa - y * ca + 1e4, sp) < sp / (2 + stripes) ? 16 : 0;
            for (int k = 0; k < 3; k++)
                im->rgb[((size_t)y * im->w + x) * 3 + k] =
                    demo_clamp(c0[k] * (1 - t) + c1[k] * t + stripe + 16 * (rng_uniform(r) - 0.5));
        }
    int lines = (int)rng_below(r, 4), dots = (int)rng_below(r, 6);
    for (int i = 0; i < lines; i++) {
        uint8_t c[3];
        for (int k = 0; k < 3; k++) c[k] = (uint8_t)rng_below(r, 256);
        double x0 = rng_uniform(r) * im->w, y0 = rng_uniform(r) * im->h, x1 = rng_uniform(r) * im->w,
               y1 = rng_uniform(r) * im->h;
        int steps = (int)(fabs(x1 - x0) + fabs(y1 - y0)) + 1;
        for (int s = 0; s <= steps; s++) {
            double f = (double)s / steps;
            int x = (int)(x0 + f * (x1 - x0)), y = (int)(y0 + f * (y1 - y0));
            demo_put(im, x, y, c), demo_put(im, x + 1, y, c);
        }
    }
    for (int i = 0; i < dots; i++) {
        uint8_t c[3];
        for (int k = 0; k < 3; k++) c[k] = (uint8_t)rng_below(r, 256);
        int cx = (int)rng_below(r, (uint64_t)im->w), cy = (int)rng_below(r, (uint64_t)im->h), rad = 2 + (int)rng_below(r, 5);
        for (int y = -rad; y <= rad; y++)
            for (int x = -rad; x <= rad; x++)
                if (x * x + y * y <= rad * rad) demo_put(im, cx + x, cy + y, c);
    }
}

/* A colour at least DEMO_MIN_CONTRAST away (L1) from the mean background inside the box. */
static void demo_colour(const demo_img *im, const int box[4], rng *r, uint8_t col[3]) {
    double m[3] = {0, 0, 0};
    long n = 0;
    for (int y = box[1]; y < box[3]; y += 2)
        for (int x = box[0]; x < box[2]; x += 2, n++)
            for (int k = 0; k < 3; k++) m[k] += im->rgb[((size_t)y * im->w + x) * 3 + k];
    for (int k = 0; k < 3; k++) m[k] /= n > 0 ? (double)n : 1.0;
    for (int tries = 0;; tries++) {
        double d = 0;
        for (int k = 0; k < 3; k++) col[k] = (uint8_t)rng_below(r, 256), d += fabs(col[k] - m[k]);
        if (d >= DEMO_MIN_CONTRAST) return;
        if (tries > 64) { /* a mid-grey background: take the colour opposite to it */
            for (int k = 0; k < 3; k++) col[k] = m[k] < 128 ? 255 : 0;
            return;
        }
    }
}

/* Draws one shape filling [x0,x1)x[y0,y1); returns its exact pixel box (x0, y0, x1, y1). */
static void demo_draw(demo_img *im, int cls, const int cand[4], const uint8_t col[3], int box[4]) {
    const int x0 = cand[0], y0 = cand[1], x1 = cand[2], y1 = cand[3];
    int bx0 = x1, by0 = y1, bx1 = x0 - 1, by1 = y0 - 1;
    double cx = (x0 + x1 - 1) / 2.0, cy = (y0 + y1 - 1) / 2.0, rx = (x1 - x0) / 2.0, ry = (y1 - y0) / 2.0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int in = 1;
            if (cls == DEMO_ELLIPSE) {
                double dx = (x - cx) / rx, dy = (y - cy) / ry;
                in = dx * dx + dy * dy <= 1.0;
            } else if (cls == DEMO_TRIANGLE) { /* isosceles, apex at the top */
                double t = (double)(y - y0 + 1) / (y1 - y0);
                in = fabs(x - cx) <= t * rx;
            }
            if (!in) continue;
            demo_put(im, x, y, col);
            bx0 = x < bx0 ? x : bx0, by0 = y < by0 ? y : by0, bx1 = x > bx1 ? x : bx1, by1 = y > by1 ? y : by1;
        }
    box[0] = bx0, box[1] = by0, box[2] = bx1 + 1, box[3] = by1 + 1;
}

static int demo_overlaps(const int *a, const int *b) {
    return !(a[2] + DEMO_MARGIN <= b[0] || b[2] + DEMO_MARGIN <= a[0] || a[3] + DEMO_MARGIN <= b[1] ||
             b[3] + DEMO_MARGIN <= a[1]);
}

static void demo_add_ann(cJSON *anns, long id, int image_id, int cls, const int box[4]) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", (double)id);
    cJSON_AddNumberToObject(a, "image_id", image_id);
    cJSON_AddNumberToObject(a, "category_id", cls + 1);
    cJSON *bb = cJSON_AddArrayToObject(a, "bbox");
    cJSON_AddItemToArray(bb, cJSON_CreateNumber(box[0]));
    cJSON_AddItemToArray(bb, cJSON_CreateNumber(box[1]));
    cJSON_AddItemToArray(bb, cJSON_CreateNumber(box[2] - box[0]));
    cJSON_AddItemToArray(bb, cJSON_CreateNumber(box[3] - box[1]));
    cJSON_AddNumberToObject(a, "area", (double)(box[2] - box[0]) * (box[3] - box[1]));
    cJSON_AddNumberToObject(a, "iscrowd", 0);
    cJSON_AddItemToArray(anns, a);
}

/* The JSON text, written atomically like the images (image_write_rgb). */
static int demo_write_json(const char *path, cJSON *root) {
    char *txt = cJSON_Print(root);
    if (!txt) return ote_err(OTE_ENOMEM, "%s: cannot format JSON", path);
    int s = atomic_write(path, txt, strlen(txt), 0666);
    free(txt);
    return s;
}

/* One image: background, then up to DEMO_MAX_OBJ non-overlapping shapes (at least one). */
static int demo_image(demo_img *im, rng *r, cJSON *anns, long *ann_id, int image_id, demo_stats *st) {
    im->w = 224 + 32 * (int)rng_below(r, 4);
    im->h = 176 + 16 * (int)rng_below(r, 6);
    im->rgb = malloc((size_t)im->w * im->h * 3);
    if (!im->rgb) return ote_err(OTE_ENOMEM, "demo image %dx%d", im->w, im->h);
    demo_background(im, r);
    int boxes[DEMO_MAX_OBJ][4], nb = 0, want = 1 + (int)rng_below(r, DEMO_MAX_OBJ);
    for (int tries = 0; nb < want && tries < 200; tries++) {
        int hi_w = im->w / 2 < DEMO_MAX_SIDE ? im->w / 2 : DEMO_MAX_SIDE, hi_h = im->h / 2 < DEMO_MAX_SIDE ? im->h / 2 : DEMO_MAX_SIDE;
        int sw = DEMO_MIN_SIDE + (int)rng_below(r, (uint64_t)(hi_w - DEMO_MIN_SIDE + 1));
        int sh = DEMO_MIN_SIDE + (int)rng_below(r, (uint64_t)(hi_h - DEMO_MIN_SIDE + 1));
        int x0 = (int)rng_below(r, (uint64_t)(im->w - sw + 1)), y0 = (int)rng_below(r, (uint64_t)(im->h - sh + 1));
        int cand[4] = {x0, y0, x0 + sw, y0 + sh}, clash = 0;
        for (int k = 0; k < nb; k++) clash |= demo_overlaps(cand, boxes[k]);
        if (clash) continue;
        int cls = (int)rng_below(r, DEMO_NCLASS), box[4];
        uint8_t col[3];
        demo_colour(im, cand, r, col);
        demo_draw(im, cls, cand, col, box);
        memcpy(boxes[nb++], cand, sizeof cand);
        demo_add_ann(anns, ++*ann_id, image_id, cls, box);
        st->boxes++, st->per_class[cls]++;
    }
    return OTE_OK;
}

static int demo_split(const char *dir, const char *split, int n_images, uint64_t seed, long *ann_id, demo_stats *st) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, split);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return ote_err(OTE_EIO, "%s: cannot create: %s", path, strerror(errno));
    cJSON *root = cJSON_CreateObject(), *images = cJSON_AddArrayToObject(root, "images");
    cJSON *anns = cJSON_AddArrayToObject(root, "annotations"), *cats = cJSON_AddArrayToObject(root, "categories");
    for (int c = 0; c < DEMO_NCLASS; c++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", c + 1);
        cJSON_AddStringToObject(o, "name", demo_class_names[c]);
        cJSON_AddItemToArray(cats, o);
    }
    rng r;
    rng_seed(&r, seed);
    int s = OTE_OK;
    for (int i = 0; i < n_images && s == OTE_OK; i++) {
        demo_img im = {0};
        s = demo_image(&im, &r, anns, ann_id, i + 1, st);
        char name[64];
        snprintf(name, sizeof name, "%s_%04d.png", split, i + 1);
        snprintf(path, sizeof path, "%s/%s/%s", dir, split, name);
        if (s == OTE_OK) s = image_write_rgb(path, im.rgb, im.w, im.h);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", i + 1);
        cJSON_AddStringToObject(o, "file_name", name);
        cJSON_AddNumberToObject(o, "width", im.w);
        cJSON_AddNumberToObject(o, "height", im.h);
        cJSON_AddItemToArray(images, o);
        free(im.rgb);
        st->images++;
    }
    if (s == OTE_OK) {
        snprintf(path, sizeof path, "%s/annotations/%s.json", dir, split);
        s = demo_write_json(path, root);
    }
    cJSON_Delete(root);
    return s;
}

int demo_write(const char *dir, int n_train, int n_val, uint64_t seed, demo_stats *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/annotations", dir);
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(path, 0755) != 0 && errno != EEXIST))
        return ote_err(OTE_EIO, "%s: cannot create: %s", path, strerror(errno));
    demo_stats st = {0};
    long ann_id = 0;
    /* different seeds: the validation images are not the training images */
    CHECK(demo_split(dir, "train", n_train, seed, &ann_id, &st));
    CHECK(demo_split(dir, "val", n_val, seed + 1000003, &ann_id, &st));
    if (out) *out = st;
    return OTE_OK;
}
