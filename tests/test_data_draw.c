/* test_data_draw.c - data/draw.h: a box drawn at a known place changes the pixels there (and only
 * around there), in its class colour; tags carry readable text; ground truth is drawn in its own
 * colour; clipping and bad input. Writes nothing unless OTE_DRAW_OUT names a folder (then the
 * drawn test images go there as PNG, to look at).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/draw.h"
#include "data/image.h"
#include "tests/expect.h"

enum { W = 320, H = 240 };

static uint8_t *grey_image(uint8_t v) {
    uint8_t *p = malloc((size_t)W * H * 3);
    memset(p, v, (size_t)W * H * 3);
    return p;
}

static const uint8_t *px(const uint8_t *img, int x, int y) { return img + ((size_t)y * W + x) * 3; }

static int same_px(const uint8_t *a, const uint8_t *b) { return a[0] == b[0] && a[1] == b[1] && a[2] == b[2]; }

/* Pixels differing from the background v inside [x0, x1) x [y0, y1). */
static int changed_in(const uint8_t *img, uint8_t v, int x0, int y0, int x1, int y1) {
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = px(img, x, y);
            n += p[0] != v || p[1] != v || p[2] != v;
        }
    return n;
}

static void maybe_save(const char *name, const uint8_t *img) {
    const char *dir = getenv("OTE_DRAW_OUT");
    if (!dir) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (image_write_rgb(path, img, W, H) < 0) fprintf(stderr, "%s\n", ote_errmsg());
}

int main(void) {
    const char *names[] = {"car", "person"};
    uint8_t c0[3], c1[3], g[3];
    draw_class_colour(0, c0);
    draw_class_colour(1, c1);
    draw_gt_colour(g);
    EXPECT(!same_px(c0, c1) && !same_px(c0, g) && !same_px(c1, g), "class 0, class 1 and ground truth colours differ");
    int distinct = 1;
    for (int a = 0; a < 40 && distinct; a++) {
        uint8_t ca[3];
        draw_class_colour(a, ca);
        distinct = !same_px(ca, g) && !(ca[1] > 150 && ca[0] < 100 && ca[2] < 100);
    }
    EXPECT(distinct, "no class colour among the first 40 is green like the ground truth");

    /* 1. one prediction at a known place on a uniform grey image */
    uint8_t *img = grey_image(128);
    draw_box b = {100.f, 80.f, 200.f, 160.f, 1, 0.87f};
    int n = draw_boxes(img, W, H, &b, 1, names, 2, DRAW_PREDICTION);
    EXPECT(n == 1, "one box drawn (returned %d)", n);
    int lw = draw_line_width(W, H);
    EXPECT(lw == 2, "line width 2 px at %dx%d (got %d)", W, H, lw);
    EXPECT(same_px(px(img, 100, 120), c1), "left edge pixel (100, 120) has class 1's colour");
    EXPECT(same_px(px(img, 199, 120), c1), "right edge pixel (199, 120) has class 1's colour");
    EXPECT(same_px(px(img, 150, 159), c1), "bottom edge pixel (150, 159) has class 1's colour");
    EXPECT(same_px(px(img, 99, 120), c1), "the line is 2 px wide, centred on the edge (99, 120)");
    const uint8_t *rim = px(img, 97, 120);
    EXPECT(rim[0] == 128 && px(img, 98, 120)[0] < 60 && px(img, 101, 120)[0] < 60,
           "a dark rim either side of the line (98: %d, 101: %d), background beyond it (97: %d)", px(img, 98, 120)[0],
           px(img, 101, 120)[0], rim[0]);
    EXPECT(changed_in(img, 128, 102, 82, 197, 157) == 0, "the inside of the box is untouched");
    /* the tag "person 0.87" sits above the top-left corner: filled with the class colour, with text */
    int tag = changed_in(img, 128, 98, 50, 200, 79);
    EXPECT(tag > 200, "the tag above the box changed %d pixels", tag);
    int text_px = 0;
    for (int y = 55; y < 79; y++)
        for (int x = 100; x < 190; x++) {
            const uint8_t *p = px(img, x, y);
            if (!same_px(p, c1) && p[0] != 128) text_px++;
        }
    EXPECT(text_px > 30, "the tag holds text in another colour (%d pixels)", text_px);
    EXPECT(changed_in(img, 128, 0, 0, W, 40) == 0 && changed_in(img, 128, 0, 170, W, H) == 0 &&
               changed_in(img, 128, 0, 0, 90, H) == 0 && changed_in(img, 128, 210, 0, W, H) == 0,
           "nothing drawn away from the box and its tag");
    maybe_save("draw_prediction.png", img);

    /* 2. ground truth: its own colour, tag below the box */
    memset(img, 128, (size_t)W * H * 3);
    draw_box gt = {100.f, 80.f, 200.f, 160.f, 0, -1.f};
    n = draw_boxes(img, W, H, &gt, 1, names, 2, DRAW_GROUND_TRUTH);
    EXPECT(n == 1 && same_px(px(img, 100, 120), g), "ground truth drawn in the ground-truth colour");
    EXPECT(changed_in(img, 128, 98, 162, 200, 190) > 200 && changed_in(img, 128, 98, 40, 210, 78) == 0,
           "ground-truth tag below the box, nothing above it");
    maybe_save("draw_ground_truth.png", img);

    /* 3. a box at the top edge: the tag goes inside; a box partly outside is clipped; bad boxes skipped */
    memset(img, 128, (size_t)W * H * 3);
    draw_box edge[4] = {{10.f, 0.f, 120.f, 60.f, 0, 0.5f},
                        {250.f, 200.f, 400.f, 300.f, 1, 0.9f},
                        {NAN, 0.f, 10.f, 10.f, 0, 0.9f},
                        {400.f, 300.f, 500.f, 400.f, 0, 0.9f}};
    n = draw_boxes(img, W, H, edge, 4, names, 2, DRAW_PREDICTION);
    EXPECT(n == 2, "two boxes drawn, the NaN one and the one outside the image skipped (%d)", n);
    EXPECT(changed_in(img, 128, 12, 2, 118, 30) > 200, "top-edge box: tag inside the box");
    EXPECT(same_px(px(img, 250, 220), c1) && same_px(px(img, W - 1, 220), c1), "clipped box: left edge and the image border drawn");
    maybe_save("draw_edges.png", img);

    /* 4. a label without a name on a white background */
    uint8_t *white = grey_image(255);
    draw_box unk = {40.f, 60.f, 140.f, 150.f, 7, 0.42f};
    EXPECT(draw_boxes(white, W, H, &unk, 1, names, 2, DRAW_PREDICTION) == 1, "label without a name is drawn (class 7)");
    maybe_save("draw_white.png", white);
    free(white);

    /* 5. ground truth and a prediction on the same place: lines first, then tags, so the
     * prediction's line never crosses the ground-truth tag below the box */
    memset(img, 128, (size_t)W * H * 3);
    draw_box g2 = {100.f, 80.f, 200.f, 160.f, 0, -1.f}, p2 = {110.f, 60.f, 204.f, 170.f, 0, 0.9f};
    n = draw_detections(img, W, H, &g2, 1, &p2, 1, names, 2);
    EXPECT(n == 2, "draw_detections: both drawn (%d)", n);
    /* the gt tag spans x 98.., y 162..; the prediction's left line (x 109..110) runs down to y 170
     * through it: drawn after the lines, the tag hides it */
    EXPECT(same_px(px(img, 110, 120), c0), "the prediction's left edge is drawn (110, 120)");
    int crossed = 0;
    for (int y = 163; y < 170; y++)
        for (int x = 99; x < 120; x++) crossed += same_px(px(img, x, y), c0);
    EXPECT(crossed == 0, "no prediction line across the ground-truth tag (%d pixels)", crossed);
    maybe_save("draw_both.png", img);

    /* 6. a legend strip below a 320x240 image: measured, then drawn into the extra rows only */
    const char *lt[4] = {"ground truth", "car", "person", "a rather long third class name"};
    uint8_t lc[4][3];
    draw_gt_colour(lc[0]);
    draw_class_colour(0, lc[1]);
    draw_class_colour(1, lc[2]);
    draw_class_colour(2, lc[3]);
    int one = draw_legend_height(W, H, lt, 1), lh = draw_legend_height(W, H, lt, 4);
    EXPECT(one > 10 && one < 30, "one legend row: %d px", one);
    EXPECT(lh > one, "four entries wrap onto a second row (%d px)", lh);
    int H2 = H + lh;
    uint8_t *tall = malloc((size_t)W * H2 * 3);
    memset(tall, 128, (size_t)W * H2 * 3);
    EXPECT(draw_legend(tall, W, H2, H, H, lt, (const uint8_t(*)[3])lc, 4) == 0, "legend drawn");
    int above = 0, strip_green = 0;
    for (int y = 0; y < H2; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *q = tall + ((size_t)y * W + x) * 3;
            if (y < H) above += q[0] != 128 || q[1] != 128 || q[2] != 128;
            else strip_green += same_px(q, g);
        }
    EXPECT(above == 0 && strip_green > 200, "legend only in the strip (%d above), with the green tag (%d px)", above,
           strip_green);
    if (getenv("OTE_DRAW_OUT")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/draw_legend.png", getenv("OTE_DRAW_OUT"));
        image_write_rgb(path, tall, W, H2);
    }
    free(tall);

    /* 7. bad input */
    EXPECT(draw_boxes(NULL, W, H, &b, 1, names, 2, DRAW_PREDICTION) == OTE_EINVAL, "NULL image: OTE_EINVAL");
    EXPECT(draw_boxes(img, 0, H, &b, 1, names, 2, DRAW_PREDICTION) == OTE_EINVAL, "zero width: OTE_EINVAL");
    EXPECT(draw_boxes(img, W, H, NULL, 0, names, 2, DRAW_PREDICTION) == 0, "no boxes: nothing drawn");
    free(img);
    return expect_finish();
}
