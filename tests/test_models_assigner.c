/* test_models_assigner.c - ATSS assignment (models/assigner.c): edge cases built by hand and the
 * PyTorch reference's assignment (tests/reference/detector_ref.py) on the fixture images, which
 * must be identical anchor by anchor (labels, gt indices, positives per level). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/assigner.h"
#include "tests/fixture.h"
#include "tests/expect.h"


typedef struct setup {
    anchor_grid g;
    float *anchors;
    unsigned char *valid;
    int *assigned, *labels;
    void *ws;
    size_t ws_bytes;
} setup;

static void setup_init(setup *s, int h, int w, int max_gts) {
    anchors_grid_init(&s->g, h, w);
    s->anchors = malloc(sizeof(float) * 4 * s->g.total);
    anchors_fill(&s->g, s->anchors);
    s->valid = malloc(s->g.total);
    anchors_valid(&s->g, h, w, s->valid);
    s->assigned = malloc(sizeof(int) * s->g.total);
    s->labels = malloc(sizeof(int) * s->g.total);
    s->ws_bytes = assigner_ws_bytes(&s->g, max_gts, 9);
    s->ws = malloc(s->ws_bytes);
}

static void setup_free(setup *s) {
    free(s->anchors);
    free(s->valid);
    free(s->assigned);
    free(s->labels);
    free(s->ws);
}

static int run(setup *s, const float *gts, const int *lab, int m, int C) {
    return assigner_atss(&s->g, s->anchors, s->valid, gts, lab, m, C, 9, s->ws, s->ws_bytes, s->assigned, s->labels);
}

/* Naive ATSS written straight from spec §6 (full sort by (distance, index), dense IoU matrix) as
 * an independent reference for the fast assigner on large random cases. */
typedef struct dk {
    float d;
    int i;
} dk;
static int dk_cmp(const void *pa, const void *pb) {
    const dk *a = pa, *b = pb;
    if (a->d != b->d) return a->d < b->d ? -1 : 1;
    return a->i - b->i;
}
static float naive_iou(const float *a, const float *b) {
    float aa = (a[2] - a[0]) * (a[3] - a[1]), ab = (b[2] - b[0]) * (b[3] - b[1]);
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    float in = fmaxf(w, 0) * fmaxf(h, 0), u = fmaxf(aa + ab - in, 1e-6f);
    return in / u;
}
static void naive_atss(const anchor_grid *g, const float *anc, const unsigned char *valid, const float *gts,
                       int m, int *out) {
    float *M = malloc(sizeof(float) * (size_t)g->total * (m > 0 ? m : 1));
    dk *buf = malloc(sizeof(dk) * (size_t)g->total);
    for (long i = 0; i < (long)g->total * m; i++) M[i] = -1e8f;
    for (int j = 0; j < m; j++) {
        const float *b = gts + 4 * j;
        float gx = (b[0] + b[2]) / 2.0f, gy = (b[1] + b[3]) / 2.0f;
        int cand[64], K = 0;
        for (int l = 0; l < 5; l++) {
            int n = 0;
            for (int i = g->start[l]; i < g->start[l + 1]; i++) {
                if (!valid[i]) continue;
                const float *a = anc + 4 * i;
                float dx = (a[0] + a[2]) / 2.0f - gx, dy = (a[1] + a[3]) / 2.0f - gy;
                buf[n].d = sqrtf(dx * dx + dy * dy);
                buf[n++].i = i;
            }
            qsort(buf, n, sizeof *buf, dk_cmp);
            for (int t = 0; t < n && t < 9; t++) cand[K++] = buf[t].i;
        }
        double mean = 0, sq = 0;
        for (int c = 0; c < K; c++) mean += (double)naive_iou(anc + 4 * cand[c], b);
        mean /= K;
        for (int c = 0; c < K; c++) {
            double e = (double)naive_iou(anc + 4 * cand[c], b) - mean;
            sq += e * e;
        }
        float thr = (float)mean + (float)sqrt(sq / (K - 1));
        for (int c = 0; c < K; c++) {
            const float *a = anc + 4 * cand[c];
            float cx = (a[0] + a[2]) / 2.0f, cy = (a[1] + a[3]) / 2.0f, iou = naive_iou(a, b);
            if (iou >= thr && cx - b[0] > 0.01f && cy - b[1] > 0.01f && b[2] - cx > 0.01f && b[3] - cy > 0.01f)
                M[(long)cand[c] * m + j] = iou;
        }
    }
    for (int i = 0; i < g->total; i++) {
        out[i] = valid[i] ? 0 : -1;
        float best = -1e8f;
        for (int j = 0; j < m; j++)
            if (M[(long)i * m + j] > best) {
                best = M[(long)i * m + j];
                out[i] = j + 1;
            }
    }
    free(M);
    free(buf);
}

int main(void) {
    setup s;
    setup_init(&s, 128, 160, 128);
    const int C = 3;

    /* No boxes: every valid anchor negative, invalid ones -1, all labels background. */
    anchors_valid(&s.g, 96, 128, s.valid);
    int st = run(&s, NULL, NULL, 0, C);
    int ok = st == 0;
    for (int i = 0; i < s.g.total; i++) ok &= s.assigned[i] == (s.valid[i] ? 0 : -1) && s.labels[i] == C;
    EXPECT(ok, "no boxes: valid anchors negative (0), invalid -1, labels = C");
    anchors_valid(&s.g, 128, 160, s.valid);

    /* A box smaller than every anchor (12x12 vs 64x64) containing anchor centres (32,32), (40,40)...:
     * it still gets positives, all with the centre strictly inside. */
    float small[4] = {30, 30, 42, 42};
    int l0 = 1;
    run(&s, small, &l0, 1, C);
    int npos = 0, inside = 1;
    for (int i = 0; i < s.g.total; i++)
        if (s.assigned[i] > 0) {
            npos++;
            const float *a = s.anchors + 4 * i;
            float cx = (a[0] + a[2]) / 2, cy = (a[1] + a[3]) / 2;
            inside &= cx > 30.01f && cx < 41.99f && cy > 30.01f && cy < 41.99f && s.labels[i] == 1;
        }
    EXPECT(npos >= 1 && inside, "box smaller than every anchor: %d positives, centres inside, label 1", npos);
    /* A tiny box with no anchor centre inside (centres are multiples of 8): no positive. */
    float tiny[4] = {41, 41, 47, 47};
    run(&s, tiny, &l0, 1, C);
    npos = 0;
    for (int i = 0; i < s.g.total; i++) npos += s.assigned[i] > 0;
    EXPECT(npos == 0, "tiny box without an anchor centre inside: no positive (got %d)", npos);

    /* Two overlapping boxes competing for anchor (64, 64) (level 0, index 8*20+8): IoU 0.879 with
     * A = [34,34,94,94] and 0.688 with B = [40,40,100,100]; it goes to the higher IoU whatever the
     * gt order. */
    float two[8] = {34, 34, 94, 94, 40, 40, 100, 100};
    int lab2[2] = {0, 2};
    int anc = 8 * s.g.w[0] + 8;
    run(&s, two, lab2, 2, C);
    int first = s.assigned[anc], first_lab = s.labels[anc];
    float two_sw[8] = {40, 40, 100, 100, 34, 34, 94, 94};
    int lab2_sw[2] = {2, 0};
    run(&s, two_sw, lab2_sw, 2, C);
    EXPECT(first == 1 && first_lab == 0 && s.assigned[anc] == 2 && s.labels[anc] == 0,
           "competing boxes: anchor goes to the higher IoU (gt order A,B -> %d, B,A -> %d)", first, s.assigned[anc]);

    /* Equidistant ties. Input 64x64, box [20,20,52,52] centred (36,36) on a level-0 grid midpoint.
     * Every level-0 anchor with centre in [20,52] contains the box: IoU 0.25 for all candidates, so
     * the positives are exactly the 9 level-0 candidates: the 4 nearest (distance sqrt 32) and 5 of
     * the 8 at distance sqrt 160, lower index first: (x,y) = (4,3) (5,3) (3,4) (6,4) (3,5), i.e.
     * indices 28 29 35 38 43, not 46 52 53. */
    setup t;
    setup_init(&t, 64, 64, 4);
    float mid[4] = {20, 20, 52, 52};
    int lab0 = 0;
    run(&t, mid, &lab0, 1, C);
    static const int expect_pos[9] = {28, 29, 35, 36, 37, 38, 43, 44, 45};
    int got[64], ng = 0, other = 0;
    for (int i = 0; i < t.g.total; i++)
        if (t.assigned[i] > 0) {
            if (i < t.g.start[1] && ng < 64) got[ng++] = i;
            else other++;
        }
    ok = ng == 9 && other == 0;
    for (int k = 0; ok && k < 9; k++) ok &= got[k] == expect_pos[k];
    EXPECT(ok, "equidistant ties: lower anchor index first (%d level-0 positives, %d elsewhere)", ng, other);
    setup_free(&t);

    /* Bad input. */
    int badlab = 3;
    EXPECT(run(&s, small, &badlab, 1, C) < 0, "label outside 0..C-1 refused");
    EXPECT(assigner_atss(&s.g, s.anchors, s.valid, two, lab2, 2, C, 9, s.ws, 16, s.assigned, s.labels) < 0,
           "too small workspace refused");

    /* PyTorch reference on the fixture batch. */
    fx_file f;
    if (fx_load(&f, "tests/reference/fixtures/detector_ref.fx") != 0) {
        printf("FAIL: fixture tests/reference/fixtures/detector_ref.fx\n");
        return 1;
    }
    const fx_array *cfg = fx_get(&f, "cfg"), *shp = fx_get(&f, "img_shape");
    const fx_array *gb = fx_get(&f, "gt.boxes"), *gl = fx_get(&f, "gt.labels"), *gf = fx_get(&f, "gt.first");
    const fx_array *ra = fx_get(&f, "assign.gt"), *rl = fx_get(&f, "assign.labels"), *rnl = fx_get(&f, "assign.npos_level");
    int N = (int)cfg->v[0], H = (int)cfg->v[1], W = (int)cfg->v[2], FC = (int)cfg->v[3];
    setup r;
    setup_init(&r, H, W, 16);
    int mism = 0, npl[5] = {0};
    for (int n = 0; n < N; n++) {
        anchors_valid(&r.g, (int)shp->v[2 * n], (int)shp->v[2 * n + 1], r.valid);
        int f0 = (int)gf->v[n], m = (int)gf->v[n + 1] - f0;
        float boxes[64];
        int labs[16];
        for (int j = 0; j < m; j++) {
            for (int k = 0; k < 4; k++) boxes[4 * j + k] = (float)gb->v[4 * (f0 + j) + k];
            labs[j] = (int)gl->v[f0 + j];
        }
        run(&r, boxes, labs, m, FC);
        for (int i = 0; i < r.g.total; i++) {
            long o = (long)n * r.g.total + i;
            if (r.assigned[i] != (int)ra->v[o] || r.labels[i] != (int)rl->v[o]) mism++;
            if (r.assigned[i] > 0)
                for (int l = 0; l < 5; l++)
                    if (i >= r.g.start[l] && i < r.g.start[l + 1]) npl[l]++;
        }
    }
    EXPECT(mism == 0, "reference assignment reproduced on %d images x %d anchors (%d mismatches)", N, r.g.total, mism);
    ok = 1;
    for (int l = 0; l < 5; l++) ok &= npl[l] == (int)rnl->v[l];
    EXPECT(ok, "positives per level %d %d %d %d %d equal the reference's", npl[0], npl[1], npl[2], npl[3], npl[4]);
    setup_free(&r);
    fx_free(&f);

    /* Speed figure (not asserted): 992x736, 100 random gts. */
    setup big;
    setup_init(&big, 736, 992, 100);
    float *gts = malloc(sizeof(float) * 400);
    int *gl2 = malloc(sizeof(int) * 100);
    unsigned long long z = 12345;
    for (int j = 0; j < 100; j++) {
        float v4[4];
        for (int k = 0; k < 4; k++) {
            z = z * 6364136223846793005ULL + 1442695040888963407ULL;
            v4[k] = (float)((z >> 33) % 1000) / 1000.0f;
        }
        float x1 = v4[0] * 900, y1 = v4[1] * 650;
        gts[4 * j] = x1;
        gts[4 * j + 1] = y1;
        gts[4 * j + 2] = x1 + 8 + v4[2] * 300;
        gts[4 * j + 3] = y1 + 8 + v4[3] * 300;
        gl2[j] = j % 3;
    }
    int *ref = malloc(sizeof(int) * big.g.total);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: unpadded; pass 1: image 700x950 inside the 736x992 batch (partial valid flags) */
        if (pass == 1) anchors_valid(&big.g, 700, 950, big.valid);
        run(&big, gts, gl2, 100, 3);
        naive_atss(&big.g, big.anchors, big.valid, gts, 100, ref);
        int diff = 0;
        npos = 0;
        for (int i = 0; i < big.g.total; i++) {
            diff += big.assigned[i] != ref[i];
            npos += big.assigned[i] > 0;
        }
        EXPECT(diff == 0 && npos > 100, "992x736, 100 random gts%s: equal to the naive full-sort ATSS (%d positives, %d differences)",
               pass ? ", image 700x950" : "", npos, diff);
    }
    free(ref);
    anchors_valid(&big.g, 736, 992, big.valid);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int reps = 20;
    for (int k = 0; k < reps; k++) run(&big, gts, gl2, 100, 3);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6) / reps;
    printf("info: 992x736 with 100 gts: %.2f ms per image (figure, not asserted)\n", ms);
    free(gts);
    free(gl2);
    setup_free(&big);
    setup_free(&s);
    return expect_finish();
}
