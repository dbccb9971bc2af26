/* test_train_import_backbone.c - the TFLite -> MobileNetV2 import, checked by classifying images.
 *
 * For both shared TFLite files: import with the classifier kept, then run an independent naive C
 * float forward of the torchvision-variant network on the imported PyTorch-layout weights
 * (OIHW convs, (C,1,3,3) depthwise, BN in eval mode with the stored statistics, ReLU6, residual
 * adds, TF-SAME asymmetric padding, global average pool, linear classifier) on the four test
 * images (24-bit BMP read here, bilinear resize to 224x224 with half-pixel centres, x/127.5 - 1).
 * The top-1 classes must be the README's: cat 286, bird 20, grace_hopper 653, dragonfly 320
 * (index = line of imagenet_labels.txt, 0 = background). Also checked: parameter names/shapes,
 * the layout permutation on sampled elements (tolerance: exact, same float arithmetic), the BN
 * identity, the import without classifier, and structure mismatches (wrong shape, wrong count,
 * broken wiring) giving errors.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "io/tfl.h"
#include "train/import_backbone.h"
#include "tests/expect.h"



/* ---- image input ---------------------------------------------------------------------------- */

typedef struct img {
    int w, h;
    unsigned char *rgb; /* h*w*3 */
} img;

static int read_bmp(const char *path, img *im) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    int32_t w, h;
    uint32_t off, comp;
    uint16_t bpp;
    if (n < 54 || b[0] != 'B' || b[1] != 'M') {
        free(b);
        return -1;
    }
    memcpy(&off, b + 10, 4), memcpy(&w, b + 18, 4), memcpy(&h, b + 22, 4), memcpy(&bpp, b + 28, 2), memcpy(&comp, b + 30, 4);
    int bottom_up = h > 0;
    if (h < 0) h = -h;
    size_t row = ((size_t)w * 3 + 3) & ~(size_t)3;
    if (bpp != 24 || comp != 0 || w <= 0 || off + row * (size_t)h > (size_t)n) {
        free(b);
        return -1;
    }
    im->w = w, im->h = h;
    im->rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++) {
        const unsigned char *src = b + off + row * (size_t)(bottom_up ? h - 1 - y : y);
        for (int x = 0; x < w; x++) {
            unsigned char *d = im->rgb + ((size_t)y * w + x) * 3;
            d[0] = src[3 * x + 2], d[1] = src[3 * x + 1], d[2] = src[3 * x]; /* BGR -> RGB */
        }
    }
    free(b);
    return 0;
}

typedef struct fmap {
    int c, h, w;
    float *d; /* (C, H, W) */
} fmap;

static fmap fm_new(int c, int h, int w) {
    fmap f = {c, h, w, calloc((size_t)c * h * w, sizeof(float))};
    return f;
}

/* Bilinear resize with half-pixel centres (as cv2.INTER_LINEAR / TF half_pixel_centers), then
 * x / 127.5 - 1, into a CHW map. */
static fmap preprocess(const img *im, int size) {
    fmap x = fm_new(3, size, size);
    double sy = (double)im->h / size, sx = (double)im->w / size;
    for (int y = 0; y < size; y++) {
        double fy = (y + 0.5) * sy - 0.5;
        if (fy < 0) fy = 0;
        int y0 = (int)fy;
        if (y0 > im->h - 1) y0 = im->h - 1;
        int y1 = y0 + 1 < im->h ? y0 + 1 : y0;
        double ay = fy - y0;
        for (int xx = 0; xx < size; xx++) {
            double fx = (xx + 0.5) * sx - 0.5;
            if (fx < 0) fx = 0;
            int x0 = (int)fx;
            if (x0 > im->w - 1) x0 = im->w - 1;
            int x1 = x0 + 1 < im->w ? x0 + 1 : x0;
            double ax = fx - x0;
            for (int c = 0; c < 3; c++) {
                double p00 = im->rgb[((size_t)y0 * im->w + x0) * 3 + c], p01 = im->rgb[((size_t)y0 * im->w + x1) * 3 + c];
                double p10 = im->rgb[((size_t)y1 * im->w + x0) * 3 + c], p11 = im->rgb[((size_t)y1 * im->w + x1) * 3 + c];
                double v = (1 - ay) * ((1 - ax) * p00 + ax * p01) + ay * ((1 - ax) * p10 + ax * p11);
                x.d[((size_t)c * size + y) * size + xx] = (float)(v / 127.5 - 1.0);
            }
        }
    }
    return x;
}

/* ---- naive network ---------------------------------------------------------------------------- */

/* TF "SAME": out = ceil(in / s), pad_total = max((out - 1) s + k - in, 0), before = total / 2. */
static int same_out(int in, int s) { return (in + s - 1) / s; }
static int same_pad_before(int in, int k, int s) {
    int tot = (same_out(in, s) - 1) * s + k - in;
    return tot > 0 ? tot / 2 : 0;
}

static const import_backbone_param *need(const import_backbone_result *r, const char *name, int64_t numel) {
    const import_backbone_param *p = import_backbone_find(r, name);
    if (!p || p->numel != numel) {
        fprintf(stderr, "FAIL: parameter %s missing or wrong size\n", name);
        exit(1);
    }
    return p;
}

/* conv (groups = 1 or depthwise), weights OIHW / (C,1,k,k), no bias (BN follows). */
static fmap conv(const fmap *x, const import_backbone_result *r, const char *prefix, int cout, int k, int s, int dw) {
    char name[160];
    snprintf(name, sizeof name, "%s.conv.weight", prefix);
    const float *W = need(r, name, (int64_t)cout * (dw ? 1 : x->c) * k * k)->data;
    int oh = same_out(x->h, s), ow = same_out(x->w, s);
    int pt = same_pad_before(x->h, k, s), pl = same_pad_before(x->w, k, s);
    fmap y = fm_new(cout, oh, ow);
    size_t hw = (size_t)oh * ow;
    if (k == 1 && s == 1 && !dw) {
        for (int o = 0; o < cout; o++) {
            float *yo = y.d + o * hw;
            const float *wo = W + (size_t)o * x->c;
            int i = 0;
            /* four input channels per pass: 5 memory accesses per 4 MACs (matters under ASan) */
            for (; i + 4 <= x->c; i += 4) {
                const float *x0 = x->d + (size_t)i * hw, *x1 = x0 + hw, *x2 = x1 + hw, *x3 = x2 + hw;
                float w0 = wo[i], w1 = wo[i + 1], w2 = wo[i + 2], w3 = wo[i + 3];
#pragma omp simd
                for (size_t p = 0; p < hw; p++) yo[p] += w0 * x0[p] + w1 * x1[p] + w2 * x2[p] + w3 * x3[p];
            }
            for (; i < x->c; i++) {
                const float *xi = x->d + (size_t)i * hw;
                for (size_t p = 0; p < hw; p++) yo[p] += wo[i] * xi[p];
            }
        }
    } else if (dw) {
        /* depthwise: per tap, the output range whose input index is inside the image */
        for (int c = 0; c < cout; c++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    float wv = W[((size_t)c * k + ky) * k + kx];
                    for (int yy = 0; yy < oh; yy++) {
                        int iy = yy * s + ky - pt;
                        if (iy < 0 || iy >= x->h) continue;
                        int x_lo = 0, x_hi = ow;
                        while (x_lo < ow && x_lo * s + kx - pl < 0) x_lo++;
                        while (x_hi > x_lo && (x_hi - 1) * s + kx - pl >= x->w) x_hi--;
                        float *yr = y.d + ((size_t)c * oh + yy) * ow;
                        const float *xr = x->d + ((size_t)c * x->h + iy) * x->w + (kx - pl);
#pragma omp simd
                        for (int xx = x_lo; xx < x_hi; xx++) yr[xx] += wv * xr[xx * s];
                    }
                }
    } else {
        for (int o = 0; o < cout; o++)
            for (int i = 0; i < x->c; i++)
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        float wv = W[(((size_t)o * x->c + i) * k + ky) * k + kx];
                        for (int yy = 0; yy < oh; yy++) {
                            int iy = yy * s + ky - pt;
                            if (iy < 0 || iy >= x->h) continue;
                            for (int xx = 0; xx < ow; xx++) {
                                int ix = xx * s + kx - pl;
                                if (ix < 0 || ix >= x->w) continue;
                                y.d[((size_t)o * oh + yy) * ow + xx] += wv * x->d[((size_t)i * x->h + iy) * x->w + ix];
                            }
                        }
                    }
    }
    /* BN in eval mode, written out from PyTorch's definition. */
    const float *g, *b, *mu, *var;
    snprintf(name, sizeof name, "%s.bn.weight", prefix);
    g = need(r, name, cout)->data;
    snprintf(name, sizeof name, "%s.bn.bias", prefix);
    b = need(r, name, cout)->data;
    snprintf(name, sizeof name, "%s.bn.running_mean", prefix);
    mu = need(r, name, cout)->data;
    snprintf(name, sizeof name, "%s.bn.running_var", prefix);
    var = need(r, name, cout)->data;
    for (int o = 0; o < cout; o++) {
        float inv = 1.0f / sqrtf(var[o] + IMPORT_BACKBONE_BN_EPS);
        for (size_t p = 0; p < hw; p++) y.d[o * hw + p] = (y.d[o * hw + p] - mu[o]) * inv * g[o] + b[o];
    }
    return y;
}

static void relu6(fmap *x) {
    size_t n = (size_t)x->c * x->h * x->w;
    for (size_t i = 0; i < n; i++) x->d[i] = x->d[i] < 0 ? 0 : x->d[i] > 6 ? 6 : x->d[i];
}

/* Returns the 1001 logits. Structure written independently of the importer's table. */
static float *forward(const import_backbone_result *r, fmap x) {
    static const int t_[7] = {1, 6, 6, 6, 6, 6, 6}, c_[7] = {16, 24, 32, 64, 96, 160, 320}, n_[7] = {1, 2, 3, 4, 3, 3, 1},
                     s_[7] = {1, 2, 2, 2, 1, 2, 1};
    /* torchvision group g -> pytorchcv stage: 16 ->1, 24 ->2, 32 ->3, 64/96 ->4, 160/320 ->5 */
    static const int stage_of[7] = {1, 2, 3, 4, 4, 5, 5};
    fmap h = conv(&x, r, "backbone.features.init_block", 32, 3, 2, 0);
    relu6(&h);
    int unit = 0, prev_stage = 0;
    for (int g = 0; g < 7; g++) {
        for (int i = 0; i < n_[g]; i++) {
            int S = stage_of[g];
            unit = S == prev_stage ? unit + 1 : 1;
            prev_stage = S;
            int stride = i == 0 ? s_[g] : 1, cin = h.c, mid = cin * t_[g];
            char p[96];
            fmap e = h;
            int own_e = 0;
            if (t_[g] != 1) {
                snprintf(p, sizeof p, "backbone.features.stage%d.unit%d.conv1", S, unit);
                e = conv(&h, r, p, mid, 1, 1, 0);
                relu6(&e);
                own_e = 1;
            }
            snprintf(p, sizeof p, "backbone.features.stage%d.unit%d.conv2", S, unit);
            fmap d = conv(&e, r, p, mid, 3, stride, 1);
            relu6(&d);
            if (own_e) free(e.d);
            snprintf(p, sizeof p, "backbone.features.stage%d.unit%d.conv3", S, unit);
            fmap o = conv(&d, r, p, c_[g], 1, 1, 0);
            free(d.d);
            if (stride == 1 && cin == c_[g])
                for (size_t k = 0; k < (size_t)o.c * o.h * o.w; k++) o.d[k] += h.d[k];
            free(h.d);
            h = o;
        }
    }
    fmap f = conv(&h, r, "backbone.features.final_block", 1280, 1, 1, 0);
    relu6(&f);
    free(h.d);
    double pooled[1280];
    size_t hw = (size_t)f.h * f.w;
    for (int c = 0; c < 1280; c++) {
        double s = 0;
        for (size_t q = 0; q < hw; q++) s += (double)f.d[c * hw + q];
        pooled[c] = s / (double)hw;
    }
    free(f.d);
    const import_backbone_param *W = import_backbone_find(r, "backbone.output.weight"), *B = import_backbone_find(r, "backbone.output.bias");
    if (!W || !B || W->shape[1] != 1280) {
        fprintf(stderr, "FAIL: classifier missing\n");
        exit(1);
    }
    int K = (int)W->shape[0];
    float *logits = malloc((size_t)K * sizeof *logits);
    for (int k = 0; k < K; k++) {
        double s = B->data[k];
        for (int c = 0; c < 1280; c++) s += (double)W->data[(size_t)k * 1280 + c] * pooled[c];
        logits[k] = (float)s;
    }
    return logits;
}

/* ---- checks ----------------------------------------------------------------------------------- */

static void check_layout(const tfl_model *m, const import_backbone_result *r, const char *file) {
    /* init conv = first CONV_2D; first depthwise = first DEPTHWISE_CONV_2D. */
    int ci = -1, di = -1;
    for (int i = 0; i < m->n_ops; i++) {
        if (ci < 0 && m->ops[i].opcode == TFL_OP_CONV_2D) ci = i;
        if (di < 0 && m->ops[i].opcode == TFL_OP_DEPTHWISE_CONV_2D) di = i;
    }
    int wt = m->ops[ci].inputs[1];
    float *src = malloc(32 * 27 * sizeof *src);
    tfl_dequantize(m, wt, src, 32 * 27);
    const import_backbone_param *p = import_backbone_find(r, "backbone.features.init_block.conv.weight");
    int ok = p && p->shape[0] == 32 && p->shape[1] == 3 && p->shape[2] == 3 && p->shape[3] == 3;
    int samples[4][4] = {{0, 0, 0, 0}, {5, 2, 1, 0}, {31, 1, 2, 2}, {17, 0, 2, 1}}; /* o, i, h, w */
    for (int s = 0; ok && s < 4; s++) {
        int o = samples[s][0], i = samples[s][1], h = samples[s][2], w = samples[s][3];
        ok = p->data[((o * 3 + i) * 3 + h) * 3 + w] == src[((o * 3 + h) * 3 + w) * 3 + i];
    }
    EXPECT(ok, "%s: init_block weight OIHW[o][i][h][w] == TFLite OHWI[o][h][w][i] on 4 samples", file);
    free(src);
    wt = m->ops[di].inputs[1];
    src = malloc(9 * 32 * sizeof *src);
    tfl_dequantize(m, wt, src, 9 * 32);
    p = import_backbone_find(r, "backbone.features.stage1.unit1.conv2.conv.weight");
    ok = p && p->shape[0] == 32 && p->shape[1] == 1 && p->shape[2] == 3 && p->shape[3] == 3;
    int ds[3][3] = {{0, 0, 0}, {7, 1, 2}, {31, 2, 0}}; /* c, h, w */
    for (int s = 0; ok && s < 3; s++) {
        int c = ds[s][0], h = ds[s][1], w = ds[s][2];
        ok = p->data[(c * 3 + h) * 3 + w] == src[(h * 3 + w) * 32 + c];
    }
    EXPECT(ok, "%s: stage1.unit1 depthwise (C,1,KH,KW)[c][0][h][w] == TFLite [0][h][w][c] on 3 samples", file);
    free(src);
    /* the folded bias goes to bn.bias: same values as the TFLite bias dequantised directly */
    int bt = m->ops[ci].inputs[2];
    float b[32];
    tfl_dequantize_bias(m, bt, m->ops[ci].inputs[0], m->ops[ci].inputs[1], b, 32);
    p = import_backbone_find(r, "backbone.features.init_block.bn.bias");
    ok = p && p->numel == 32 && !memcmp(p->data, b, sizeof b);
    EXPECT(ok, "%s: init_block bn.bias == dequantised TFLite conv bias", file);
}

static void check_names(const import_backbone_result *r, const char *file) {
    /* 52 convs x 5 tensors + classifier (2) */
    EXPECT(r->n == 52 * 5 + 2 && r->n_convs == 52 && r->n_classes == 1001, "%s: %d parameters, %d convs, %d classes (want 262, 52, 1001)",
          file, r->n, r->n_convs, r->n_classes);
    const char *must[] = {"backbone.features.stage1.unit1.conv3.conv.weight", "backbone.features.stage2.unit2.conv1.bn.running_var",
                          "backbone.features.stage4.unit7.conv3.conv.weight", "backbone.features.stage5.unit4.conv3.bn.bias"};
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= import_backbone_find(r, must[i]) != NULL;
    ok &= import_backbone_find(r, "backbone.features.stage1.unit1.conv1.conv.weight") == NULL;
    EXPECT(ok, "%s: expected names present, stage1.unit1.conv1 absent (torchvision variant)", file);
    const import_backbone_param *p = import_backbone_find(r, "backbone.features.stage5.unit4.conv3.conv.weight");
    EXPECT(p && p->shape[0] == 320 && p->shape[1] == 960 && p->shape[2] == 1 && p->shape[3] == 1,
          "%s: stage5.unit4.conv3 weight shape (320, 960, 1, 1)", file);
    p = import_backbone_find(r, "backbone.features.stage4.unit1.conv2.conv.weight");
    EXPECT(p && p->shape[0] == 192 && p->shape[1] == 1 && p->shape[2] == 3, "%s: stage4.unit1.conv2 depthwise shape (192, 1, 3, 3)", file);
    int bn_ok = 1;
    for (int i = 0; i < r->n; i++) {
        const char *n = r->p[i].name;
        size_t L = strlen(n);
        if (L > 10 && !strcmp(n + L - 10, "bn.running_mean"))
            for (int64_t k = 0; k < r->p[i].numel; k++) bn_ok &= r->p[i].data[k] == 0.0f;
        if (L > 9 && !strcmp(n + L - 9, "bn.weight"))
            for (int64_t k = 0; k < r->p[i].numel; k++) bn_ok &= r->p[i].data[k] == 1.0f;
        if (L > 14 && !strcmp(n + L - 14, "bn.running_var"))
            for (int64_t k = 0; k < r->p[i].numel; k++) bn_ok &= fabsf(1.0f / sqrtf(r->p[i].data[k] + 1e-5f) - 1.0f) <= 1.2e-7f;
    }
    EXPECT(bn_ok, "%s: every BN is gamma 1, mean 0 and 1/sqrt(var + 1e-5) == 1 within 1 ulp (eval-mode identity)", file);
}

static void check_bad_structure(tfl_model *m, const char *file) {
    import_backbone_result r;
    /* a weight with a wrong shape: swap O and I of the first projection conv's weight */
    int pi = -1, nconv = 0;
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].opcode == TFL_OP_CONV_2D && ++nconv == 2) pi = i;
    tfl_tensor *W = &m->tensors[m->ops[pi].inputs[1]];
    int save0 = W->shape[0], save3 = W->shape[3];
    W->shape[0] = save3, W->shape[3] = save0;
    int s = import_backbone_tflite(m, 1, &r);
    EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), "shape"), "%s: transposed weight shape -> error: %s", file, ote_errmsg());
    W->shape[0] = save0, W->shape[3] = save3;
    /* an ADD turned into MUL: the operator counts no longer match */
    int ai = -1;
    for (int i = 0; i < m->n_ops && ai < 0; i++)
        if (m->ops[i].opcode == TFL_OP_ADD) ai = i;
    m->ops[ai].opcode = TFL_OP_MUL;
    s = import_backbone_tflite(m, 1, &r);
    EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), "not a MobileNetV2"), "%s: 9 ADDs -> error: %s", file, ote_errmsg());
    m->ops[ai].opcode = TFL_OP_ADD;
    /* broken wiring: the residual ADD reads the wrong tensor */
    int save_in = m->ops[ai].inputs[0];
    m->ops[ai].inputs[0] = m->ops[ai].inputs[1];
    s = import_backbone_tflite(m, 1, &r);
    EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), "residual"), "%s: miswired residual ADD -> error: %s", file, ote_errmsg());
    m->ops[ai].inputs[0] = save_in;
    /* wrong stride on the first depthwise of stage 2 */
    int di = -1, nd = 0;
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].opcode == TFL_OP_DEPTHWISE_CONV_2D && ++nd == 2) di = i;
    m->ops[di].stride_w = m->ops[di].stride_h = 1;
    s = import_backbone_tflite(m, 1, &r);
    EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), "stride"), "%s: stride 1 where MobileNetV2 has 2 -> error: %s", file, ote_errmsg());
    m->ops[di].stride_w = m->ops[di].stride_h = 2;
    /* an omitted (-1) data input on the first conv */
    int ci = -1;
    for (int i = 0; i < m->n_ops && ci < 0; i++)
        if (m->ops[i].opcode == TFL_OP_CONV_2D) ci = i;
    save_in = m->ops[ci].inputs[0];
    m->ops[ci].inputs[0] = -1;
    s = import_backbone_tflite(m, 1, &r);
    EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), "omitted"), "%s: omitted conv input -> error: %s", file, ote_errmsg());
    m->ops[ci].inputs[0] = save_in;
    s = import_backbone_tflite(m, 1, &r);
    EXPECT(s == 0, "%s: restored model imports again", file);
    import_backbone_free(&r);
}

/* Corrupted files that still parse must import or fail with OTE_EPARSE, never crash: corrupt
 * bytes of the operator and tensor tables (outside buffer data and strings are not excluded;
 * the positions are random over the non-data part of the FlatBuffer). */
static void check_corrupt_import(const char *path) {
    tfl_model good;
    if (tfl_load(&good, path) < 0) {
        EXPECT(0, "cannot load %s", path);
        return;
    }
    size_t n = good.size;
    unsigned char *c = malloc(n), *is_data = calloc(n, 1);
    memcpy(c, good.file, n);
    for (int i = 0; i < good.n_buffers; i++)
        if (good.buffers[i].size) memset(is_data + (good.buffers[i].data - good.file), 1, good.buffers[i].size);
    tfl_free(&good);
    uint64_t st = 0x9E3779B97F4A7C15ull;
    int parsed = 0, imported = 0, errs = 0, other = 0;
    for (int it = 0; it < 400; it++) {
        size_t p;
        do {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            p = (size_t)(st >> 20) % n;
        } while (is_data[p]);
        unsigned char old = c[p];
        c[p] = (unsigned char)(st >> 52);
        tfl_model m;
        if (tfl_parse_view(&m, c, n, "corrupt") == 0) {
            parsed++;
            /* the import dequantises ~3.5M weights: do it for a subset only (ASan time) */
            if (parsed % 8 == 1) {
                import_backbone_result r;
                int s = import_backbone_tflite(&m, 1, &r);
                if (s == 0) imported++, import_backbone_free(&r);
                else if (s == OTE_EPARSE) errs++;
                else other++;
            }
            tfl_free(&m);
        }
        c[p] = old;
    }
    EXPECT(other == 0, "importer on corrupted files that still parse: %d imported, %d OTE_EPARSE, %d other (want 0 other); %d of 400 parsed",
          imported, errs, other, parsed);
    free(c);
    free(is_data);

    /* Graph-level mutations that keep the parser's invariants (tensor indices in [-1, n),
     * shapes of data-less tensors, operator codes and options): OK or OTE_EPARSE only. */
    tfl_model m;
    if (tfl_load(&m, path) < 0) return;
    imported = errs = other = 0;
    for (int it = 0; it < 150; it++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t rnd = st >> 11;
        tfl_op *op = &m.ops[rnd % (uint64_t)m.n_ops];
        tfl_op save = *op;
        int saved_in[4] = {0}, ti = -1, save_shape[TFL_MAX_DIMS];
        for (int k = 0; k < op->n_in && k < 4; k++) saved_in[k] = op->inputs[k];
        int save_out0 = op->n_out ? op->outputs[0] : 0;
        switch ((rnd >> 20) % 5) {
        case 0:
            if (op->n_in) op->inputs[(rnd >> 24) % (uint64_t)op->n_in] = (int)((rnd >> 30) % (uint64_t)(m.n_tensors + 1)) - 1;
            break;
        case 1:
            if (op->n_out) op->outputs[0] = (int)((rnd >> 30) % (uint64_t)m.n_tensors);
            break;
        case 2: {
            static const int codes[5] = {TFL_OP_CONV_2D, TFL_OP_DEPTHWISE_CONV_2D, TFL_OP_ADD, TFL_OP_FULLY_CONNECTED, TFL_OP_MEAN};
            op->opcode = codes[(rnd >> 24) % 5];
            break;
        }
        case 3:
            op->stride_w = (int)((rnd >> 24) % 4), op->padding = (int)((rnd >> 28) % 2), op->activation = (int)((rnd >> 30) % 4);
            op->depth_multiplier = (int)((rnd >> 33) % 3);
            break;
        default: { /* an activation tensor (no data) gets another shape */
            ti = (int)((rnd >> 24) % (uint64_t)m.n_tensors);
            size_t bytes;
            if (tfl_tensor_data(&m, ti, &bytes)) {
                ti = -1;
                break;
            }
            memcpy(save_shape, m.tensors[ti].shape, sizeof save_shape);
            if (m.tensors[ti].ndim) m.tensors[ti].shape[(rnd >> 30) % (uint64_t)m.tensors[ti].ndim] = (int)((rnd >> 34) % 2000);
        }
        }
        import_backbone_result r;
        int s = import_backbone_tflite(&m, (int)(rnd & 1), &r);
        if (s == 0) imported++, import_backbone_free(&r);
        else if (s == OTE_EPARSE) errs++;
        else other++;
        int *in = op->inputs, *out = op->outputs;
        *op = save;
        op->inputs = in, op->outputs = out;
        for (int k = 0; k < op->n_in && k < 4; k++) op->inputs[k] = saved_in[k];
        if (op->n_out) op->outputs[0] = save_out0;
        if (ti >= 0) memcpy(m.tensors[ti].shape, save_shape, sizeof save_shape);
    }
    EXPECT(other == 0 && errs > 50, "importer on 150 graph mutations: %d imported, %d OTE_EPARSE, %d other (want 0 other, > 50 errors)",
          imported, errs, other);
    tfl_free(&m);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress stays in order with stderr under ctest */
    const char *shared = getenv("OTE_SHARED");
    if (!shared) shared = "../shared";
    static const char *files[2] = {"tf2_mobilenet_v2_1.0_224_ptq.tflite", "mobilenet_v2_1.0_224_quant.tflite"};
    static const char *images[4] = {"cat", "bird", "grace_hopper", "dragonfly"};
    static const int want[4] = {286, 20, 653, 320}; /* README of the weights folder */
    fmap inputs[4];
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/weights/mobilenet_v2_1.0_224_tflite/testimages/%s.bmp", shared, images[i]);
        img im;
        if (read_bmp(path, &im) < 0) {
            printf("FAIL: cannot read %s\n", path);
            return 1;
        }
        inputs[i] = preprocess(&im, 224);
        free(im.rgb);
    }
    EXPECT((1.0f - IMPORT_BACKBONE_BN_EPS) + IMPORT_BACKBONE_BN_EPS == 1.0f, "float32 (1 - 1e-5) + 1e-5 == 1 exactly");
    for (int fi = 0; fi < 2; fi++) {
        char path[512];
        snprintf(path, sizeof path, "%s/weights/mobilenet_v2_1.0_224_tflite/%s", shared, files[fi]);
        tfl_model m;
        int s = tfl_load(&m, path);
        EXPECT(s == 0, "%s: parse (%s)", files[fi], s ? ote_errmsg() : "ok");
        if (s) continue;
        import_backbone_result r;
        s = import_backbone_tflite(&m, 1, &r);
        EXPECT(s == 0, "%s: import with classifier (%s)", files[fi], s ? ote_errmsg() : "ok");
        if (s) {
            tfl_free(&m);
            continue;
        }
        check_names(&r, files[fi]);
        check_layout(&m, &r, files[fi]);
        for (int i = 0; i < 4; i++) {
            float *lg = forward(&r, inputs[i]);
            int K = r.n_classes, best = 0;
            double mx = lg[0], z = 0;
            for (int k = 1; k < K; k++)
                if ((double)lg[k] > mx) mx = lg[k], best = k;
            for (int k = 0; k < K; k++) z += exp((double)lg[k] - mx);
            EXPECT(best == want[i], "%s: %s -> top-1 %d (p = %.4f), want %d", files[fi], images[i], best, 1.0 / z, want[i]);
            free(lg);
        }
        /* folding x/127.5 - 1 into init_block: the first feature map is unchanged except where
         * the conv reads padding (bottom row / right column for 224 inputs), and the classes
         * stay the same with x/255 input. Tolerance 1e-5 relative to max |y| (27-term float sums). */
        {
            fmap x01 = fm_new(3, 224, 224);
            for (size_t k = 0; k < (size_t)3 * 224 * 224; k++) x01.d[k] = (inputs[0].d[k] + 1.0f) * 0.5f;
            fmap y0 = conv(&inputs[0], &r, "backbone.features.init_block", 32, 3, 2, 0);
            s = import_backbone_fold_unit_input(&r);
            fmap y1 = conv(&x01, &r, "backbone.features.init_block", 32, 3, 2, 0);
            double ymax = 0, inner = 0, border = 0;
            for (int c = 0; c < 32; c++)
                for (int yy = 0; yy < 112; yy++)
                    for (int xx = 0; xx < 112; xx++) {
                        size_t k = ((size_t)c * 112 + yy) * 112 + xx;
                        double d = fabs((double)y0.d[k] - (double)y1.d[k]);
                        ymax = fmax(ymax, fabs(y0.d[k]));
                        if (yy < 111 && xx < 111) inner = fmax(inner, d);
                        else border = fmax(border, d);
                    }
            EXPECT(s == 0 && inner <= 1e-5 * ymax && border > 1e-3,
                  "%s: folded input range: first feature map max diff %.3g inside (tol %.3g), %.3g on the padded border",
                  files[fi], inner, 1e-5 * ymax, border);
            for (int i = 0; i < 4; i++) {
                fmap xi = fm_new(3, 224, 224);
                for (size_t k = 0; k < (size_t)3 * 224 * 224; k++) xi.d[k] = (inputs[i].d[k] + 1.0f) * 0.5f;
                float *lg = forward(&r, xi);
                free(xi.d);
                int best = 0;
                double mx = lg[0], z = 0;
                for (int k = 1; k < r.n_classes; k++)
                    if ((double)lg[k] > mx) mx = lg[k], best = k;
                for (int k = 0; k < r.n_classes; k++) z += exp((double)lg[k] - mx);
                EXPECT(best == want[i], "%s: folded, x/255 input: %s -> top-1 %d (p = %.4f), want %d", files[fi], images[i], best,
                      1.0 / z, want[i]);
                free(lg);
            }
            free(x01.d), free(y0.d), free(y1.d);
        }
        import_backbone_free(&r);
        s = import_backbone_tflite(&m, 0, &r);
        EXPECT(s == 0 && r.n == 51 * 5 && r.n_classes == 0 && !import_backbone_find(&r, "backbone.features.final_block.conv.weight"),
              "%s: import without classifier: %d parameters (want 255), no final_block/output", files[fi], r.n);
        import_backbone_free(&r);
        check_bad_structure(&m, files[fi]);
        tfl_free(&m);
    }
    {
        char path[512];
        snprintf(path, sizeof path, "%s/weights/mobilenet_v2_1.0_224_tflite/%s", shared, files[1]);
        check_corrupt_import(path);
    }
    for (int i = 0; i < 4; i++) free(inputs[i].d);
    return expect_finish();
}
