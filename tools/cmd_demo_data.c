/* cmd_demo_data.c - `ote make-demo-data DIR`: a small synthetic COCO-format detection set.
 *
 * Three shape classes (rectangle, ellipse, triangle) in random colours and sizes on varied
 * backgrounds (two-colour gradients with a few stripes and per-pixel noise), written as 24-bit
 * BMP files (no codec dependency) with COCO JSON annotations:
 *   DIR/train/NNNN.bmp, DIR/val/NNNN.bmp and DIR/annotations/{train,val}.json
 * Deterministic for a seed, so the README's main command and tests see the same data. Boxes are
 * the exact pixel extent of each shape. Files are written to temporary names and renamed.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/rng.h"
#include "engine/status.h"
#include "tools/commands.h"

enum { DEMO_RECT = 0, DEMO_ELLIPSE = 1, DEMO_TRIANGLE = 2, DEMO_NCLASS = 3 };
static const char *demo_class_names[DEMO_NCLASS] = {"rectangle", "ellipse", "triangle"};

typedef struct demo_img {
    int w, h;
    uint8_t *rgb; /* h*w*3 */
} demo_img;

static int write_bmp(const char *path, const demo_img *im) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return ote_err(OTE_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    int row = (im->w * 3 + 3) & ~3;
    uint32_t size = 54u + (uint32_t)row * (uint32_t)im->h;
    uint8_t hdr[54] = {'B', 'M'};
    uint32_t v;
    v = size; memcpy(hdr + 2, &v, 4);
    v = 54; memcpy(hdr + 10, &v, 4);
    v = 40; memcpy(hdr + 14, &v, 4);
    int32_t s = im->w; memcpy(hdr + 18, &s, 4);
    s = im->h; memcpy(hdr + 22, &s, 4);
    uint16_t u16 = 1; memcpy(hdr + 26, &u16, 2);
    u16 = 24; memcpy(hdr + 28, &u16, 2);
    v = (uint32_t)row * (uint32_t)im->h; memcpy(hdr + 34, &v, 4);
    int ok = fwrite(hdr, 1, 54, f) == 54;
    uint8_t *line = calloc((size_t)row, 1);
    for (int y = im->h - 1; ok && y >= 0; y--) { /* bottom-up rows, BGR */
        for (int x = 0; x < im->w; x++) {
            const uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
            line[3 * x] = p[2], line[3 * x + 1] = p[1], line[3 * x + 2] = p[0];
        }
        ok = fwrite(line, 1, (size_t)row, f) == (size_t)row;
    }
    free(line);
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ote_err(OTE_EIO, "%s: write failed", path);
    }
    return OTE_OK;
}

static void background(demo_img *im, rng *r) {
    double c0[3], c1[3];
    for (int k = 0; k < 3; k++) c0[k] = 40 + 170 * rng_uniform(r), c1[k] = 40 + 170 * rng_uniform(r);
    double ang = 6.283185307179586 * rng_uniform(r), ca = cos(ang), sa = sin(ang);
    int stripes = (int)rng_below(r, 4);
    double sp = 20 + 40 * rng_uniform(r);
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) {
            double t = ((x - im->w / 2.0) * ca + (y - im->h / 2.0) * sa) / (im->w + im->h) + 0.5;
            if (t < 0) t = 0;
            if (t > 1) t = 1;
            double stripe = stripes && fmod(x * sa - y * ca + 1e4, sp) < sp / (2 + stripes) ? 18 : 0;
            for (int k = 0; k < 3; k++) {
                double v = c0[k] * (1 - t) + c1[k] * t + stripe + 12 * (rng_uniform(r) - 0.5);
                im->rgb[((size_t)y * im->w + x) * 3 + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

/* Draws one shape inside [x0,x1)x[y0,y1); returns its exact pixel bounding box. */
static void draw_shape(demo_img *im, int cls, int x0, int y0, int x1, int y1, const uint8_t col[3], int box[4]) {
    int bx0 = x1, by0 = y1, bx1 = x0 - 1, by1 = y0 - 1;
    double cx = (x0 + x1 - 1) / 2.0, cy = (y0 + y1 - 1) / 2.0, rx = (x1 - x0) / 2.0, ry = (y1 - y0) / 2.0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int in = 0;
            if (cls == DEMO_RECT) in = 1;
            else if (cls == DEMO_ELLIPSE) {
                double dx = (x - cx) / rx, dy = (y - cy) / ry;
                in = dx * dx + dy * dy <= 1.0;
            } else { /* isosceles triangle, apex at the top */
                double t = (double)(y - y0 + 1) / (y1 - y0);
                in = fabs(x - cx) <= t * rx;
            }
            if (!in) continue;
            memcpy(im->rgb + ((size_t)y * im->w + x) * 3, col, 3);
            if (x < bx0) bx0 = x;
            if (y < by0) by0 = y;
            if (x > bx1) bx1 = x;
            if (y > by1) by1 = y;
        }
    box[0] = bx0, box[1] = by0, box[2] = bx1 + 1, box[3] = by1 + 1;
}

static int overlaps(const int *a, const int *b) {
    int m = 4; /* keep shapes a few pixels apart so every box is unambiguous */
    return !(a[2] + m <= b[0] || b[2] + m <= a[0] || a[3] + m <= b[1] || b[3] + m <= a[1]);
}

static int make_split(const char *dir, const char *split, int n_images, uint64_t seed, long *ann_id) {
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
    int status = OTE_OK;
    for (int i = 0; i < n_images && status == OTE_OK; i++) {
        demo_img im;
        im.w = 256 + 32 * (int)rng_below(&r, 5);
        im.h = 192 + 32 * (int)rng_below(&r, 4);
        im.rgb = malloc((size_t)im.w * im.h * 3);
        if (!im.rgb) {
            status = ote_err(OTE_ENOMEM, "demo image");
            break;
        }
        background(&im, &r);
        int boxes[8][4], nb = 0, want = 1 + (int)rng_below(&r, 4);
        for (int tries = 0; nb < want && tries < 200; tries++) {
            int sw = 24 + (int)rng_below(&r, (uint64_t)(im.w / 3)), sh = 24 + (int)rng_below(&r, (uint64_t)(im.h / 3));
            int x0 = (int)rng_below(&r, (uint64_t)(im.w - sw)), y0 = (int)rng_below(&r, (uint64_t)(im.h - sh));
            int cand[4] = {x0, y0, x0 + sw, y0 + sh}, clash = 0;
            for (int k = 0; k < nb; k++) clash |= overlaps(cand, boxes[k]);
            if (clash) continue;
            int cls = (int)rng_below(&r, DEMO_NCLASS);
            uint8_t col[3];
            for (int k = 0; k < 3; k++) col[k] = (uint8_t)rng_below(&r, 256);
            int box[4];
            draw_shape(&im, cls, cand[0], cand[1], cand[2], cand[3], col, box);
            memcpy(boxes[nb++], cand, sizeof cand);
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)++*ann_id);
            cJSON_AddNumberToObject(a, "image_id", i + 1);
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
        char name[64];
        snprintf(name, sizeof name, "%s_%04d.bmp", split, i + 1);
        snprintf(path, sizeof path, "%s/%s/%s", dir, split, name);
        status = write_bmp(path, &im);
        free(im.rgb);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", i + 1);
        cJSON_AddStringToObject(o, "file_name", name);
        cJSON_AddNumberToObject(o, "width", im.w);
        cJSON_AddNumberToObject(o, "height", im.h);
        cJSON_AddItemToArray(images, o);
    }
    if (status == OTE_OK) {
        char *txt = cJSON_Print(root);
        char tmp[4200];
        snprintf(path, sizeof path, "%s/annotations/%s.json", dir, split);
        snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f || fputs(txt, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
            unlink(tmp);
            status = ote_err(OTE_EIO, "%s: cannot write", path);
        }
        free(txt);
    }
    cJSON_Delete(root);
    return status;
}

static void demo_usage(FILE *f) {
    fprintf(f, "usage: ote make-demo-data DIR [--train N] [--val N] [--seed S]\n\n"
               "Writes a small synthetic COCO-format detection set (3 shape classes on varied\n"
               "backgrounds) to DIR/{train,val}/*.bmp and DIR/annotations/{train,val}.json.\n"
               "Defaults: --train 64 --val 24 --seed 7.\n");
}

int cmd_make_demo_data(int argc, char **argv) {
    const char *dir = NULL;
    long n_train = 64, n_val = 24, seed = 7;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            demo_usage(stdout);
            return 0;
        }
        long *dst = !strcmp(a, "--train") ? &n_train : !strcmp(a, "--val") ? &n_val : !strcmp(a, "--seed") ? &seed : NULL;
        if (dst) {
            char *end = NULL;
            if (i + 1 >= argc || (*dst = strtol(argv[i + 1], &end, 10), *end) || *dst < 0 || *dst > 100000) {
                fprintf(stderr, "ote make-demo-data: %s needs a non-negative integer\n", a);
                return 2;
            }
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "ote make-demo-data: unknown option '%s'\n", a);
            return 2;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "ote make-demo-data: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!dir) {
        demo_usage(stderr);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/annotations", dir);
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(path, 0755) != 0 && errno != EEXIST)) {
        fprintf(stderr, "ote make-demo-data: %s: cannot create: %s\n", path, strerror(errno));
        return 1;
    }
    long ann_id = 0;
    if (make_split(dir, "train", (int)n_train, (uint64_t)seed, &ann_id) < 0 ||
        make_split(dir, "val", (int)n_val, (uint64_t)seed + 1000003, &ann_id) < 0) {
        fprintf(stderr, "ote make-demo-data: %s\n", ote_errmsg());
        return 1;
    }
    printf("demo data: %ld train + %ld val images, %ld boxes, 3 classes in %s\n", n_train, n_val, ann_id, dir);
    return 0;
}
