/* test_data_augment.c - augmentation pieces and the image I/O shim.
 *
 * References are independent: a naive double-precision bilinear resize written here with cv2's
 * pixel-centre convention, hand-computed boxes, and property checks of MinIoURandomCrop over many
 * seeds on synthetic boxes (IoU recomputed here, centre test recomputed here).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/aug.h"
#include "data/image.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "tests/expect.h"



/* Naive bilinear with OpenCV's INTER_LINEAR convention: src = (dst + 0.5) * (in / out) - 0.5,
 * weights clamped at the borders (a coordinate left of pixel 0 or right of the last pixel takes
 * that edge pixel). */
static double ref_sample(const double *src, int sw, int sh, int c, int ch, double fx, double fy) {
    int x0 = (int)floor(fx), y0 = (int)floor(fy);
    double ax = fx - x0, ay = fy - y0;
    if (x0 < 0) x0 = 0, ax = 0;
    if (x0 >= sw - 1) x0 = sw - 1, ax = 0;
    if (y0 < 0) y0 = 0, ay = 0;
    if (y0 >= sh - 1) y0 = sh - 1, ay = 0;
    int x1 = x0 + 1 < sw ? x0 + 1 : x0, y1 = y0 + 1 < sh ? y0 + 1 : y0;
#define P(x, y) src[((size_t)(y) * sw + (x)) * c + ch]
    return (1 - ay) * ((1 - ax) * P(x0, y0) + ax * P(x1, y0)) + ay * ((1 - ax) * P(x0, y1) + ax * P(x1, y1));
#undef P
}

static void ref_resize(const double *src, int sw, int sh, int c, double *dst, int dw, int dh) {
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int k = 0; k < c; k++) {
                double fx = (x + 0.5) * ((double)sw / dw) - 0.5, fy = (y + 0.5) * ((double)sh / dh) - 0.5;
                dst[((size_t)y * dw + x) * c + k] = ref_sample(src, sw, sh, c, k, fx, fy);
            }
}

static void test_resize(void) {
    rng r;
    rng_seed(&r, 42);
    const int sizes[][4] = {{17, 13, 29, 7}, {40, 30, 20, 15}, {33, 21, 50, 40}, {9, 9, 9, 9}, {64, 48, 23, 37}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int sw = sizes[t][0], sh = sizes[t][1], dw = sizes[t][2], dh = sizes[t][3];
        size_t ns = (size_t)sw * sh * 3, nd = (size_t)dw * dh * 3;
        uint8_t *s8 = malloc(ns), *d8 = malloc(nd);
        float *sf = malloc(ns * sizeof *sf), *df = malloc(nd * sizeof *df);
        double *sd = malloc(ns * sizeof *sd), *ref = malloc(nd * sizeof *ref);
        for (size_t i = 0; i < ns; i++) {
            s8[i] = (uint8_t)rng_below(&r, 256);
            sf[i] = s8[i];
            sd[i] = s8[i];
        }
        ref_resize(sd, sw, sh, 3, ref, dw, dh);
        int a = image_resize_u8(s8, sw, sh, (size_t)sw * 3, 3, d8, dw, dh, (size_t)dw * 3);
        int b = image_resize_f32(sf, sw, sh, (size_t)sw * 3, 3, df, dw, dh, (size_t)dw * 3);
        double e8 = 0, ef = 0;
        for (size_t i = 0; i < nd; i++) {
            e8 = fmax(e8, fabs(d8[i] - ref[i]));
            ef = fmax(ef, fabs((double)df[i] - ref[i]));
        }
        /* u8: OpenCV uses 11-bit fixed-point weights and rounds to an integer: within 1 level of the
         * exact value. f32: float weights, values <= 255: within 1e-3. */
        EXPECT(a == 0 && e8 <= 1.0, "u8 bilinear %dx%d -> %dx%d vs naive: max err %.3f (tol 1 level)", sw, sh, dw, dh,
               e8);
        EXPECT(b == 0 && ef <= 1e-3, "f32 bilinear %dx%d -> %dx%d vs naive: max err %.2e (tol 1e-3)", sw, sh, dw,
               dh, ef);
        free(s8), free(d8), free(sf), free(df), free(sd), free(ref);
    }
    /* A crop resized in place through the source stride equals resizing a copied crop. */
    int W = 30, H = 20;
    uint8_t *img = malloc((size_t)W * H * 3), *crop = malloc(12 * 9 * 3), *o1 = malloc(25 * 14 * 3),
            *o2 = malloc(25 * 14 * 3);
    for (int i = 0; i < W * H * 3; i++) img[i] = (uint8_t)rng_below(&r, 256);
    for (int y = 0; y < 9; y++) memcpy(crop + (size_t)y * 12 * 3, img + ((size_t)(y + 5) * W + 7) * 3, 12 * 3);
    int a = image_resize_u8(img + ((size_t)5 * W + 7) * 3, 12, 9, (size_t)W * 3, 3, o1, 25, 14, 25 * 3);
    int b = image_resize_u8(crop, 12, 9, 12 * 3, 3, o2, 25, 14, 25 * 3);
    EXPECT(a == 0 && b == 0 && memcmp(o1, o2, 25 * 14 * 3) == 0, "resize of a strided crop view == resize of a copy");
    EXPECT(image_resize_u8(img, 0, 5, 3, 3, o1, 4, 4, 12) == OTE_EINVAL, "zero-width resize -> EINVAL: %s",
           ote_errmsg());
    free(img), free(crop), free(o1), free(o2);
}

static void test_image_io(void) {
    char dir[] = "/tmp/ote_test_aug_XXXXXX";
    if (!mkdtemp(dir)) {
        EXPECT(0, "mkdtemp");
        return;
    }
    char png[300], bad[300], empty[300], trunc[300], missing[300];
    snprintf(png, sizeof png, "%s/rgb.png", dir);
    snprintf(bad, sizeof bad, "%s/corrupt.jpg", dir);
    snprintf(empty, sizeof empty, "%s/empty.png", dir);
    snprintf(trunc, sizeof trunc, "%s/trunc.png", dir);
    snprintf(missing, sizeof missing, "%s/missing.jpg", dir);
    int w = 7, h = 5;
    uint8_t px[7 * 5 * 3];
    for (int i = 0; i < w * h; i++) {
        px[3 * i] = (uint8_t)(10 + i);     /* R */
        px[3 * i + 1] = (uint8_t)(100 + i); /* G */
        px[3 * i + 2] = (uint8_t)(200 + i); /* B */
    }
    EXPECT(image_write_rgb(png, px, w, h) == 0, "write a 7x5 RGB PNG");
    image_u8 im;
    memset(&im, 0, sizeof im);
    int st = image_read_rgb(png, &im);
    EXPECT(st == 0 && im.w == w && im.h == h && memcmp(im.data, px, sizeof px) == 0,
           "PNG round trip is exact and channel order is R,G,B (%d %s)", st, ote_errmsg());
    st = image_read_rgb(missing, &im);
    EXPECT(st == OTE_EIO && strstr(ote_errmsg(), "missing.jpg"), "missing image -> EIO: %s", ote_errmsg());
    FILE *f = fopen(bad, "wb");
    for (int i = 0; i < 3000; i++) fputc((i * 7919) & 255, f);
    fclose(f);
    st = image_read_rgb(bad, &im);
    EXPECT(st == OTE_EPARSE && strstr(ote_errmsg(), "corrupt.jpg"), "corrupt bytes -> EPARSE: %s", ote_errmsg());
    f = fopen(empty, "wb");
    fclose(f);
    st = image_read_rgb(empty, &im);
    EXPECT(st == OTE_EPARSE && strstr(ote_errmsg(), "empty.png"), "empty file -> EPARSE: %s", ote_errmsg());
    /* a PNG cut in half: header fine, data missing */
    FILE *in = fopen(png, "rb");
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    f = fopen(trunc, "wb");
    fwrite(buf, 1, n / 2, f);
    fclose(f);
    st = image_read_rgb(trunc, &im);
    EXPECT(st == OTE_EPARSE && strstr(ote_errmsg(), "trunc.png"), "truncated PNG -> EPARSE, no crash: %s",
           ote_errmsg());
    st = image_read_rgb(dir, &im);
    EXPECT(st < 0 && strstr(ote_errmsg(), dir), "a directory as image -> error (%d): %s", st, ote_errmsg());
    image_u8_free(&im);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

static void test_boxes(void) {
    /* crop: patch [10,20,110,120]; centres strictly inside are kept */
    float b[6][4] = {{0, 0, 30, 30},    {50, 50, 200, 90}, {100, 100, 130, 140},
                     {20, 30, 60, 200}, {0, 20, 20, 40},   {12, 22, 108, 118}};
    int lab[6] = {0, 1, 2, 3, 4, 5};
    int patch[4] = {10, 20, 110, 120};
    int n = aug_crop_boxes(&b[0][0], lab, 6, patch);
    EXPECT(n == 2 && lab[0] == 3 && lab[1] == 5, "crop keeps only boxes with centre strictly inside (%d kept)", n);
    EXPECT(n == 2 && b[0][0] == 10 && b[0][1] == 10 && b[0][2] == 50 && b[0][3] == 100,
           "kept box clipped to the patch and shifted: [%g %g %g %g] == [10 10 50 100]", (double)b[0][0],
           (double)b[0][1], (double)b[0][2], (double)b[0][3]);
    EXPECT(n == 2 && b[1][0] == 2 && b[1][1] == 2 && b[1][2] == 98 && b[1][3] == 98, "inner box only shifted");

    float sc[4];
    aug_scale_factor(200, 100, 300, 50, sc);
    EXPECT(sc[0] == 1.5f && sc[1] == 0.5f && sc[2] == 1.5f && sc[3] == 0.5f, "scale factor [w'/w h'/h w'/w h'/h]");
    float r[2][4] = {{10, 20, 30, 40}, {190, 90, 210, 110}};
    aug_resize_boxes(&r[0][0], 2, sc, 300, 50);
    EXPECT(r[0][0] == 15 && r[0][1] == 10 && r[0][2] == 45 && r[0][3] == 20, "resize scales boxes by the factors");
    EXPECT(r[1][0] == 285 && r[1][1] == 45 && r[1][2] == 300 && r[1][3] == 50, "resized boxes clipped to [0,w']x[0,h']");
    aug_scale_factor(1920, 1080, 992, 736, sc);
    EXPECT(sc[0] == (float)(992.0 / 1920.0) && sc[1] == (float)(736.0 / 1080.0), "scale factor rounded to float32");
    float fl[4] = {15, 10, 45, 20};
    aug_flip_boxes(fl, 1, 300);
    EXPECT(fl[0] == 255 && fl[1] == 10 && fl[2] == 285 && fl[3] == 20, "flip: x1' = w - x2, x2' = w - x1");
    aug_flip_boxes(fl, 1, 300);
    EXPECT(fl[0] == 15 && fl[2] == 45, "flip twice is the identity");
}

static void test_render(void) {
    /* A white rectangle [10,30)x[8,20) on a 64x48 image whose R/G/B planes differ. */
    int w = 64, h = 48;
    uint8_t *img = calloc((size_t)w * h * 3, 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img + ((size_t)y * w + x) * 3;
            int white = x >= 10 && x < 30 && y >= 8 && y < 20;
            p[0] = white ? 255 : 51;
            p[1] = white ? 255 : 102;
            p[2] = white ? 255 : 0;
        }
    int pw = 96, ph = 64;
    float *dst = malloc(sizeof *dst * 3 * (size_t)pw * ph);
    uint8_t *scratch = malloc((size_t)pw * ph * 3); /* >= every output size used below */
    for (int i = 0; i < 3 * pw * ph; i++) dst[i] = 7.0f;
    int st = aug_render(img, w, h, NULL, w, h, 1, scratch, dst, pw, ph);
    EXPECT(st == 0, "render whole image, same size, flipped");
    float box[4] = {10, 8, 30, 20};
    aug_flip_boxes(box, 1, w);
    int inside_ok = 1, outside_ok = 1, pad_ok = 1;
    for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++) {
            size_t o = (size_t)y * pw + x;
            if (x >= w || y >= h) {
                pad_ok &= dst[o] == 0 && dst[o + (size_t)pw * ph] == 0 && dst[o + 2 * (size_t)pw * ph] == 0;
                continue;
            }
            int in = x >= box[0] && x < box[2] && y >= box[1] && y < box[3];
            if (in) inside_ok &= dst[o] == 1.0f && dst[o + 2 * (size_t)pw * ph] == 1.0f;
            else
                outside_ok &= dst[o] == 51 * (1.0f / 255.0f) && dst[o + (size_t)pw * ph] == 102 * (1.0f / 255.0f) &&
                              dst[o + 2 * (size_t)pw * ph] == 0;
        }
    EXPECT(inside_ok && outside_ok, "flipped pixels match the flipped box [%g,%g,%g,%g]; planes are R,G,B /255", (double)box[0],
           (double)box[1], (double)box[2], (double)box[3]);
    EXPECT(pad_ok, "padding right/bottom is zero");
    EXPECT(fabsf(dst[0] - 0.2f) <= 1e-7f, "51/255 normalises to 0.2 (%.9g)", (double)dst[0]);
    /* crop + 2x upscale: the white block maps to [2*(10-4), 2*(30-4)) x [2*(8-2), 2*(20-2)) interior */
    int patch[4] = {4, 2, 44, 32};
    st = aug_render(img, w, h, patch, 80, 60, 0, scratch, dst, pw, ph);
    float cb[4] = {10, 8, 30, 20};
    int nk = aug_crop_boxes(cb, NULL, 1, patch);
    float sc[4];
    aug_scale_factor(40, 30, 80, 60, sc);
    aug_resize_boxes(cb, nk, sc, 80, 60);
    EXPECT(st == 0 && nk == 1 && cb[0] == 12 && cb[1] == 12 && cb[2] == 52 && cb[3] == 36, "crop+resize box [%g %g %g %g]",
           (double)cb[0], (double)cb[1], (double)cb[2], (double)cb[3]);
    EXPECT(dst[(size_t)20 * pw + 30] == 1.0f && dst[(size_t)20 * pw + 8] == 51 * (1.0f / 255.0f) &&
               dst[(size_t)40 * pw + 30] == 51 * (1.0f / 255.0f),
           "pixels inside/outside the transformed box agree with it");
    free(img), free(dst), free(scratch);
}

static int centre_in(const float *b, const int p[4]) {
    double cx = (double)(b[0] + b[2]) / 2.0, cy = (double)(b[1] + b[3]) / 2.0;
    return cx > p[0] && cy > p[1] && cx < p[2] && cy < p[3];
}

static double iou_ref(const float *b, const int p[4]) {
    double ix = fmin(b[2], p[2]) - fmax(b[0], p[0]), iy = fmin(b[3], p[3]) - fmax(b[1], p[1]);
    double inter = ix > 0 && iy > 0 ? ix * iy : 0;
    double u = (double)((b[2] - b[0]) * (b[3] - b[1])) + (double)(p[2] - p[0]) * (p[3] - p[1]) - inter;
    return inter / u;
}

static void test_min_iou_crop(void) {
    int n_cropped = 0, n_trials = 3000, bad_geom = 0, bad_iou = 0, bad_centre = 0, bad_keep = 0, n_mode[7] = {0};
    static const double modes[7] = {1.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.0};
    for (int t = 0; t < n_trials; t++) {
        rng g;
        rng_seed(&g, 1000 + (uint64_t)t);
        int w = 50 + (int)rng_below(&g, 600), h = 50 + (int)rng_below(&g, 600);
        int n = 1 + (int)rng_below(&g, 5);
        float boxes[5 * 4], orig[5 * 4];
        int labels[5];
        for (int i = 0; i < n; i++) {
            float x1 = (float)(rng_uniform(&g) * (w - 10)), y1 = (float)(rng_uniform(&g) * (h - 10));
            float bw = 5 + (float)(rng_uniform(&g) * (double)(w - x1 - 5)),
                  bh = 5 + (float)(rng_uniform(&g) * (double)(h - y1 - 5));
            boxes[4 * i] = x1, boxes[4 * i + 1] = y1, boxes[4 * i + 2] = x1 + bw, boxes[4 * i + 3] = y1 + bh;
            labels[i] = i;
        }
        memcpy(orig, boxes, sizeof boxes);
        rng r;
        aug_rng(&r, 5, 0, t, AUG_STREAM_CROP);
        int p[4];
        double mode = -1;
        int c = aug_min_iou_crop(&r, w, h, boxes, n, 0.3, p, &mode);
        for (int k = 0; k < 7; k++) n_mode[k] += mode == modes[k];
        if (!c) {
            bad_geom += !(mode == 1.0 && p[0] == 0 && p[1] == 0 && p[2] == w && p[3] == h);
            continue;
        }
        n_cropped++;
        int pw = p[2] - p[0], ph = p[3] - p[1];
        /* sides from U(0.3 w, w) truncated to int (+-1 px), aspect of the drawn sizes in [0.5, 2] */
        bad_geom += !(p[0] >= 0 && p[1] >= 0 && p[2] <= w && p[3] <= h && pw >= (int)(0.3 * w) - 1 &&
                      ph >= (int)(0.3 * h) - 1 && (double)(ph - 1) / (pw + 1) <= 2.0 &&
                      (double)(ph + 1) / (pw - 1) >= 0.5);
        int any = 0;
        for (int i = 0; i < n; i++) {
            if (iou_ref(orig + 4 * i, p) < mode - 1e-12) bad_iou++;
            any |= centre_in(orig + 4 * i, p);
        }
        bad_centre += !any;
        int m = aug_crop_boxes(boxes, labels, n, p);
        int j = 0;
        for (int i = 0; i < n; i++) {
            if (!centre_in(orig + 4 * i, p)) continue;
            const float *o = orig + 4 * i, *k = boxes + 4 * j;
            float e0 = (float)(fmax(o[0], p[0]) - p[0]), e1 = (float)(fmax(o[1], p[1]) - p[1]);
            float e2 = (float)(fmin(o[2], p[2]) - p[0]), e3 = (float)(fmin(o[3], p[3]) - p[1]);
            if (j >= m || labels[j] != i || k[0] != e0 || k[1] != e1 || k[2] != e2 || k[3] != e3 || k[0] < 0 ||
                k[2] > pw || k[1] < 0 || k[3] > ph)
                bad_keep++;
            j++;
        }
        if (j != m) bad_keep++;
    }
    EXPECT(bad_geom == 0, "crop patches inside the image, sides >= 0.3, aspect in [0.5,2] (%d bad of %d crops)",
           bad_geom, n_cropped);
    EXPECT(bad_iou == 0, "every gt has IoU >= the drawn min_iou with the patch (%d violations)", bad_iou);
    EXPECT(bad_centre == 0, "every crop contains at least one gt centre strictly inside (%d violations)", bad_centre);
    EXPECT(bad_keep == 0, "kept boxes = exactly those with centre inside, clipped and shifted (%d bad)", bad_keep);
    /* Mode frequencies. A mode is reported only when it succeeded, so 0 (always succeeds when a centre
     * is inside some patch) and 1 (never redrawn) must be frequent; 0.9 rare. */
    EXPECT(n_mode[0] > n_trials / 7 - 3 * 20 && n_mode[6] > n_mode[5], "mode counts: none=%d 0.1=%d 0.3=%d 0.5=%d "
           "0.7=%d 0.9=%d 0=%d", n_mode[0], n_mode[1], n_mode[2], n_mode[3], n_mode[4], n_mode[5], n_mode[6]);

    /* No boxes: every crop mode accepts its first valid patch, so P(no crop) = 1/7 exactly. */
    int none = 0, N = 7000, lefts_ge1 = 0, lefts_n = 0;
    for (int t = 0; t < N; t++) {
        rng r;
        aug_rng(&r, 9, 1, t, AUG_STREAM_CROP);
        int p[4];
        double mode;
        int c = aug_min_iou_crop(&r, 400, 300, NULL, 0, 0.3, p, &mode);
        none += !c;
        if (c && 400 - (p[2] - p[0]) > 3) {
            lefts_n++;
            lefts_ge1 += p[0] >= 1; /* numpy uniform(w - new_w) draws in [1, w - new_w] */
        }
    }
    double sd = sqrt(N * (1.0 / 7) * (6.0 / 7));
    EXPECT(fabs(none - N / 7.0) < 5 * sd, "no-box images: no-crop frequency %d ~ %d +- 5 sigma", none, N / 7);
    EXPECT(lefts_n > 100 && lefts_ge1 == lefts_n, "left offset follows mmdet's uniform(w - new_w) (>= 1): %d of %d",
           lefts_ge1, lefts_n);

    /* Determinism: the same (seed, epoch, index) gives the same patch; others differ. */
    float bx[4] = {100, 100, 200, 180};
    int same = 1, diff = 0;
    for (int t = 0; t < 50; t++) {
        rng a, b, c;
        aug_rng(&a, 77, 3, t, AUG_STREAM_CROP);
        aug_rng(&b, 77, 3, t, AUG_STREAM_CROP);
        aug_rng(&c, 78, 3, t, AUG_STREAM_CROP);
        int pa[4], pb[4], pc[4];
        double ma, mb, mc;
        int ca = aug_min_iou_crop(&a, 400, 300, bx, 1, 0.3, pa, &ma);
        int cb = aug_min_iou_crop(&b, 400, 300, bx, 1, 0.3, pb, &mb);
        int cc = aug_min_iou_crop(&c, 400, 300, bx, 1, 0.3, pc, &mc);
        same &= ca == cb && memcmp(pa, pb, sizeof pa) == 0 && ma == mb;
        diff |= ca != cc || memcmp(pa, pc, sizeof pa) != 0;
    }
    EXPECT(same, "same seed, epoch and index -> same crop");
    EXPECT(diff, "another seed -> other crops");
}

static void test_geom(void) {
    aug_config c;
    aug_config_train_default(&c);
    EXPECT(c.n_sizes == 5 && c.sizes[0].w == 992 && c.sizes[0].h == 736 && c.sizes[2].w == 1088 &&
               c.sizes[4].h == 800 && c.min_iou_crop && c.flip_prob == 0.5,
           "default train config = spec's 5 sizes, crop, flip 0.5");
    int cnt[5] = {0}, flips = 0, N = 10000, bad = 0;
    for (int i = 0; i < N; i++) {
        rng r;
        aug_rng(&r, 1, 0, i, AUG_STREAM_GEOM);
        aug_geom g;
        aug_draw_geom(&c, &r, &g);
        if (g.size_idx < 0 || g.size_idx >= 5 || g.out_w != c.sizes[g.size_idx].w || g.out_h != c.sizes[g.size_idx].h)
            bad++;
        else cnt[g.size_idx]++;
        flips += g.flip;
    }
    double sdf = sqrt(N * 0.25), sds = sqrt(N * 0.2 * 0.8);
    int sizes_ok = 1;
    for (int k = 0; k < 5; k++) sizes_ok &= fabs(cnt[k] - N * 0.2) < 5 * sds;
    EXPECT(bad == 0 && sizes_ok, "sizes drawn uniformly from the list: %d %d %d %d %d", cnt[0], cnt[1], cnt[2], cnt[3],
           cnt[4]);
    EXPECT(fabs(flips - N * 0.5) < 5 * sdf, "flip frequency %d ~ %d (5 sigma)", flips, N / 2);
    aug_size small[1] = {{320, 320}};
    EXPECT(aug_config_train_sizes(&c, small, 1) == 0 && c.sizes[0].w == 320, "configurable sizes (320x320)");
    aug_config d;
    aug_config_train_default(&d);
    EXPECT(aug_config_train_scaled(&c, 1.0) == 0 && memcmp(c.sizes, d.sizes, sizeof(aug_size) * 5) == 0,
           "scaled by 1.0 == default sizes");
    /* 0.5: 992*0.5=496 -> 512 (15.5 rounds up), 736*0.5=368 -> 384 (11.5 up), 896*0.5=448 = 14*32,
     * 1088*0.5=544 = 17*32, 672*0.5=336 -> 352 (10.5 rounds away from zero), 800*0.5=400 -> 416 */
    int sc_ok = aug_config_train_scaled(&c, 0.5) == 0 && c.n_sizes == 5 && c.sizes[0].w == 512 &&
                c.sizes[0].h == 384 && c.sizes[1].w == 448 && c.sizes[2].w == 544 && c.sizes[3].h == 352 &&
                c.sizes[4].h == 416 && c.min_iou_crop && c.flip_prob == 0.5;
    EXPECT(sc_ok, "scaled by 0.5: sides rounded to multiples of 32 (%dx%d %dx%d %dx%d %dx%d %dx%d)", c.sizes[0].w,
           c.sizes[0].h, c.sizes[1].w, c.sizes[1].h, c.sizes[2].w, c.sizes[2].h, c.sizes[3].w, c.sizes[3].h,
           c.sizes[4].w, c.sizes[4].h);
    EXPECT(aug_config_train_scaled(&c, 0.0) == OTE_EINVAL, "factor 0 rejected");
    aug_size badsz[1] = {{0, 320}};
    EXPECT(aug_config_train_sizes(&c, badsz, 1) == OTE_EINVAL, "zero size rejected: %s", ote_errmsg());
    aug_config_test(&c, 992, 736);
    rng r;
    aug_rng(&r, 1, 0, 0, AUG_STREAM_GEOM);
    aug_geom g;
    aug_draw_geom(&c, &r, &g);
    EXPECT(!c.min_iou_crop && g.flip == 0 && g.out_w == 992 && g.out_h == 736, "test config: fixed size, no flip/crop");
}

int main(void) {
    test_resize();
    test_image_io();
    test_boxes();
    test_render();
    test_min_iou_crop();
    test_geom();
    return expect_finish();
}
