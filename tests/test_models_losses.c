/* test_models_losses.c - box coder and ATSS losses (models/coder.c, models/losses.c).
 *   - coder: encode/decode round trip, the dw/dh clamp, test-time clipping, decode backward vs
 *     central finite differences of a double-precision decode;
 *   - focal, GIoU, centerness BCE: values vs double formulas, gradients vs central differences;
 *   - losses_batch on the PyTorch reference's head outputs (tests/reference/detector_ref.py),
 *     converted to nChw16c and nChw8c here: every loss part per level, the total, N_pos and B, and the
 *     gradients w.r.t. the head outputs vs the reference's autograd gradients; also the case of
 *     one image without boxes, and NaN detection.
 * Tolerances are stated at each check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/ote.h"
#include "engine/tensor.h"
#include "models/assigner.h"
#include "models/coder.h"
#include "models/losses.h"
#include "tests/fixture.h"
#include "tests/expect.h"


static unsigned long long lcg = 42;
static double urand(void) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg >> 11) / 9007199254740992.0;
}

/* ---- double references ---- */
static const double STD_D[4] = {0.1, 0.1, 0.2, 0.2};
static void decode_d(const float p[4], const double d[4], double b[4]) {
    double px = ((double)p[0] + (double)p[2]) * 0.5, py = ((double)p[1] + (double)p[3]) * 0.5;
    double pw = (double)p[2] - (double)p[0], ph = (double)p[3] - (double)p[1];
    double R = fabs(log(16.0 / 1000));
    double dw = fmin(fmax(d[2] * STD_D[2], -R), R), dh = fmin(fmax(d[3] * STD_D[3], -R), R);
    double gx = px + pw * d[0] * STD_D[0], gy = py + ph * d[1] * STD_D[1];
    double gw = pw * exp(dw), gh = ph * exp(dh);
    b[0] = gx - gw / 2;
    b[1] = gy - gh / 2;
    b[2] = gx + gw / 2;
    b[3] = gy + gh / 2;
}
static double focal_d(double x, int t) {
    double p = 1 / (1 + exp(-x));
    return t ? -0.25 * (1 - p) * (1 - p) * log(p) : -0.75 * p * p * log(1 - p);
}
static double giou_d(const double p[4], const double t[4]) {
    double ap = (p[2] - p[0]) * (p[3] - p[1]), at = (t[2] - t[0]) * (t[3] - t[1]);
    double iw = fmax(fmin(p[2], t[2]) - fmax(p[0], t[0]), 0), ih = fmax(fmin(p[3], t[3]) - fmax(p[1], t[1]), 0);
    double in = iw * ih, u = fmax(ap + at - in, 1e-6);
    double ew = fmax(fmax(p[2], t[2]) - fmin(p[0], t[0]), 0), eh = fmax(fmax(p[3], t[3]) - fmin(p[1], t[1]), 0);
    double e = fmax(ew * eh, 1e-6);
    return in / u - (e - u) / e;
}
static double bce_d(double z, double c) { return log(1 + exp(z)) - z * c; }

/* Channel block of the head arrays in the current pass (the losses run on 16 (AVX-512) and 8 (AVX2)
 * blocks; main checks both, whatever this CPU is, since no oneDNN kernel is involved). */
static int test_blk = 16;

/* NCHW doubles -> nChw<test_blk>c floats with zero channel padding. */
static float *to_blocked(const fx_array *a, int N, int C, int H, int W, long n0) {
    int cb = (C + test_blk - 1) / test_blk;
    float *o = calloc((size_t)N * cb * H * W * test_blk, sizeof(float));
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    o[blk_off(C, H, W, test_blk, n, c, h, w)] = (float)a->v[(((n + n0) * C + c) * (long)H + h) * W + w];
    return o;
}
static double *from_blocked(const float *b, int N, int C, int H, int W, int *pad_zero) {
    double *o = malloc(sizeof(double) * (size_t)N * C * H * W);
    int cb = (C + test_blk - 1) / test_blk;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < cb * test_blk; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    float v = b[blk_off(C, H, W, test_blk, n, c, h, w)];
                    if (c < C) o[(((long)n * C + c) * H + h) * W + w] = v;
                    else if (v != 0.0f) *pad_zero = 0;
                }
    return o;
}

static void test_coder(void) {
    double max_rt = 0;
    for (int t = 0; t < 1000; t++) {
        float s = (float)(16 + urand() * 500), cx = (float)(urand() * 1000), cy = (float)(urand() * 700);
        float p[4] = {cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2};
        float gw = s * (float)exp(log(0.05) + urand() * log(400)), gh = s * (float)exp(log(0.05) + urand() * log(400));
        float gx = cx + (float)(urand() - 0.5) * s, gy = cy + (float)(urand() - 0.5) * s;
        float g[4] = {gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2}, d[4], b[4];
        coder_encode(p, g, d);
        coder_decode(p, d, 0, 0, b);
        for (int k = 0; k < 4; k++) max_rt = fmax(max_rt, fabs(b[k] - g[k]) / ((double)s + fmax(gw, gh)));
    }
    EXPECT(max_rt < 2e-6, "coder round trip (size ratios 0.05..20): max |decode(encode(g)) - g| / box size = %.2e (tol 2e-6)", max_rt);
    float p[4] = {0, 0, 64, 64}, g[4] = {-3200 + 32, 10, 3200 + 32, 54}, d[4], b[4];
    coder_encode(p, g, d);
    coder_decode(p, d, 0, 0, b);
    EXPECT(fabsf((b[2] - b[0]) - 64 * 62.5f) < 0.01f && fabsf((b[3] - b[1]) - 44) < 1e-3f,
           "clamp: width 100x the anchor decodes to 62.5x (exp(4.135...)): %.3f (expect 4000)", (double)(b[2] - b[0]));
    float dd[4] = {3, -2, 1, 0.5f};
    coder_decode(p, dd, 40, 50, b);
    EXPECT(b[0] >= 0 && b[1] == 0 && b[2] == 50 && b[3] <= 40, "test-time clipping to 40x50: [%g %g %g %g]",
           (double)b[0], (double)b[1], (double)b[2], (double)b[3]);

    double max_err = 0;
    for (int t = 0; t < 200; t++) {
        float s = (float)(16 + urand() * 200);
        float pa[4] = {10, 20, 10 + s, 20 + s * (float)(0.5 + urand())};
        float df[4], gb[4], gd[4];
        for (int k = 0; k < 4; k++) {
            df[k] = (float)(urand() * 4 - 2);
            gb[k] = (float)(urand() * 2 - 1);
        }
        coder_decode_backward(pa, df, gb, gd);
        for (int k = 0; k < 4; k++) {
            double dp[4], dm[4], bp[4], bm[4], h = 1e-6;
            for (int q = 0; q < 4; q++) dp[q] = dm[q] = df[q];
            dp[k] += h;
            dm[k] -= h;
            decode_d(pa, dp, bp);
            decode_d(pa, dm, bm);
            double fd = 0;
            for (int q = 0; q < 4; q++) fd += (double)gb[q] * (bp[q] - bm[q]) / (2 * h);
            max_err = fmax(max_err, fabs(fd - (double)gd[k]) / (fabs(fd) + 1e-3 * (double)s));
        }
    }
    EXPECT(max_err < 1e-4, "decode backward vs central differences (double): max rel err %.2e (tol 1e-4)", max_err);
    float pc[4] = {0, 0, 64, 64}, dc[4] = {0, 0, 30, -30}, gbc[4] = {1, 1, 1, 1}, gdc[4];
    coder_decode_backward(pc, dc, gbc, gdc);
    EXPECT(gdc[2] == 0 && gdc[3] == 0, "decode backward: no dw/dh gradient where the clamp is active");
}

static void test_elementwise(void) {
    double max_v = 0, max_g = 0;
    const float xs[] = {-9.0f, -4.595f, -2.0f, -0.3f, 0.0f, 0.7f, 2.5f, 6.0f};
    for (unsigned i = 0; i < sizeof xs / sizeof xs[0]; i++)
        for (int t = 0; t < 2; t++) {
            float g;
            float v = losses_focal(xs[i], t, &g);
            double h = 1e-5, fd = (focal_d((double)xs[i] + h, t) - focal_d((double)xs[i] - h, t)) / (2 * h);
            max_v = fmax(max_v, fabs((double)v - focal_d(xs[i], t)) / (fabs(focal_d(xs[i], t)) + 1e-12));
            max_g = fmax(max_g, fabs((double)g - fd) / (fabs(fd) + 1e-9));
        }
    /* f32 1-p loses ~1e-7/(1-p) relative at saturated logits (|x| = 6..9), as in torch/mmcv */
    EXPECT(max_v < 1e-4, "focal loss value vs double formula: max rel err %.2e (tol 1e-4)", max_v);
    EXPECT(max_g < 1e-4, "focal gradient vs central differences: max rel err %.2e (tol 1e-4, abs floor 1e-9)", max_g);

    /* GIoU: partial overlap, nested both ways, disjoint in x, disjoint in both, shared edge region. */
    const float cases[][8] = {
        {10, 12, 50, 60, 20, 5, 70, 40},   {20, 20, 30, 35, 10, 10, 60, 50}, {10, 10, 60, 50, 20, 20, 30, 35},
        {0, 0, 10, 10, 20, 2, 40, 8},      {0, 0, 10, 10, 20, 30, 40, 50},  {5.5f, 3, 17, 29, 7, 1.5f, 22, 25},
        {100, 80, 180, 150, 90, 100, 170, 160},
    };
    double max_ge = 0, max_gv = 0;
    for (unsigned c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const float *p = cases[c], *t = cases[c] + 4;
        float g[4];
        float v = losses_giou(p, t, g);
        double pd[4], td[4], gmax = 0, err = 0;
        for (int k = 0; k < 4; k++) {
            pd[k] = p[k];
            td[k] = t[k];
        }
        max_gv = fmax(max_gv, fabs((double)v - giou_d(pd, td)));
        for (int k = 0; k < 4; k++) {
            double a[4], b[4], h = 1e-4;
            memcpy(a, pd, sizeof a);
            memcpy(b, pd, sizeof b);
            a[k] += h;
            b[k] -= h;
            double fd = (giou_d(a, td) - giou_d(b, td)) / (2 * h);
            gmax = fmax(gmax, fabs(fd));
            err = fmax(err, fabs(fd - (double)g[k]));
        }
        max_ge = fmax(max_ge, err / (gmax + 1e-12));
    }
    EXPECT(max_gv < 1e-6, "GIoU value vs double: max abs err %.2e (tol 1e-6)", max_gv);
    EXPECT(max_ge < 1e-4, "GIoU gradient vs central differences on 7 box pairs: max err / max|grad| %.2e (tol 1e-4)", max_ge);

    float anc[4] = {0, 0, 64, 64}, box[4] = {12, 22, 62, 52};
    float ct = losses_centerness_target(anc, box);
    EXPECT(fabsf(ct - (float)sqrt(1.0 / 3.0)) < 1e-6f, "centerness target: l20 r30 t10 b20 -> sqrt(1/3) (got %.7f)", (double)ct);
    double max_b = 0;
    const float zs[] = {-5, -1, 0, 0.4f, 3};
    for (int i = 0; i < 5; i++) {
        float g, c = 0.35f;
        float v = losses_bce_logits(zs[i], c, &g);
        double h = 1e-5, fd = (bce_d((double)zs[i] + h, c) - bce_d((double)zs[i] - h, c)) / (2 * h);
        max_b = fmax(max_b, fmax(fabs((double)v - bce_d(zs[i], c)) / bce_d(zs[i], c), fabs((double)g - fd)));
    }
    EXPECT(max_b < 1e-5, "centerness BCE value (rel) and gradient (abs) vs double: %.2e (tol 1e-5)", max_b);
}

typedef struct batch_io {
    float *cls[5], *reg[5], *ctr[5], *gcls[5], *greg[5], *gctr[5];
    head_out out[5];
    head_grad grad[5];
} batch_io;

static void batch_io_init(batch_io *b, const fx_file *f, const char *prefix, const anchor_grid *g, int N, int C, long n0) {
    for (int l = 0; l < 5; l++) {
        char nm[64];
        int H = g->h[l], W = g->w[l];
        snprintf(nm, sizeof nm, "%s.cls.%d", prefix, l);
        b->cls[l] = to_blocked(fx_get(f, nm), N, C, H, W, n0);
        snprintf(nm, sizeof nm, "%s.reg.%d", prefix, l);
        b->reg[l] = to_blocked(fx_get(f, nm), N, 4, H, W, n0);
        snprintf(nm, sizeof nm, "%s.ctr.%d", prefix, l);
        b->ctr[l] = to_blocked(fx_get(f, nm), N, 1, H, W, n0);
        size_t hw = (size_t)N * H * W * test_blk;
        b->gcls[l] = malloc(hw * ((C + test_blk - 1) / test_blk) * sizeof(float));
        b->greg[l] = malloc(hw * sizeof(float));
        b->gctr[l] = malloc(hw * sizeof(float));
        /* poison: every element must be written */
        memset(b->gcls[l], 0x7f, hw * ((C + test_blk - 1) / test_blk) * sizeof(float));
        memset(b->greg[l], 0x7f, hw * sizeof(float));
        memset(b->gctr[l], 0x7f, hw * sizeof(float));
        b->out[l] = (head_out){b->cls[l], b->reg[l], b->ctr[l], test_blk};
        b->grad[l] = (head_grad){b->gcls[l], b->greg[l], b->gctr[l], test_blk};
    }
}

static void batch_io_free(batch_io *b) {
    for (int l = 0; l < 5; l++) {
        free(b->cls[l]);
        free(b->reg[l]);
        free(b->ctr[l]);
        free(b->gcls[l]);
        free(b->greg[l]);
        free(b->gctr[l]);
    }
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) + 1e-7); }

/* Runs one batch case: loss parts vs `lp`.loss.*, head gradients vs `gp`.* */
static void check_case(const fx_file *f, const char *tag, const char *lp, const char *gp, int n0, int N) {
    const fx_array *cfg = fx_get(f, "cfg");
    int H = (int)cfg->v[1], W = (int)cfg->v[2], C = (int)cfg->v[3], NT = (int)cfg->v[0];
    anchor_grid g;
    anchors_grid_init(&g, H, W);
    float *anchors = malloc(sizeof(float) * 4 * g.total);
    anchors_fill(&g, anchors);
    const fx_array *ra = fx_get(f, "assign.gt"), *rl = fx_get(f, "assign.labels");
    const fx_array *gb = fx_get(f, "gt.boxes"), *gf = fx_get(f, "gt.first");
    (void)NT;
    int *as = malloc(sizeof(int) * N * g.total), *lb = malloc(sizeof(int) * N * g.total), first[8];
    for (long i = 0; i < (long)N * g.total; i++) {
        as[i] = (int)ra->v[(long)n0 * g.total + i];
        lb[i] = (int)rl->v[(long)n0 * g.total + i];
    }
    for (int n = 0; n <= N; n++) first[n] = (int)gf->v[n0 + n];
    float *gtb = malloc(sizeof(float) * gb->numel + 4);
    for (long i = 0; i < gb->numel; i++) gtb[i] = (float)gb->v[i];
    batch_io b;
    batch_io_init(&b, f, "head", &g, N, C, n0);
    loss_parts lpts;
    int st = losses_batch(&g, anchors, N, C, as, lb, gtb, first, b.out, b.grad, &lpts);
    EXPECT(st == 0, "%s: losses_batch status %d", tag, st);
    char nm[64];
    double e_cls = 0, e_box = 0, e_ctr = 0;
    snprintf(nm, sizeof nm, "%s.cls", lp);
    const fx_array *rc = fx_get(f, nm);
    snprintf(nm, sizeof nm, "%s.box", lp);
    const fx_array *rb = fx_get(f, nm);
    snprintf(nm, sizeof nm, "%s.ctr", lp);
    const fx_array *rz = fx_get(f, nm);
    for (int l = 0; l < 5; l++) {
        e_cls = fmax(e_cls, rel(lpts.cls[l], rc->v[l]));
        e_box = fmax(e_box, rel(lpts.box[l], rb->v[l]));
        e_ctr = fmax(e_ctr, rel(lpts.ctr[l], rz->v[l]));
    }
    EXPECT(e_cls < 1e-5 && e_box < 1e-5 && e_ctr < 1e-5,
           "%s: per-level loss parts vs reference: max rel err cls %.2e box %.2e ctr %.2e (tol 1e-5, abs floor 1e-7)", tag, e_cls, e_box, e_ctr);
    snprintf(nm, sizeof nm, "%s.total", lp);
    double rt = fx_get(f, nm)->v[0];
    EXPECT(rel(lpts.total, rt) < 1e-5, "%s: total loss %.7f vs reference %.7f (rel err %.2e, tol 1e-5)", tag, lpts.total, rt, rel(lpts.total, rt));
    snprintf(nm, sizeof nm, "%s.npos", lp);
    EXPECT(lpts.n_pos == fx_get(f, nm)->v[0], "%s: N_pos %.0f equals the reference's", tag, lpts.n_pos);
    snprintf(nm, sizeof nm, "%s.bnorm", lp);
    const fx_array *bn = fx_find(f, nm);
    if (bn) EXPECT(rel(lpts.b_norm, bn->v[0]) < 1e-5, "%s: B %.6f vs reference %.6f (tol 1e-5 rel)", tag, lpts.b_norm, bn->v[0]);
    double eg[3] = {0, 0, 0};
    int pad_zero = 1;
    for (int l = 0; l < 5; l++) {
        int Hl = g.h[l], Wl = g.w[l];
        const char *nmz[3] = {"cls", "reg", "ctr"};
        float *gs[3] = {b.gcls[l], b.greg[l], b.gctr[l]};
        int chs[3] = {C, 4, 1};
        for (int q = 0; q < 3; q++) {
            snprintf(nm, sizeof nm, "%s.%s.%d", gp, nmz[q], l);
            const fx_array *ref = fx_get(f, nm);
            double *mine = from_blocked(gs[q], N, chs[q], Hl, Wl, &pad_zero);
            /* reference arrays for the batch case hold all NT images; take images n0..n0+N-1 */
            long per = (long)chs[q] * Hl * Wl, off = ref->dims[0] == N ? 0 : (long)n0 * per;
            /* relative to the largest gradient of that output over the level (floor 1e-10) */
            double r = fx_max_rel(mine, ref->v + off, (long)N * per, 1e-10);
            if (r > eg[q]) eg[q] = r;
            free(mine);
        }
    }
    EXPECT(eg[0] < 1e-4 && eg[1] < 1e-4 && eg[2] < 1e-4,
           "%s: gradients vs autograd: max|err|/max|ref| per level: cls %.2e reg %.2e ctr %.2e (tol 1e-4)", tag, eg[0], eg[1], eg[2]);
    EXPECT(pad_zero, "%s: gradient channel padding is zero", tag);

    /* Loss only (no gradient buffers): same parts. */
    loss_parts lp2;
    st = losses_batch(&g, anchors, N, C, as, lb, gtb, first, b.out, NULL, &lp2);
    EXPECT(st == 0 && lp2.total == lpts.total && lp2.cls_sum == lpts.cls_sum, "%s: loss without gradients gives the same total", tag);

    /* NaN detection: one non-finite logit. */
    if (N > 1) {
        b.cls[0][0] = NAN;
        st = losses_batch(&g, anchors, N, C, as, lb, gtb, first, b.out, b.grad, &lpts);
        EXPECT(st == OTE_ENAN, "%s: a NaN logit gives OTE_ENAN (%s)", tag, ote_errmsg());
    }
    batch_io_free(&b);
    free(as);
    free(lb);
    free(gtb);
    free(anchors);
}

static void bench_full_size(void) {
    /* Figure only: 992x736, batch 2, 80 classes, random logits and 20 gts per image. */
    anchor_grid g;
    anchors_grid_init(&g, 736, 992);
    const int N = 2, C = 80;
    float *anchors = malloc(sizeof(float) * 4 * g.total);
    anchors_fill(&g, anchors);
    unsigned char *valid = malloc(g.total);
    anchors_valid(&g, 736, 992, valid);
    int *as = malloc(sizeof(int) * N * g.total), *lb = malloc(sizeof(int) * N * g.total), first[3] = {0, 20, 40};
    float gts[160];
    int gl[40];
    for (int j = 0; j < 40; j++) {
        float x = (float)(urand() * 800), y = (float)(urand() * 550);
        gts[4 * j] = x;
        gts[4 * j + 1] = y;
        gts[4 * j + 2] = x + 20 + (float)(urand() * 170);
        gts[4 * j + 3] = y + 20 + (float)(urand() * 170);
        gl[j] = j % C;
    }
    size_t wsb = assigner_ws_bytes(&g, 20, 9);
    void *ws = malloc(wsb);
    for (int n = 0; n < N; n++)
        assigner_atss(&g, anchors, valid, gts + 80 * n, gl + 20 * n, 20, C, 9, ws, wsb, as + n * g.total, lb + n * g.total);
    head_out out[5];
    head_grad gr[5];
    float *bufs[30];
    int nb = 0;
    for (int l = 0; l < 5; l++) {
        size_t hw = (size_t)N * g.h[l] * g.w[l] * 16;
        float *c = malloc(hw * 5 * sizeof(float)), *r = malloc(hw * sizeof(float)), *z = malloc(hw * sizeof(float));
        for (size_t i = 0; i < hw * 5; i++) c[i] = -4.6f + (float)(urand() - 0.5);
        for (size_t i = 0; i < hw; i++) {
            r[i] = (float)(urand() - 0.5);
            z[i] = (float)(urand() - 0.5);
        }
        out[l] = (head_out){c, r, z, 16};
        gr[l] = (head_grad){malloc(hw * 5 * sizeof(float)), malloc(hw * sizeof(float)), malloc(hw * sizeof(float)), 16};
        bufs[nb++] = c;
        bufs[nb++] = r;
        bufs[nb++] = z;
        bufs[nb++] = gr[l].cls;
        bufs[nb++] = gr[l].reg;
        bufs[nb++] = gr[l].ctr;
    }
    loss_parts p;
    struct timespec t0, t1;
    losses_batch(&g, anchors, N, C, as, lb, gts, first, out, gr, &p); /* touches the pages */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int st = losses_batch(&g, anchors, N, C, as, lb, gts, first, out, gr, &p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    EXPECT(st == 0 && isfinite(p.total), "992x736 batch 2, 80 classes: loss %.4f (cls %.4f box %.4f ctr %.4f, N_pos %.0f)",
           p.total, p.cls_sum, p.box_sum, p.ctr_sum, p.n_pos);
    printf("info: losses_batch at 992x736, batch 2, 80 classes: %.1f ms (figure, not asserted)\n", ms);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(ws);
    free(as);
    free(lb);
    free(valid);
    free(anchors);
}

int main(void) {
    test_coder();
    test_elementwise();
    fx_file f;
    if (fx_load(&f, "tests/reference/fixtures/detector_ref.fx") != 0) {
        printf("FAIL: fixture tests/reference/fixtures/detector_ref.fx\n");
        return 1;
    }
    int N = (int)fx_get(&f, "cfg")->v[0];
    for (test_blk = 16; test_blk >= 8; test_blk /= 2) {
        printf("-- head arrays blocked by %d channels --\n", test_blk);
        check_case(&f, "batch of 3", "loss", "dhead", 0, N);
        check_case(&f, "image without boxes", "empty.loss", "empty.dhead", 2, 1);
    }
    fx_free(&f);
    bench_full_size();
    return expect_finish();
}
