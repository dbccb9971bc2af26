/* test_data_eval.c - the mAP evaluators (data/eval*.c) against the reference fixtures in
 * $OTE_SHARED/fixtures/eval (pycocotools + mmdet eval_map numbers), hand-computed cases, the
 * numpy-exact helpers, the detector-callback driver, the results-file reader/writer and the
 * confidence-threshold search (a hand case, and random cases against the pre-move trainer code).
 *
 * Tolerances: fixture COCO stats and VOC mAPs/APs must be bit-exact (the README says the
 * pairwise sums reproduce them exactly); per-category COCO debug numbers within 1e-12;
 * hand-made COCO expectations within 1e-12 (pycocotools' precision tp/(tp+fp+2^-52) makes a
 * perfect curve 0.9999999999999998, not 1). A missing fixtures directory is a failure.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/eval.h"
#include "engine/ote.h"
#include "tests/expect.h"



/* ---- a tiny in-memory dataset builder for hand-made cases ---- */

typedef struct hand_box {
    int image, label;
    float x, y, w, h;
    int iscrowd;
} hand_box;

/* Builds a dataset of n_images images (ids 1..n) and n_cats categories (ids 1..n); boxes must
 * be listed grouped by image. */
static void hand_dataset(coco_dataset *d, int n_images, int n_cats, const hand_box *b, int n) {
    memset(d, 0, sizeof *d);
    d->n_images = n_images;
    d->images = calloc((size_t)n_images, sizeof *d->images);
    d->n_cats = n_cats;
    d->cats = calloc((size_t)n_cats, sizeof *d->cats);
    d->n_boxes = n;
    d->boxes = calloc((size_t)n + 1, sizeof *d->boxes);
    ASSERT(d->images && d->cats && d->boxes);
    for (int k = 0; k < n_cats; k++) d->cats[k].id = k + 1;
    for (int m = 0; m < n_images; m++) {
        d->images[m].id = m + 1;
        d->images[m].width = d->images[m].height = 400;
        d->images[m].first_box = 0;
    }
    for (int i = 0; i < n; i++) {
        ASSERT(i == 0 || b[i].image >= b[i - 1].image);
        coco_box *x = &d->boxes[i];
        x->x1 = b[i].x;
        x->y1 = b[i].y;
        x->x2 = b[i].x + b[i].w;
        x->y2 = b[i].y + b[i].h;
        x->label = b[i].label;
        x->iscrowd = b[i].iscrowd;
        x->area = (double)b[i].w * (double)b[i].h;
        x->ann_id = i + 1;
        coco_image *im = &d->images[b[i].image];
        if (im->n_boxes == 0) im->first_box = i;
        im->n_boxes++;
    }
}

static void dataset_free(coco_dataset *d) {
    for (int m = 0; m < d->n_images; m++) {
        free(d->images[m].file_name);
        free(d->images[m].path);
    }
    for (int k = 0; k < d->n_cats; k++) free(d->cats[k].name);
    free(d->images);
    free(d->cats);
    free(d->boxes);
    memset(d, 0, sizeof *d);
}

static eval_det det(int image, int label, float x, float y, float w, float h, float score) {
    return (eval_det){.image = image, .label = label, .x1 = x, .y1 = y, .x2 = x + w, .y2 = y + h,
                      .score = score};
}

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

/* ---- helpers ---- */

static void test_helpers(void) {
    /* numpy pairwise sum: {2^53, 1 x 8}: left to right stays 2^53 (each +1 ties to even);
     * numpy adds eight partial sums ((2^53+1)+(1+1)) + ((1+1)+(1+1)) = 2^53+6, then the 9th
     * element: 2^53+7 is a tie between 2^53+6 and 2^53+8, and rounds to the even 2^53+8. */
    double a[9] = {9007199254740992.0, 1, 1, 1, 1, 1, 1, 1, 1};
    EXPECT(eval_sum_f64(a, 9) == 9007199254740992.0 + 8, "pairwise f64 n=9 gives 2^53+8");
    EXPECT(eval_sum_f64(a, 7) == 9007199254740992.0, "pairwise f64 n=7 is left to right (2^53)");
    float f[9] = {16777216.f, 1, 1, 1, 1, 1, 1, 1, 1};
    EXPECT(eval_sum_f32(f, 9) == 16777216.f + 8, "pairwise f32 n=9 gives 2^24+8");
    EXPECT(eval_sum_f64(NULL, 0) == 0.0, "empty sum is 0");
    /* n = 8200 > 8192: numpy sums the first 8192 and the last 8 separately; with 1.0s it's exact */
    double *ones = malloc(8200 * sizeof *ones);
    ASSERT(ones);
    for (int i = 0; i < 8200; i++) ones[i] = 1.0;
    EXPECT(eval_sum_f64(ones, 8200) == 8200.0, "sum of 8200 ones is 8200");
    free(ones);

    double it[EVAL_COCO_NIOU], rt[EVAL_COCO_NREC];
    eval_coco_iou_thrs(it);
    eval_coco_rec_thrs(rt);
    EXPECT(it[0] == 0.5 && it[5] == 0.75 && it[8] == 0.8999999999999999 && it[9] == 0.95,
          "iouThrs linspace values (0.5, 0.75, 0.8999999999999999, 0.95)");
    EXPECT(rt[0] == 0.0 && rt[57] == 0.5700000000000001 && rt[100] == 1.0 && rt[50] == 0.5,
          "recThrs linspace values (0.57 -> 0.5700000000000001)");

    float sc[6] = {0.5f, 0.9f, 0.5f, 0.7f, 0.9f, 0.5f};
    int idx[6] = {0, 1, 2, 3, 4, 5}, tmp[6];
    eval_argsort_desc(sc, idx, 6, tmp);
    int want[6] = {1, 4, 3, 0, 2, 5};
    EXPECT(!memcmp(idx, want, sizeof want), "stable descending argsort keeps tie order (1 4 3 0 2 5)");

    eval_coco_result r;
    memset(&r, 0, sizeof r);
    r.max_dets[0] = 1;
    r.max_dets[1] = 10;
    r.max_dets[2] = 100;
    r.stats[0] = 0.38727722772277223;
    r.stats[9] = -1.0;
    char line[160];
    eval_coco_format_stat(&r, 0, line, sizeof line);
    EXPECT(!strcmp(line, " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.387"),
          "pycocotools summary line for stats[0]: '%s'", line);
    eval_coco_format_stat(&r, 9, line, sizeof line);
    EXPECT(!strcmp(line, " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000"),
          "pycocotools summary line for stats[9]: '%s'", line);
}

/* ---- hand-made cases ---- */

static void test_perfect(void) {
    /* two images, two classes, every gt detected exactly once with its own box */
    const hand_box b[] = {{0, 0, 10, 10, 20, 20, 0},  {0, 1, 100, 100, 50, 60, 0},
                          {1, 0, 30, 40, 120, 100, 0}, {1, 0, 200, 200, 40, 40, 0}};
    coco_dataset d;
    hand_dataset(&d, 2, 2, b, 4);
    eval_det dt[4];
    for (int i = 0; i < 4; i++)
        dt[i] = det(b[i].image, b[i].label, b[i].x, b[i].y, b[i].w, b[i].h, 0.9f - 0.1f * (float)i);
    eval_report r;
    int s = eval_run(&d, dt, 4, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == 0, "perfect: eval_run ok");
    if (s == 0) {
        EXPECT(r.voc.map == 1.0f && r.voc.cls[0].ap == 1.0f && r.voc.cls[1].ap == 1.0f,
              "perfect: VOC mAP 1.0 (got %.9g)", (double)r.voc.map);
        EXPECT(r.voc.cls[0].num_gts == 3 && r.voc.cls[1].num_gts == 1 && r.voc.cls[0].num_dets == 3,
              "perfect: VOC num_gts 3/1, num_dets 3");
        EXPECT(near(r.coco.stats[0], 1.0, 1e-12) && near(r.coco.stats[1], 1.0, 1e-12) &&
                  near(r.coco.stats[8], 1.0, 0),
              "perfect: COCO AP %.17g ~ 1, AR@100 %.17g == 1", r.coco.stats[0], r.coco.stats[8]);
        /* gts: 400 (small), 3000 (medium), 12000 (large), 1600 (medium) */
        EXPECT(near(r.coco.stats[3], 1.0, 1e-12) && near(r.coco.stats[4], 1.0, 1e-12) &&
                  near(r.coco.stats[5], 1.0, 1e-12),
              "perfect: COCO AP small/medium/large ~ 1");
        /* AR@1: image 1 has two class-0 gts, only one det counts -> class 0 recall 2/3, class 1: 1 */
        EXPECT(near(r.coco.stats[6], (2.0 / 3.0 + 1.0) / 2.0, 1e-12), "perfect: AR@1 = (2/3 + 1)/2 (got %.17g)",
              r.coco.stats[6]);
        eval_report_free(&r);
    }
    dataset_free(&d);
}

static void test_fp_above_tp(void) {
    /* One class, gts A and B (40x40, medium). Dets by score: FP (no overlap) .9, A .8, B .7.
     * VOC: tp 0,1,2  fp 1,1,1 -> rec 0, .5, 1 and prec 0, .5, 2/3 (float32).
     *   mpre made non-increasing from the right: 2/3 everywhere up to rec 1;
     *   AP = (.5 - 0) * 2/3 + (1 - .5) * 2/3 = 2/3, i.e. the float32 2/3.
     * COCO (IoU 1 for the TPs, so every threshold alike): pr = 0, 1/(2+eps) = .5, 2/(3+eps) = 2/3,
     *   made non-increasing -> 2/3 at all 101 recall points: AP = 2/3; AR = 1. */
    const hand_box b[] = {{0, 0, 10, 10, 40, 40, 0}, {0, 0, 100, 10, 40, 40, 0}};
    coco_dataset d;
    hand_dataset(&d, 1, 1, b, 2);
    eval_det dt[3] = {det(0, 0, 200, 200, 40, 40, 0.9f), det(0, 0, 10, 10, 40, 40, 0.8f),
                      det(0, 0, 100, 10, 40, 40, 0.7f)};
    eval_report r;
    int s = eval_run(&d, dt, 3, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == 0, "fp above tp: eval_run ok");
    if (s == 0) {
        EXPECT(r.voc.map == 2.0f / 3.0f, "fp above tp: VOC AP = float32(2/3) (got %.9g)", (double)r.voc.map);
        EXPECT(near(r.coco.stats[0], 2.0 / 3.0, 1e-12), "fp above tp: COCO AP = 2/3 (got %.17g)",
              r.coco.stats[0]);
        EXPECT(near(r.coco.stats[4], 2.0 / 3.0, 1e-12) && r.coco.stats[3] == -1 && r.coco.stats[5] == -1,
              "fp above tp: medium AP 2/3, small/large -1");
        EXPECT(r.coco.stats[8] == 1.0 && r.coco.stats[6] == 0.0,
              "fp above tp: AR@100 = 1, AR@1 = 0 (the top det is the FP)");
        eval_report_free(&r);
    }
    dataset_free(&d);
}

static void test_duplicates(void) {
    /* gts A, B. Dets: A .9, exact duplicate of A .8, B .7.
     * VOC: tp 1,0,1 fp 0,1,0 -> rec .5,.5,1, prec 1,.5,2/3 -> mpre 1 up to rec .5, then 2/3:
     *   AP = .5*1 + .5*(float32 2/3), summed in double, stored float32.
     * COCO: pr = 1/(1+2^-52) = 1-2^-52, .5, 2/3 -> non-increasing 1-2^-52, 2/3, 2/3; the 51
     *   recall points 0..0.50 get 1-2^-52, the 50 above get 2/3: AP = (51 + 50*2/3)/101. */
    const hand_box b[] = {{0, 0, 10, 10, 40, 40, 0}, {0, 0, 100, 10, 40, 40, 0}};
    coco_dataset d;
    hand_dataset(&d, 1, 1, b, 2);
    eval_det dt[3] = {det(0, 0, 10, 10, 40, 40, 0.9f), det(0, 0, 10, 10, 40, 40, 0.8f),
                      det(0, 0, 100, 10, 40, 40, 0.7f)};
    eval_report r;
    int s = eval_run(&d, dt, 3, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == 0, "duplicates: eval_run ok");
    if (s == 0) {
        float want = (float)(0.5 * 1.0 + 0.5 * (double)(2.0f / 3.0f));
        EXPECT(r.voc.map == want, "duplicates: VOC AP %.9g == %.9g", (double)r.voc.map, (double)want);
        double cw = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
        EXPECT(near(r.coco.stats[0], cw, 1e-12), "duplicates: COCO AP %.17g ~ %.17g", r.coco.stats[0], cw);
        EXPECT(r.coco.stats[8] == 1.0, "duplicates: AR@100 = 1");
        eval_report_free(&r);
    }
    dataset_free(&d);
}

static void test_crowd(void) {
    /* class 0: gt A (40x40) and a crowd region C (100x100 at 200,200); class 1: only a crowd gt.
     * Dets (class 0): 80x80 inside C at .95, .85, .8 (IoU 6400/10000 = .64, crowd IoU 1); A at .9.
     * Class 1: one det on its crowd gt.
     * VOC, crowd ignored: the C dets are skipped -> tp 0,1,1,1 fp 0,0,0,0 -> AP 1.
     * VOC, crowd absent: they are FPs -> tp 0,1,1,1 fp 1,1,2,3 -> rec 0,1,1,1, prec 0,.5,1/3,1/4
     *   -> AP = 1 * .5 = .5. Class 1 has no non-crowd gt: num_gts 0, left out of the mean.
     * COCO: dets in C are matched to the crowd gt and ignored -> only the TP: AP ~ 1, AR 1;
     *   class 1 has no non-ignored gt: -1, left out. */
    const hand_box b[] = {{0, 0, 10, 10, 40, 40, 0}, {0, 0, 200, 200, 100, 100, 1}, {0, 1, 10, 300, 50, 50, 1}};
    coco_dataset d;
    hand_dataset(&d, 1, 2, b, 3);
    eval_det dt[5] = {det(0, 0, 210, 210, 80, 80, 0.95f), det(0, 0, 10, 10, 40, 40, 0.9f),
                      det(0, 0, 200, 200, 80, 80, 0.85f), det(0, 0, 220, 220, 80, 80, 0.8f),
                      det(0, 1, 10, 300, 50, 50, 0.6f)};
    eval_report r;
    int s = eval_run(&d, dt, 5, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == 0, "crowd: eval_run ok");
    if (s == 0) {
        EXPECT(r.voc.cls[0].ap == 1.0f && r.voc.map == 1.0f, "crowd ignored: VOC AP 1 (got %.9g)",
              (double)r.voc.cls[0].ap);
        EXPECT(r.voc.cls[0].num_gts == 1 && r.voc.cls[1].num_gts == 0 && r.voc.n_classes_with_gts == 1,
              "crowd: crowd gts not counted (num_gts 1 and 0)");
        EXPECT(near(r.coco.stats[0], 1.0, 1e-12) && r.coco.stats[8] == 1.0,
              "crowd: COCO AP ~ 1 (%.17g), AR 1", r.coco.stats[0]);
        EXPECT(r.coco.cat[1].ap == -1 && r.coco.cat[1].ar == -1, "crowd: crowd-only class is -1 in COCO");
        eval_report_free(&r);
    }
    eval_voc_result v;
    s = eval_voc(&d, dt, 5, 0.5, EVAL_CROWD_ABSENT, &v);
    EXPECT(s == 0 && v.cls[0].ap == 0.5f && v.map == 0.5f && v.cls[1].num_gts == 0,
          "crowd absent: VOC AP .5, crowd-only class excluded (got %.9g)", s == 0 ? (double)v.map : -1.0);
    if (s == 0) eval_voc_result_free(&v);
    dataset_free(&d);
}

static void test_classes_without_gts(void) {
    /* class 0: one gt, detected (AP 1); class 1: dets, no gt (excluded); class 2: a gt, no det
     * (AP 0, included). VOC mAP = (1 + 0) / 2 = .5. COCO: class 0 precision 1-2^-52, class 2
     * precision 0, class 1 -1 -> AP ~ .5; recall 1 and 0 -> AR = .5. */
    const hand_box b[] = {{0, 0, 10, 10, 40, 40, 0}, {1, 2, 50, 50, 40, 40, 0}};
    coco_dataset d;
    hand_dataset(&d, 2, 3, b, 2);
    eval_det dt[3] = {det(0, 0, 10, 10, 40, 40, 0.9f), det(0, 1, 100, 100, 40, 40, 0.95f),
                      det(1, 1, 50, 50, 40, 40, 0.8f)};
    eval_report r;
    int s = eval_run(&d, dt, 3, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == 0, "no-gt class: eval_run ok");
    if (s == 0) {
        EXPECT(r.voc.map == 0.5f && r.voc.n_classes_with_gts == 2 && r.voc.cls[1].num_gts == 0 &&
                  r.voc.cls[1].num_dets == 2 && r.voc.cls[1].ap == 0.0f && r.voc.cls[2].ap == 0.0f,
              "no-gt class: VOC mAP .5 over 2 classes (got %.9g)", (double)r.voc.map);
        EXPECT(near(r.coco.stats[0], 0.5, 1e-12) && r.coco.stats[8] == 0.5,
              "no-gt class: COCO AP ~ .5 (%.17g), AR .5", r.coco.stats[0]);
        EXPECT(r.coco.cat[1].ap == -1 && r.coco.cat[2].ap == 0.0, "no-gt class: COCO per-class -1 and 0");
        eval_report_free(&r);
    }
    /* no class has gts at all -> VOC mAP 0, COCO -1 */
    coco_dataset e;
    hand_dataset(&e, 1, 1, NULL, 0);
    eval_det one = det(0, 0, 1, 1, 5, 5, 0.5f);
    s = eval_run(&e, &one, 1, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == 0 && r.voc.map == 0.0f && r.coco.stats[0] == -1 && r.coco.stats[8] == -1,
          "no gts anywhere: VOC 0, COCO -1");
    if (s == 0) eval_report_free(&r);
    dataset_free(&e);
    dataset_free(&d);
}

static void test_bad_input(void) {
    const hand_box b[] = {{0, 0, 10, 10, 40, 40, 0}};
    coco_dataset d;
    hand_dataset(&d, 1, 1, b, 1);
    eval_det dt = det(0, 3, 10, 10, 40, 40, 0.9f);
    eval_report r;
    int s = eval_run(&d, &dt, 1, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "detection 0") && strstr(ote_errmsg(), "label 3"),
          "label out of range -> EINVAL naming it: %s", ote_errmsg());
    dt = det(0, 0, 10, 10, 40, 40, NAN);
    s = eval_run(&d, &dt, 1, EVAL_CROWD_IGNORED, NULL, &r);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "non-finite"), "NaN score -> EINVAL: %s", ote_errmsg());
    eval_coco_result c;
    s = eval_coco(&d, NULL, 0, (const int[3]){10, 10, 100}, &c);
    EXPECT(s == OTE_EINVAL, "non-increasing max_dets -> EINVAL: %s", ote_errmsg());
    dataset_free(&d);
}

/* ---- confidence threshold (eval_threshold.c) ---- */

static void test_threshold_hand(void) {
    /* image 0, class 0: gts A (0,0)-(10,10), B (20,0)-(30,10), E (40,0)-(50,10);
     * image 1, class 1: gt C (0,0)-(10,10) and a crowd gt D (50,50)-(60,60). 4 non-crowd gts.
     * Dets by score: .9 on A (TP); .8 on A again (FP: A is taken); .7 on the crowd D (FP: crowd
     * gts are never matched); .6 (22,0)-(32,10) vs B: 80 / 120 = 0.667 (TP); .5 class 0 in image 1
     * (FP: no such gt); .4 (40,0)-(50,5) vs E: 50 / 100 = 0.5 exactly (TP: >= 0.5); .3 (5,0)-(15,10)
     * vs C: 50 / 150 = 0.333 (FP). F = 2tp / (2tp + fp + fn) with fn = 4 - tp:
     *   t in (.8,.9]: 1 TP 0 FP -> 2/5 = .4     (.7,.8]: 1,1 -> 2/6     (.6,.7]: 1,2 -> 2/7
     *   (.5,.6]: 2,2 -> 4/8 = .5   (.4,.5]: 2,3 -> 4/9   (.3,.4]: 3,3 -> 6/10 = .6
     *   (0,.3]: 3,4 -> 6/11        above .9: 0 TP -> 0.
     * Best .6, first reached at the grid point 0.325 (13 x 0.025; .3f is above 0.3, .4f above 0.4). */
    const hand_box b[] = {{0, 0, 0, 0, 10, 10, 0}, {0, 0, 20, 0, 10, 10, 0}, {0, 0, 40, 0, 10, 10, 0},
                          {1, 1, 0, 0, 10, 10, 0}, {1, 1, 50, 50, 10, 10, 1}};
    coco_dataset d;
    hand_dataset(&d, 2, 2, b, 5);
    eval_det dt[7] = {det(0, 0, 0, 0, 10, 10, 0.9f),  det(0, 0, 0, 0, 10, 10, 0.8f), det(1, 1, 50, 50, 10, 10, 0.7f),
                      det(0, 0, 22, 0, 10, 10, 0.6f), det(1, 0, 0, 0, 10, 10, 0.5f), det(0, 0, 40, 0, 10, 5, 0.4f),
                      det(1, 1, 5, 0, 10, 10, 0.3f)};
    double thr = 0, f1 = 0;
    int s = eval_threshold(&d, dt, 7, 0.35, &thr, &f1);
    EXPECT(s == 0 && near(thr, 0.325, 1e-12) && near(f1, 0.6, 1e-12),
           "threshold: hand case -> %.17g (want 0.325), F %.17g (want 0.6, tol 1e-12)", thr, f1);
    /* the list order must not matter (stable sort by score) */
    eval_det rev[7];
    for (int i = 0; i < 7; i++) rev[i] = dt[6 - i];
    s = eval_threshold(&d, rev, 7, 0.35, &thr, NULL);
    EXPECT(s == 0 && near(thr, 0.325, 1e-12), "threshold: reversed list -> %.17g (want 0.325)", thr);
    /* without the .4 detection on E the best is .5 at (.5,.6] -> 0.525 */
    eval_det no_e[6] = {dt[0], dt[1], dt[2], dt[3], dt[4], dt[6]};
    s = eval_threshold(&d, no_e, 6, 0.35, &thr, &f1);
    EXPECT(s == 0 && near(thr, 0.525, 1e-12) && near(f1, 0.5, 1e-12),
           "threshold: without the IoU-0.5 TP -> %.17g (want 0.525), F %.17g (want 0.5, tol 1e-12)", thr, f1);
    s = eval_threshold(&d, dt, 0, 0.35, &thr, &f1);
    EXPECT(s == 0 && thr == 0.35 && f1 == -1, "threshold: no detections -> the fallback 0.35 (%g), F -1 (%g)", thr,
           f1);
    eval_det bad = det(0, 2, 0, 0, 10, 10, 0.5f);
    s = eval_threshold(&d, &bad, 1, 0.35, &thr, NULL);
    EXPECT(s == OTE_EINVAL && thr == 0.35, "threshold: label out of range -> OTE_EINVAL (%d: %s)", s, ote_errmsg());
    dataset_free(&d);
    coco_dataset empty;
    hand_dataset(&empty, 1, 1, NULL, 0);
    eval_det one = det(0, 0, 0, 0, 10, 10, 0.5f);
    s = eval_threshold(&empty, &one, 1, 0.2, &thr, NULL);
    EXPECT(s == 0 && thr == 0.2, "threshold: no gt boxes -> the fallback 0.2 (%g)", thr);
    dataset_free(&empty);
}

/* The search as train/trainer.c had it before it moved to data/ (its own double-precision IoU,
 * box areas from float widths), kept as the reference the moved code must reproduce. */
static double ref_threshold(const coco_dataset *gt, const eval_det *dets, int n, double fallback) {
    if (gt->n_boxes == 0 || n == 0) return fallback;
    int *order = malloc((size_t)n * sizeof *order), *tmp = malloc((size_t)n * sizeof *tmp);
    float *score = malloc((size_t)n * sizeof *score);
    char *used = calloc((size_t)gt->n_boxes, 1);
    ASSERT(order && tmp && score && used);
    for (int i = 0; i < n; i++) order[i] = i, score[i] = dets[i].score;
    eval_argsort_desc(score, order, n, tmp);
    int n_gt = 0;
    for (int b = 0; b < gt->n_boxes; b++) n_gt += !gt->boxes[b].iscrowd;
    double best_f = -1, best_t = fallback;
    for (int ti = 1; ti < 40; ti++) {
        double thr = 0.025 * ti;
        memset(used, 0, (size_t)gt->n_boxes);
        int tp = 0, fp = 0;
        for (int r = 0; r < n; r++) {
            const eval_det *e = &dets[order[r]];
            if ((double)e->score < thr) break;
            const coco_image *im = &gt->images[e->image];
            int best = -1;
            double best_iou = 0.5;
            for (int k = im->first_box; k < im->first_box + im->n_boxes; k++) {
                const coco_box *g = &gt->boxes[k];
                if (g->iscrowd || g->label != e->label || used[k]) continue;
                double iw = fmin(e->x2, g->x2) - fmax(e->x1, g->x1), ih = fmin(e->y2, g->y2) - fmax(e->y1, g->y1);
                if (iw <= 0 || ih <= 0) continue;
                double inter = iw * ih;
                double uni = (double)(e->x2 - e->x1) * (double)(e->y2 - e->y1) +
                             (double)(g->x2 - g->x1) * (double)(g->y2 - g->y1) - inter;
                double iou = inter / (uni > 1e-6 ? uni : 1e-6);
                if (iou >= best_iou) best_iou = iou, best = k;
            }
            if (best >= 0) used[best] = 1, tp++;
            else fp++;
        }
        double f = (2.0 * tp) / (2.0 * tp + fp + (n_gt - tp) > 0 ? 2.0 * tp + fp + (n_gt - tp) : 1);
        if (f > best_f + 1e-12) best_f = f, best_t = thr;
    }
    free(order), free(tmp), free(score), free(used);
    return best_t;
}

static uint64_t thr_rng = 12345;
static int thr_rand(int n) {
    thr_rng = thr_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((thr_rng >> 33) % (uint64_t)n);
}

/* Random cases on a half-pixel grid (annotation-like coordinates: float widths are exact, so
 * both IoUs agree): the moved search must give the reference's threshold exactly. */
static void test_threshold_vs_reference(void) {
    int same = 0, cases = 40, n_seen = 0;
    double seen[40];
    for (int c = 0; c < cases; c++) {
        hand_box b[48];
        int nb = 0;
        for (int m = 0; m < 6; m++)
            for (int k = thr_rand(8); k > 0; k--)
                b[nb++] = (hand_box){m, thr_rand(3), 0.5f * thr_rand(600), 0.5f * thr_rand(600),
                                     4 + 0.5f * thr_rand(120), 4 + 0.5f * thr_rand(120), thr_rand(10) == 0};
        coco_dataset d;
        hand_dataset(&d, 6, 3, b, nb);
        eval_det dt[4 * 48 + 20];
        int nd = 0;
        for (int i = 0; i < nb; i++) /* up to 3 jittered copies of each gt, sometimes mislabelled */
            for (int k = thr_rand(4); k > 0; k--)
                dt[nd++] = det(b[i].image, thr_rand(4) ? b[i].label : thr_rand(3), b[i].x + 0.5f * (thr_rand(21) - 10),
                               b[i].y + 0.5f * (thr_rand(21) - 10), b[i].w + 0.5f * (thr_rand(7) - 3),
                               b[i].h + 0.5f * (thr_rand(7) - 3), (float)(thr_rand(1000) + 1) / 1001.0f);
        for (int k = thr_rand(20); k > 0; k--) /* and unrelated boxes */
            dt[nd++] = det(thr_rand(6), thr_rand(3), 0.5f * thr_rand(600), 0.5f * thr_rand(600),
                           4 + 0.5f * thr_rand(120), 4 + 0.5f * thr_rand(120), (float)(thr_rand(1000) + 1) / 1001.0f);
        double thr = -1, want = ref_threshold(&d, dt, nd, 0.35);
        int s = eval_threshold(&d, dt, nd, 0.35, &thr, NULL);
        int k = 0;
        while (k < n_seen && seen[k] != want) k++;
        if (k == n_seen) seen[n_seen++] = want;
        if (s == 0 && thr == want) same++;
        else printf("  case %d (%d gts, %d dets): threshold %.17g, reference %.17g\n", c, nb, nd, thr, want);
        dataset_free(&d);
    }
    EXPECT(same == cases, "threshold: %d of %d random cases equal to the pre-move implementation", same, cases);
    EXPECT(n_seen >= 5, "threshold: the random cases reach %d different thresholds (at least 5)", n_seen);
}

/* ---- precision-recall curves (eval_voc_pr) against a naive reference ---- */

/* bbox_overlaps in float32, as mmdet's eval_map (and its definition of a match) uses it. */
static float ref_iou(const eval_det *d, const coco_box *g) {
    float ad = (d->x2 - d->x1) * (d->y2 - d->y1), ag = (g->x2 - g->x1) * (g->y2 - g->y1);
    float w = fminf(d->x2, g->x2) - fmaxf(d->x1, g->x1), h = fminf(d->y2, g->y2) - fmaxf(d->y1, g->y1);
    float ov = (w > 0 ? w : 0) * (h > 0 ? h : 0), u = ad + ag - ov;
    return ov / (u > 1e-6f ? u : 1e-6f);
}

/* Class c's curve from the VOC definition, computed directly: the class's dets ordered by image
 * then list order, stably sorted by descending score; per image, in that order, a det takes its
 * highest-IoU gt (first on ties, real gts before crowd ones): IoU < thr -> FP, crowd gt -> ignored,
 * gt already taken -> FP, else TP. Then cumulative counts along the global order. Writes n points
 * (rec, prec, score) and returns the 'area' AP under the monotone envelope, in double. */
static double ref_curve(const coco_dataset *gt, const eval_det *dt, int nd, int c, int crowd_ignored, double *rec,
                        double *prec, float *score, int *n_out) {
    int ord[512], n = 0, num_gts = 0;
    for (int m = 0; m < gt->n_images; m++)
        for (int i = 0; i < nd; i++)
            if (dt[i].label == c && dt[i].image == m) ord[n++] = i;
    for (int a = 1; a < n; a++) /* insertion sort: stable */
        for (int b = a; b > 0 && dt[ord[b]].score > dt[ord[b - 1]].score; b--) {
            int t = ord[b];
            ord[b] = ord[b - 1];
            ord[b - 1] = t;
        }
    signed char kind[512]; /* 1 TP, 0 FP, -1 ignored */
    unsigned char taken[512];
    memset(taken, 0, sizeof taken);
    for (int b = 0; b < gt->n_boxes; b++) num_gts += gt->boxes[b].label == c && !gt->boxes[b].iscrowd;
    for (int q = 0; q < n; q++) { /* the global order restricted to one image is that image's order */
        const eval_det *d = &dt[ord[q]];
        const coco_image *im = &gt->images[d->image];
        int best = -1;
        float bv = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int b = im->first_box; b < im->first_box + im->n_boxes; b++) {
                const coco_box *g = &gt->boxes[b];
                if (g->label != c || g->iscrowd != pass || (pass && !crowd_ignored)) continue;
                float v = ref_iou(d, g);
                if (best < 0 || v > bv) best = b, bv = v;
            }
        if (best < 0 || bv < 0.5f) kind[q] = 0;
        else if (gt->boxes[best].iscrowd) kind[q] = -1;
        else if (taken[best]) kind[q] = 0;
        else kind[q] = 1, taken[best] = 1;
    }
    double tp = 0, fp = 0;
    for (int q = 0; q < n; q++) {
        tp += kind[q] == 1;
        fp += kind[q] == 0;
        rec[q] = num_gts ? tp / num_gts : 0;
        prec[q] = tp + fp > 0 ? tp / (tp + fp) : 0;
        score[q] = dt[ord[q]].score;
    }
    *n_out = n;
    double ap = 0; /* sum over recall steps of the best precision at or after the step */
    for (int q = 0; q < n; q++) {
        double r0 = q ? rec[q - 1] : 0, env = 0;
        for (int k = q; k < n; k++) env = fmax(env, prec[k]);
        ap += (rec[q] - r0) * env;
    }
    return ap;
}

static void test_pr_curves(void) {
    int cases = 30, good_pts = 0, good_ap = 0, good_same = 0, total_pts = 0, classes = 0;
    for (int cs = 0; cs < cases; cs++) {
        hand_box b[48];
        int nb = 0;
        for (int m = 0; m < 6; m++)
            for (int k = thr_rand(8); k > 0; k--)
                b[nb++] = (hand_box){m, thr_rand(3), 0.5f * thr_rand(600), 0.5f * thr_rand(600),
                                     4 + 0.5f * thr_rand(120), 4 + 0.5f * thr_rand(120), thr_rand(8) == 0};
        coco_dataset d;
        hand_dataset(&d, 6, 3, b, nb);
        eval_det dt[4 * 48 + 20];
        int nd = 0;
        for (int i = 0; i < nb; i++)
            for (int k = thr_rand(4); k > 0; k--)
                dt[nd++] = det(b[i].image, thr_rand(4) ? b[i].label : thr_rand(3), b[i].x + 0.5f * (thr_rand(21) - 10),
                               b[i].y + 0.5f * (thr_rand(21) - 10), b[i].w + 0.5f * (thr_rand(7) - 3),
                               b[i].h + 0.5f * (thr_rand(7) - 3), (float)(thr_rand(1000) + 1) / 1001.0f);
        for (int k = thr_rand(20); k > 0; k--)
            dt[nd++] = det(thr_rand(6), thr_rand(3), 0.5f * thr_rand(600), 0.5f * thr_rand(600),
                           4 + 0.5f * thr_rand(120), 4 + 0.5f * thr_rand(120), (float)(thr_rand(1000) + 1) / 1001.0f);
        eval_crowd_mode mode = cs % 2 ? EVAL_CROWD_IGNORED : EVAL_CROWD_ABSENT;
        eval_voc_result r, plain;
        eval_pr_curves pc;
        REQUIRE_OK(eval_voc_pr(&d, dt, nd, 0.5, mode, &r, &pc));
        REQUIRE_OK(eval_voc(&d, dt, nd, 0.5, mode, &plain));
        int same = r.map == plain.map && pc.n_classes == 3;
        for (int c = 0; c < 3; c++) {
            double rec[512], prec[512];
            float sc[512];
            int n = 0;
            double ap = ref_curve(&d, dt, nd, c, mode == EVAL_CROWD_IGNORED, rec, prec, sc, &n);
            same = same && r.cls[c].ap == plain.cls[c].ap;
            const eval_pr_curve *k = &pc.cls[c];
            int ok = k->n == n;
            for (int q = 0; ok && q < n; q++)
                ok = near(k->recall[q], rec[q], 1e-12) && near(k->precision[q], prec[q], 1e-6) && k->score[q] == sc[q];
            good_pts += ok;
            total_pts += n;
            classes++;
            if (!ok) printf("  case %d class %d: curve differs (%d points, reference %d)\n", cs, c, k->n, n);
            if (r.cls[c].num_gts == 0 || near(r.cls[c].ap, ap, 1e-6)) good_ap++;
            else printf("  case %d class %d: AP %.9g, reference %.9g\n", cs, c, (double)r.cls[c].ap, ap);
        }
        good_same += same;
        eval_pr_curves_free(&pc);
        eval_voc_result_free(&r);
        eval_voc_result_free(&plain);
        dataset_free(&d);
    }
    EXPECT(good_pts == classes, "pr curves: %d of %d random classes (%d points) equal the naive reference", good_pts,
           classes, total_pts);
    EXPECT(good_ap == classes, "pr curves: %d of %d classes: the area under the reference curve's envelope is the AP",
           good_ap, classes);
    EXPECT(good_same == cases, "pr curves: eval_voc_pr's result equals eval_voc's in %d of %d cases", good_same, cases);
    /* a hand case: gts A, B in one image; dets 0.9 on A (TP), 0.8 on A again (FP), 0.7 on B (TP) */
    hand_box hb[2] = {{0, 0, 10, 10, 50, 50, 0}, {0, 0, 200, 200, 40, 40, 0}};
    coco_dataset d;
    hand_dataset(&d, 1, 1, hb, 2);
    eval_det hd[3] = {det(0, 0, 10, 10, 50, 50, 0.9f), det(0, 0, 12, 11, 50, 50, 0.8f), det(0, 0, 201, 200, 40, 40, 0.7f)};
    eval_voc_result r;
    eval_pr_curves pc;
    REQUIRE_OK(eval_voc_pr(&d, hd, 3, 0.5, EVAL_CROWD_ABSENT, &r, &pc));
    const eval_pr_curve *k = &pc.cls[0];
    EXPECT(k->n == 3 && k->recall[0] == 0.5 && k->recall[1] == 0.5 && k->recall[2] == 1.0 && k->precision[0] == 1.f &&
               near(k->precision[1], 0.5, 1e-7) && near(k->precision[2], 2.0 / 3, 1e-7) && k->score[2] == 0.7f,
           "pr curve, hand case: recall 0.5 0.5 1, precision 1 0.5 0.667 (got n %d)", k->n);
    EXPECT(near(r.cls[0].ap, 0.5 + 0.5 * 2.0 / 3, 1e-6), "pr curve, hand case: AP %.6f = 0.5 + 0.5 x 2/3",
           (double)r.cls[0].ap);
    eval_pr_curves_free(&pc);
    eval_voc_result_free(&r);
    dataset_free(&d);
}

/* ---- fixtures ---- */

typedef struct fixture {
    coco_dataset gt;
    eval_dets dets;
    cJSON *expected;
    cJSON *root;
} fixture;

static double jnum(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    ASSERT(cJSON_IsNumber(x));
    return x->valuedouble;
}

static int load_fixture(fixture *f, const char *path) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    ASSERT(text && fread(text, 1, (size_t)n, fp) == (size_t)n);
    text[n] = 0;
    fclose(fp);
    f->root = cJSON_Parse(text);
    free(text);
    if (!f->root) return -1;
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(f->root, "images");
    const cJSON *cats = cJSON_GetObjectItemCaseSensitive(f->root, "categories");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(f->root, "annotations");
    const cJSON *dets = cJSON_GetObjectItemCaseSensitive(f->root, "detections");
    f->expected = cJSON_GetObjectItemCaseSensitive(f->root, "expected");
    if (!imgs || !cats || !anns || !dets || !f->expected) return -1;
    coco_dataset *d = &f->gt;
    d->n_images = cJSON_GetArraySize(imgs);
    d->n_cats = cJSON_GetArraySize(cats);
    int na = cJSON_GetArraySize(anns);
    d->images = calloc((size_t)d->n_images + 1, sizeof *d->images);
    d->cats = calloc((size_t)d->n_cats + 1, sizeof *d->cats);
    d->boxes = calloc((size_t)na + 1, sizeof *d->boxes);
    ASSERT(d->images && d->cats && d->boxes);
    for (int m = 0; m < d->n_images; m++) {
        const cJSON *o = cJSON_GetArrayItem(imgs, m);
        d->images[m].id = (long)jnum(o, "id");
        d->images[m].width = (int)jnum(o, "width");
        d->images[m].height = (int)jnum(o, "height");
    }
    /* categories are sorted by id in the fixtures, as coco.h's label order requires */
    for (int k = 0; k < d->n_cats; k++) {
        const cJSON *o = cJSON_GetArrayItem(cats, k);
        d->cats[k].id = (long)jnum(o, "id");
        d->cats[k].name = strdup(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring);
        ASSERT(k == 0 || d->cats[k].id > d->cats[k - 1].id);
    }
    /* boxes grouped by image (dataset order), annotation order inside an image */
    for (int m = 0; m < d->n_images; m++) {
        d->images[m].first_box = d->n_boxes;
        const cJSON *o;
        cJSON_ArrayForEach(o, anns) {
            if ((long)jnum(o, "image_id") != d->images[m].id) continue;
            const cJSON *bb = cJSON_GetObjectItemCaseSensitive(o, "bbox");
            double x = cJSON_GetArrayItem(bb, 0)->valuedouble, y = cJSON_GetArrayItem(bb, 1)->valuedouble;
            double w = cJSON_GetArrayItem(bb, 2)->valuedouble, h = cJSON_GetArrayItem(bb, 3)->valuedouble;
            coco_box *b = &d->boxes[d->n_boxes++];
            b->x1 = (float)x;
            b->y1 = (float)y;
            b->x2 = (float)(x + w);
            b->y2 = (float)(y + h);
            b->area = jnum(o, "area");
            b->iscrowd = (int)jnum(o, "iscrowd");
            b->ann_id = (long)jnum(o, "id");
            b->label = -1;
            for (int k = 0; k < d->n_cats; k++)
                if (d->cats[k].id == (long)jnum(o, "category_id")) b->label = k;
            ASSERT(b->label >= 0);
            d->images[m].n_boxes++;
        }
    }
    ASSERT(d->n_boxes == na);
    eval_dets_init(&f->dets);
    const cJSON *o;
    cJSON_ArrayForEach(o, dets) {
        const cJSON *bb = cJSON_GetObjectItemCaseSensitive(o, "bbox");
        double x = cJSON_GetArrayItem(bb, 0)->valuedouble, y = cJSON_GetArrayItem(bb, 1)->valuedouble;
        double w = cJSON_GetArrayItem(bb, 2)->valuedouble, h = cJSON_GetArrayItem(bb, 3)->valuedouble;
        eval_det e = {.image = -1, .label = -1, .x1 = (float)x, .y1 = (float)y, .x2 = (float)(x + w),
                      .y2 = (float)(y + h), .score = (float)jnum(o, "score")};
        for (int m = 0; m < d->n_images; m++)
            if (d->images[m].id == (long)jnum(o, "image_id")) e.image = m;
        for (int k = 0; k < d->n_cats; k++)
            if (d->cats[k].id == (long)jnum(o, "category_id")) e.label = k;
        ASSERT(e.image >= 0 && e.label >= 0 && (double)e.score == jnum(o, "score"));
        ASSERT(eval_dets_push(&f->dets, e) == 0);
    }
    return 0;
}

static void fixture_free(fixture *f) {
    dataset_free(&f->gt);
    eval_dets_free(&f->dets);
    cJSON_Delete(f->root);
}

static void check_stats(const char *name, const char *key, const double *got, const cJSON *exp) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(exp, key);
    int ok = cJSON_GetArraySize(arr) == EVAL_COCO_NSTATS, exact = 0;
    double worst = 0;
    for (int i = 0; ok && i < EVAL_COCO_NSTATS; i++) {
        double e = cJSON_GetArrayItem(arr, i)->valuedouble;
        if (got[i] == e) exact++;
        if (fabs(got[i] - e) > worst) worst = fabs(got[i] - e);
    }
    EXPECT(ok && exact == EVAL_COCO_NSTATS, "%s: %s bit-exact (%d/12 exact, max |diff| %.3g)", name, key,
          exact, worst);
}

static void check_voc(const char *name, const char *mkey, const char *ckey, const eval_voc_result *v,
                      const coco_dataset *gt, const cJSON *exp) {
    double e = jnum(exp, mkey);
    EXPECT((double)v->map == e, "%s: %s %.17g == %.17g", name, mkey, (double)v->map, e);
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(exp, ckey);
    int ok = cJSON_GetArraySize(per) == gt->n_cats;
    for (int k = 0; ok && k < gt->n_cats; k++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(per, gt->cats[k].name);
        if (!c || (double)v->cls[k].ap != jnum(c, "ap") || v->cls[k].num_gts != (int)jnum(c, "num_gts") ||
            v->cls[k].num_dets != (int)jnum(c, "num_dets")) {
            ok = 0;
            printf("  class %s: ap %.17g num_gts %d num_dets %d vs expected %s\n", gt->cats[k].name,
                   (double)v->cls[k].ap, v->cls[k].num_gts, v->cls[k].num_dets,
                   c ? cJSON_PrintUnformatted(c) : "(missing)");
        }
    }
    EXPECT(ok, "%s: %s per class (ap exact as float32, num_gts, num_dets)", name, ckey);
}

typedef struct fake_detector {
    const eval_dets *all;
    int fail_at;
} fake_detector;

/* A stand-in detector: returns the fixture's detections of the asked image in list order. */
static int fake_predict(void *ctx, const coco_image *img, int index, eval_dets *out) {
    const fake_detector *f = ctx;
    (void)img;
    if (index == f->fail_at) return ote_err(OTE_EIO, "fake detector: cannot read the image");
    for (int i = 0; i < f->all->n; i++)
        if (f->all->d[i].image == index) {
            eval_det d = f->all->d[i];
            d.image = -7; /* eval_dataset must set it */
            CHECK(eval_dets_push(out, d));
        }
    return 0;
}

static int same_report(const eval_report *a, const eval_report *b, int n_cats) {
    if (a->voc.map != b->voc.map || memcmp(a->coco.stats, b->coco.stats, sizeof a->coco.stats)) return 0;
    for (int k = 0; k < n_cats; k++)
        if (a->voc.cls[k].ap != b->voc.cls[k].ap || a->coco.cat[k].ap != b->coco.cat[k].ap) return 0;
    return 1;
}

static void run_fixture(const char *dir, const char *file, int *n_cases) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    fixture f;
    int s = load_fixture(&f, path);
    EXPECT(s == 0, "%s: fixture loads", file);
    if (s != 0) return;
    (*n_cases)++;
    const cJSON *exp = f.expected;
    eval_coco_result c;
    s = eval_coco(&f.gt, f.dets.d, f.dets.n, NULL, &c);
    EXPECT(s == 0, "%s: eval_coco default ok %s", file, s ? ote_errmsg() : "");
    if (s == 0) {
        check_stats(file, "coco_stats", c.stats, exp);
        const cJSON *per = cJSON_GetObjectItemCaseSensitive(exp, "coco_per_category");
        int ok = 1;
        double worst = 0;
        for (int k = 0; k < f.gt.n_cats; k++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(per, f.gt.cats[k].name);
            if (!e) {
                ok = 0;
                continue;
            }
            double g[4] = {c.cat[k].ap, c.cat[k].ap50, c.cat[k].ap75, c.cat[k].ar};
            double w[4] = {jnum(e, "ap"), jnum(e, "ap50"), jnum(e, "ap75"), jnum(e, "ar")};
            for (int i = 0; i < 4; i++) {
                if (fabs(g[i] - w[i]) > worst) worst = fabs(g[i] - w[i]);
                if (!near(g[i], w[i], 1e-12)) ok = 0;
            }
        }
        EXPECT(ok, "%s: coco_per_category within 1e-12 (max |diff| %.3g)", file, worst);
        eval_coco_result_free(&c);
    }
    s = eval_coco(&f.gt, f.dets.d, f.dets.n, (const int[3]){100, 300, 1000}, &c);
    EXPECT(s == 0, "%s: eval_coco mmdet maxDets ok", file);
    if (s == 0) {
        check_stats(file, "coco_stats_mmdet", c.stats, exp);
        eval_coco_result_free(&c);
    }
    eval_voc_result v;
    s = eval_voc(&f.gt, f.dets.d, f.dets.n, 0.5, EVAL_CROWD_IGNORED, &v);
    EXPECT(s == 0, "%s: eval_voc ok", file);
    if (s == 0) {
        check_voc(file, "voc_map_050", "voc_ap_per_class", &v, &f.gt, exp);
        eval_voc_result_free(&v);
    }
    s = eval_voc(&f.gt, f.dets.d, f.dets.n, 0.5, EVAL_CROWD_ABSENT, &v);
    EXPECT(s == 0, "%s: eval_voc crowd absent ok", file);
    if (s == 0) {
        check_voc(file, "voc_map_050_crowd_absent", "voc_ap_per_class_crowd_absent", &v, &f.gt, exp);
        eval_voc_result_free(&v);
    }

    if (!strcmp(file, "11_random_b.json")) {
        /* the detector-callback driver gives the same numbers as scoring the list directly */
        eval_report direct, viacb;
        fake_detector fd = {.all = &f.dets, .fail_at = -1};
        eval_dets kept;
        int s1 = eval_run(&f.gt, f.dets.d, f.dets.n, EVAL_CROWD_ABSENT, NULL, &direct);
        int s2 = eval_dataset(&f.gt, fake_predict, &fd, EVAL_CROWD_ABSENT, NULL, &viacb, &kept);
        EXPECT(s1 == 0 && s2 == 0 && same_report(&direct, &viacb, f.gt.n_cats) && kept.n == f.dets.n,
              "%s: eval_dataset with a fake detector == eval_run on the list", file);
        int img_ok = s2 == 0;
        for (int i = 0; img_ok && i < kept.n; i++) img_ok = kept.d[i].image >= 0;
        EXPECT(img_ok, "%s: eval_dataset sets each detection's image index", file);
        if (s1 == 0) eval_report_free(&direct);
        if (s2 == 0) {
            eval_report_free(&viacb);
            /* results file round trip */
            char tmpl[] = "/tmp/test_data_eval_XXXXXX";
            int fdesc = mkstemp(tmpl);
            ASSERT(fdesc >= 0);
            close(fdesc);
            int w = eval_save_results(tmpl, &f.gt, kept.d, kept.n);
            eval_dets back;
            eval_dets_init(&back);
            int rl = w == 0 ? eval_load_results(tmpl, &f.gt, &back) : -1;
            int same = rl == 0 && back.n == kept.n;
            for (int i = 0; same && i < back.n; i++)
                same = !memcmp(&back.d[i], &kept.d[i], sizeof back.d[i]);
            EXPECT(same, "%s: eval_save_results -> eval_load_results round-trips exactly", file);
            eval_dets_free(&back);
            unlink(tmpl);
            eval_dets_free(&kept);
        }
        fd.fail_at = 2;
        s2 = eval_dataset(&f.gt, fake_predict, &fd, EVAL_CROWD_ABSENT, NULL, &viacb, NULL);
        EXPECT(s2 == OTE_EIO && strstr(ote_errmsg(), "image 2") && strstr(ote_errmsg(), "cannot read"),
              "a failing detector's error is passed up naming the image: %s", ote_errmsg());
    }
    fixture_free(&f);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs every *.json in dir whose name starts with `prefix`; returns the number of cases. */
static int run_dir(const char *dir, const char *prefix) {
    DIR *dp = opendir(dir);
    EXPECT(dp != NULL, "fixtures directory %s exists", dir);
    if (!dp) return 0;
    char *names[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) && n < 256) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".json") && !strncmp(de->d_name, prefix, strlen(prefix)))
            names[n++] = strdup(de->d_name);
    }
    closedir(dp);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int n_cases = 0;
    for (int i = 0; i < n; i++) {
        run_fixture(dir, names[i], &n_cases);
        free(names[i]);
    }
    return n_cases;
}

static void test_fixtures(void) {
    const char *shared = getenv("OTE_SHARED");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fixtures/eval", shared && *shared ? shared : "../shared");
    int n = run_dir(dir, "");
    /* README lists 11 cases; fewer means the directory is incomplete */
    EXPECT(n >= 11, "%d shared fixture cases evaluated (expected at least 11)", n);
    /* tests/reference/eval_ref.py: >= 8 classes, > 8192-entry means, long curves, annotation id 0 */
    const char *src = getenv("OTE_SRC");
    snprintf(dir, sizeof dir, "%s/tests/reference/fixtures", src && *src ? src : ".");
    n = run_dir(dir, "eval_ref_");
    EXPECT(n >= 2, "%d eval_ref.py cases evaluated (expected at least 2)", n);
}

/* ---- results-file errors ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs(text, f);
    fclose(f);
}

static void test_results_errors(void) {
    const hand_box b[] = {{0, 0, 10, 10, 40, 40, 0}};
    coco_dataset d;
    hand_dataset(&d, 2, 2, b, 1);
    char path[] = "/tmp/test_data_eval_res_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"score\": 0.5},\n {\"image_id\": 1,,}]",
         "line 2"},
        {"{\"image_id\": 1}", "list"},
        {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"score\": 0.5}, 3]", "entry 1"},
        {"[{\"image_id\": 9, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"score\": 0.5}]", "image_id 9"},
        {"[{\"image_id\": 1, \"category_id\": 5, \"bbox\": [1, 2, 3, 4], \"score\": 0.5}]", "category_id 5"},
        {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3], \"score\": 0.5}]", "bbox"},
        {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, -3, 4], \"score\": 0.5}]", "bbox"},
        {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3, 4]}]", "score"},
        {"[{\"image_id\": 1.5, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"score\": 0.5}]", "image_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].text);
        eval_dets l;
        eval_dets_init(&l);
        int s = eval_load_results(path, &d, &l);
        EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), path) && strstr(ote_errmsg(), cases[i].want),
              "bad results file %zu -> parse error naming file and '%s': %s", i, cases[i].want, ote_errmsg());
        eval_dets_free(&l);
    }
    write_file(path, "[{\"image_id\": 2, \"category_id\": 2, \"bbox\": [1.5, 2, 3, 4.25], \"score\": 0.5, \"extra\": 1}]");
    eval_dets l;
    eval_dets_init(&l);
    int s = eval_load_results(path, &d, &l);
    EXPECT(s == 0 && l.n == 1 && l.d[0].image == 1 && l.d[0].label == 1 && l.d[0].x1 == 1.5f &&
              l.d[0].x2 == 4.5f && l.d[0].y2 == 6.25f && l.d[0].score == 0.5f,
          "good results file: ids mapped to image 1 / label 1, bbox xywh -> xyxy");
    eval_dets_free(&l);
    unlink(path);
    s = eval_load_results(path, &d, &l);
    EXPECT(s == OTE_EIO && strstr(ote_errmsg(), path), "missing results file -> io error naming it");
    dataset_free(&d);
}

int main(void) {
    test_helpers();
    test_perfect();
    test_fp_above_tp();
    test_duplicates();
    test_crowd();
    test_classes_without_gts();
    test_bad_input();
    test_results_errors();
    test_threshold_hand();
    test_threshold_vs_reference();
    test_pr_curves();
    test_fixtures();
    return expect_finish();
}
