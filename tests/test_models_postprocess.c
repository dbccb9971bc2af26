/* test_models_postprocess.c - inference post-processing (models/postprocess.c): NMS semantics on
 * hand-built boxes (order, class awareness, the IoU >= threshold rule, the max-per-image cap) and
 * the PyTorch reference's inference results (tests/reference/detector_ref.py) on its head outputs:
 * the trained-a-little model's eval-mode outputs for 3 images and a synthetic 256x320 case where
 * the per-level top-1000 cut is active. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tensor.h"
#include "models/postprocess.h"
#include "tests/fixture.h"
#include "tests/expect.h"


/* Channel block of the head arrays in the current pass: main checks 16 (AVX-512) and 8 (AVX2). */
static int test_blk = 16;

static float *to_blocked(const fx_array *a, int N, int C, int H, int W) {
    int cb = (C + test_blk - 1) / test_blk;
    float *o = calloc((size_t)N * cb * H * W * test_blk, sizeof(float));
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    o[blk_off(C, H, W, test_blk, n, c, h, w)] = (float)a->v[(((long)n * C + c) * H + h) * W + w];
    return o;
}

static void test_nms(void) {
    int keep[256];
    /* Two boxes with IoU 0.7 (inter 70 / union 100): different classes both survive. */
    float b2[8] = {0, 0, 10, 10, 0, 0, 10, 7};
    float s2[2] = {0.5f, 0.9f};
    int l_diff[2] = {0, 1}, l_same[2] = {1, 1};
    int nk = postprocess_nms_classaware(b2, s2, l_diff, 2, 0.6f, 100, keep);
    EXPECT(nk == 2 && keep[0] == 1 && keep[1] == 0, "different classes, IoU 0.7: both kept, by score (%d kept)", nk);
    nk = postprocess_nms_classaware(b2, s2, l_same, 2, 0.6f, 100, keep);
    EXPECT(nk == 1 && keep[0] == 1, "same class, IoU 0.7: the lower score is suppressed (%d kept)", nk);
    /* IoU exactly 0.6 (60/100): suppressed ('>=' as mmcv CPU); IoU 0.59: kept. */
    float b3[8] = {0, 0, 10, 10, 0, 0, 10, 6};
    nk = postprocess_nms_classaware(b3, s2, l_same, 2, 0.6f, 100, keep);
    EXPECT(nk == 1, "same class, IoU exactly 0.6: suppressed (%d kept)", nk);
    float b4[8] = {0, 0, 10, 10, 0, 0, 10, 5.9f};
    nk = postprocess_nms_classaware(b4, s2, l_same, 2, 0.6f, 100, keep);
    EXPECT(nk == 2, "same class, IoU 0.59: both kept (%d kept)", nk);
    /* Chain: A(0.9) suppresses B(0.8); C(0.7) overlaps only B, so C survives (B was removed). */
    float b5[12] = {0, 0, 10, 10, 3, 0, 13, 10, 6, 0, 16, 10};
    float s5[3] = {0.9f, 0.8f, 0.7f};
    int l5[3] = {0, 0, 0};
    nk = postprocess_nms_classaware(b5, s5, l5, 3, 0.5f, 100, keep);
    EXPECT(nk == 2 && keep[0] == 0 && keep[1] == 2, "suppressed boxes do not suppress (A kills B, C survives)");
    /* Output sorted by score, equal scores keep input order (stable), cap at 100. */
    float *bb = malloc(sizeof(float) * 4 * 150), *ss = malloc(sizeof(float) * 150);
    int *ll = malloc(sizeof(int) * 150);
    for (int i = 0; i < 150; i++) {
        bb[4 * i] = (float)(20 * i);
        bb[4 * i + 1] = 0;
        bb[4 * i + 2] = (float)(20 * i + 10);
        bb[4 * i + 3] = 10;
        ss[i] = (float)((i * 37) % 150) / 150.0f; /* a permutation of distinct scores */
        ll[i] = i % 3;
    }
    ss[10] = ss[11] = 0.995f;
    nk = postprocess_nms_classaware(bb, ss, ll, 150, 0.6f, 100, keep);
    int sorted = 1;
    for (int t = 1; t < nk; t++) sorted &= ss[keep[t - 1]] >= ss[keep[t]];
    EXPECT(nk == 100 && sorted && keep[0] == 10 && keep[1] == 11, "150 disjoint boxes: 100 kept, score-descending, ties in input order");
    free(bb);
    free(ss);
    free(ll);
}

typedef struct pp_case {
    float *cls[5], *reg[5], *ctr[5];
    head_out out[5];
} pp_case;

static void load_case(pp_case *c, const fx_file *f, const char *prefix, const anchor_grid *g, int N, int C) {
    for (int l = 0; l < 5; l++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s.cls.%d", prefix, l);
        c->cls[l] = to_blocked(fx_get(f, nm), N, C, g->h[l], g->w[l]);
        snprintf(nm, sizeof nm, "%s.reg.%d", prefix, l);
        c->reg[l] = to_blocked(fx_get(f, nm), N, 4, g->h[l], g->w[l]);
        snprintf(nm, sizeof nm, "%s.ctr.%d", prefix, l);
        c->ctr[l] = to_blocked(fx_get(f, nm), N, 1, g->h[l], g->w[l]);
        c->out[l] = (head_out){c->cls[l], c->reg[l], c->ctr[l], test_blk};
    }
}

static void free_case(pp_case *c) {
    for (int l = 0; l < 5; l++) {
        free(c->cls[l]);
        free(c->reg[l]);
        free(c->ctr[l]);
    }
}

/* Compares one image's detections with the reference: same count, labels, and boxes/scores within
 * 1e-4 relative (box: relative to max(|coordinate|, 1)). */
/* Detection lists must agree one to one in order, except that detections whose scores tie within
 * float32 rounding (relative TIE_REL) may come in either order: the scores are products of two
 * float32 sigmoids, and the reference's eval-mode heads have near-ties (gaps down to 1e-8) between
 * locations whose outputs hardly depend on the image. */
#define TIE_REL 1e-6

static int det_match(const detection *d, const fx_array *rb, const fx_array *rl, long j, double *eb) {
    double e = 0;
    for (int k = 0; k < 4; k++) e = fmax(e, fabs((double)d->box[k] - rb->v[4 * j + k]) / fmax(fabs(rb->v[4 * j + k]), 1.0));
    if (d->label != (int)rl->v[j] || !(e < 1e-4)) return 0;
    *eb = fmax(*eb, e);
    return 1;
}

static void compare(const fx_file *f, const char *prefix, const char *tag, const detection *d, int nd) {
    char nm[80];
    snprintf(nm, sizeof nm, "%s.boxes", prefix);
    const fx_array *rb = fx_get(f, nm);
    snprintf(nm, sizeof nm, "%s.scores", prefix);
    const fx_array *rs = fx_get(f, nm);
    snprintf(nm, sizeof nm, "%s.labels", prefix);
    const fx_array *rl = fx_get(f, nm);
    int same_n = nd == rs->numel, matched = 0, swapped = 0;
    double eb = 0, es = 0;
    char *used = calloc((size_t)rs->numel + 1, 1);
    for (int i = 0; same_n && i < nd; i++) {
        es = fmax(es, fabs((double)d[i].score - rs->v[i]) / fabs(rs->v[i])); /* scores in order, ties or not */
        long hit = -1;
        if (!used[i] && det_match(&d[i], rb, rl, i, &eb)) hit = i;
        for (long j = 0; hit < 0 && j < rs->numel; j++)
            if (!used[j] && fabs(rs->v[j] - (double)d[i].score) <= TIE_REL * fabs(rs->v[j]) && det_match(&d[i], rb, rl, j, &eb))
                hit = j, swapped++;
        if (hit >= 0) used[hit] = 1, matched++;
    }
    free(used);
    EXPECT(same_n && matched == nd && es < 1e-4,
           "%s: %d detections (reference %ld), %d matched in label and box (max rel err %.2e, tol 1e-4; %d of them within "
           "a score tie of rel %.0e), max rel err scores %.2e (tol 1e-4)", tag, nd, rs->numel, matched, eb, swapped, TIE_REL, es);
}

static void fixture_cases(const fx_file *fp) {
    const fx_file f = *fp;
    postprocess_cfg cfg = postprocess_default_cfg();
    detection dets[100];
    int nd = 0;

    /* Trained-a-little model, eval mode, 3 images of 128x160 with their own img_shape/scale. */
    const fx_array *fc = fx_get(&f, "cfg"), *shp = fx_get(&f, "img_shape"), *sf = fx_get(&f, "eval.scale_factor");
    int N = (int)fc->v[0], H = (int)fc->v[1], W = (int)fc->v[2], C = (int)fc->v[3];
    anchor_grid g;
    anchors_grid_init(&g, H, W);
    float *anchors = malloc(sizeof(float) * 4 * g.total);
    anchors_fill(&g, anchors);
    pp_case ev;
    load_case(&ev, &f, "eval.head", &g, N, C);
    for (int n = 0; n < N; n++) {
        float scale[4];
        for (int k = 0; k < 4; k++) scale[k] = (float)sf->v[4 * n + k];
        int st = postprocess_image(&g, anchors, C, N, n, ev.out, (int)shp->v[2 * n], (int)shp->v[2 * n + 1], scale, &cfg, dets, &nd);
        char pre[32], tag[64];
        snprintf(pre, sizeof pre, "eval.det.%d", n);
        snprintf(tag, sizeof tag, "reference inference, image %d (status %d)", n, st);
        compare(&f, pre, tag, dets, nd);
    }
    free_case(&ev);
    free(anchors);

    /* Synthetic 256x320 case: level 0 has 1280 > 1000 locations. */
    const fx_array *pc = fx_get(&f, "pp.cfg");
    anchor_grid g2;
    anchors_grid_init(&g2, (int)pc->v[0], (int)pc->v[1]);
    float *a2 = malloc(sizeof(float) * 4 * g2.total);
    anchors_fill(&g2, a2);
    pp_case pp;
    load_case(&pp, &f, "pp.head", &g2, 1, C);
    float scale2[4] = {(float)pc->v[4], (float)pc->v[5], (float)pc->v[4], (float)pc->v[5]};
    int st = postprocess_image(&g2, a2, C, 1, 0, pp.out, (int)pc->v[2], (int)pc->v[3], scale2, &cfg, dets, &nd);
    char tag[64];
    snprintf(tag, sizeof tag, "synthetic 256x320 (top-1000 cut active, status %d)", st);
    compare(&f, "pp.det", tag, dets, nd);
    int sorted = 1, thr = 1, inside = 1;
    for (int i = 0; i < nd; i++) {
        if (i) sorted &= dets[i - 1].score >= dets[i].score;
        thr &= dets[i].score > 0.05f;
        inside &= dets[i].box[0] >= 0 && dets[i].box[2] <= 300 / 0.75f + 1e-3f && dets[i].box[3] <= 240 / 0.5f + 1e-3f;
    }
    EXPECT(nd <= 100 && sorted && thr && inside, "synthetic: <= 100 boxes, score-descending, scores > 0.05, clipped to the image then rescaled");
    postprocess_cfg strict = cfg;
    strict.score_thr = 2.0f;
    st = postprocess_image(&g2, a2, C, 1, 0, pp.out, (int)pc->v[2], (int)pc->v[3], scale2, &strict, dets, &nd);
    EXPECT(st == 0 && nd == 0, "threshold above every score: no detection");
    EXPECT(postprocess_image(&g2, a2, C, 1, 1, pp.out, 240, 300, scale2, &cfg, dets, &nd) < 0, "image index out of range refused");
    free_case(&pp);
    free(a2);
}

int main(void) {
    test_nms();
    fx_file f;
    if (fx_load(&f, "tests/reference/fixtures/detector_ref.fx") != 0) {
        printf("FAIL: fixture tests/reference/fixtures/detector_ref.fx\n");
        return 1;
    }
    for (test_blk = 16; test_blk >= 8; test_blk /= 2) {
        printf("-- head arrays blocked by %d channels --\n", test_blk);
        fixture_cases(&f);
    }
    fx_free(&f);
    return expect_finish();
}
