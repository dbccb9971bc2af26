/* test_train_export.c - the ONNX export (train/export.h) against the engine's own inference.
 *
 * For both backbone variants (pytorchcv with symmetric padding; torchvision with TF SAME padding,
 * the template default) a small detector gets non-trivial parameters everywhere the export folds
 * or reshapes them (BN running statistics and affine, GN affine, head biases, per-level Scales),
 * is exported at 128x96 (P7 is 1x1) and run through OpenCV dnn (train/onnx_model.h). Every one
 * of the 15 outputs must match the engine's eval-mode head outputs (det_forward_infer) on the same
 * image to max |diff| <= 1e-4 * max |engine output| of that tensor; the detections after the
 * shared post-processing must agree too. Also: the metadata round trip, an input size that is not
 * a multiple of 32 (OTE_EINVAL, no file), a file that is not ONNX (OTE_EPARSE), an unwritable path
 * (OTE_EIO, nothing left behind).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "engine/tensor.h"
#include "tests/expect.h"
#include "train/export.h"
#include "train/onnx_model.h"

#define H 96
#define W 128
#define NCLS 3

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Non-trivial values where the export does something other than copy the conv weights. */
static void perturb(detector *d, rng *r) {
    for (int i = 0; i < det_n_params(d); i++) {
        const det_param_info *p = det_param(d, i);
        if (p->is_int64) continue;
        size_t n = 1;
        for (int k = 0; k < p->ndim; k++) n *= (size_t)p->shape[k];
        float *v = malloc(n * sizeof *v);
        REQUIRE_OK(det_param_get(d, i, v));
        int changed = 1;
        for (size_t j = 0; j < n; j++) {
            float u = (float)rng_uniform(r);
            if (ends_with(p->name, "running_var")) v[j] = 0.5f + 1.5f * u;
            else if (ends_with(p->name, "running_mean")) v[j] = 0.2f * (u - 0.5f);
            else if (ends_with(p->name, "bn.weight") || ends_with(p->name, "gn.weight") ||
                     ends_with(p->name, ".scale"))
                v[j] = 0.5f + u;
            else if (ends_with(p->name, "bn.bias") || ends_with(p->name, "gn.bias")) v[j] = 0.4f * (u - 0.5f);
            else if (!strcmp(p->name, "bbox_head.atss_cls.bias")) v[j] = 0.5f + u; /* scores above 0.05: boxes */
            else if (ends_with(p->name, ".bias")) v[j] += 0.2f * (u - 0.5f);
            else changed = 0;
        }
        if (changed) REQUIRE_OK(det_param_set(d, i, v));
        free(v);
    }
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

static double worst_rel = 0; /* over every output of every variant */

static void run_variant(eng_ctx *e, const char *dir, det_backbone bb, int tf_pad, const char *label) {
    det_cfg dc;
    memset(&dc, 0, sizeof dc);
    dc.num_classes = NCLS, dc.backbone = bb, dc.tf_padding = tf_pad, dc.seed = 7;
    detector *d;
    REQUIRE_OK(det_create(&d, e, &dc));
    rng r;
    rng_seed(&r, 11);
    perturb(d, &r);
    float *img = malloc((size_t)3 * H * W * sizeof *img);
    for (int i = 0; i < 3 * H * W; i++) img[i] = (float)rng_uniform(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, label);
    int s = export_onnx(d, H, W, 0.25, "{\"labels\": []}", path);
    EXPECT(s == 0, "%s: export_onnx writes %s (%s)", label, path, s ? ote_errmsg() : "");
    if (s) {
        free(img), det_free(d);
        return;
    }
    export_meta m;
    s = export_read_meta(path, &m);
    EXPECT(s == 0 && m.num_classes == NCLS && m.input_w == W && m.input_h == H && m.confidence_threshold == 0.25,
           "%s: metadata round trip (%d classes, %dx%d, threshold %g)", label, m.num_classes, m.input_w, m.input_h,
           m.confidence_threshold);

    REQUIRE_OK(det_forward_infer(d, 1, H, W, img));
    anchor_grid g;
    head_out ref[ANCHORS_LEVELS];
    REQUIRE_OK(det_last_head(d, &g, ref, NULL));
    onnx_model om;
    s = onnx_model_open(&om, path, 1);
    EXPECT(s == 0, "%s: OpenCV dnn imports the export (%s)", label, s ? ote_errmsg() : "");
    if (s) {
        onnx_model_close(&om), free(img), det_free(d);
        return;
    }
    head_out got[ANCHORS_LEVELS];
    s = onnx_model_head(&om, img, got);
    EXPECT(s == 0, "%s: OpenCV dnn forward (%s)", label, s ? ote_errmsg() : "");
    if (s == 0) {
        double vmax = 0;
        for (int i = 0; i < EXPORT_N_OUTPUTS; i++) {
            int l = i % ANCHORS_LEVELS, kind = i / ANCHORS_LEVELS;
            int C = kind == 0 ? NCLS : kind == 1 ? 4 : 1, hl = g.h[l], wl = g.w[l];
            const float *rb = kind == 0 ? ref[l].cls : kind == 1 ? ref[l].reg : ref[l].ctr;
            const float *gp = kind == 0 ? got[l].cls : kind == 1 ? got[l].reg : got[l].ctr;
            size_t n = (size_t)C * hl * wl;
            float *plain = malloc(n * sizeof *plain);
            for (int c = 0; c < C; c++)
                for (int y = 0; y < hl; y++)
                    for (int x = 0; x < wl; x++)
                        plain[((size_t)c * hl + y) * wl + x] = rb[blk_off(C, hl, wl, ref[l].blk, 0, c, y, x)];
            double scale = max_abs(plain, n), diff = 0;
            for (size_t j = 0; j < n; j++) diff = fmax(diff, fabs((double)plain[j] - (double)gp[j]));
            double rel = diff / fmax(scale, 1e-12);
            worst_rel = fmax(worst_rel, rel);
            vmax = fmax(vmax, rel);
            EXPECT(rel <= 1e-4 && scale > 0, "%s: %s (1x%dx%dx%d): max |diff| %.3g, scale %.3g, relative %.2e <= 1e-4",
                   label, export_output_name(i), C, hl, wl, diff, scale, rel);
            free(plain);
        }
        printf("%s: max relative output difference %.3e\n", label, vmax);
    }
    /* the same detections through the shared post-processing; scores that differ by ~1e-6 may swap
     * the NMS order of two near-equal boxes, so boxes are matched, not compared by position */
    det_box eb[100], ob[100];
    det_box *eo[1] = {eb};
    int ne = 0, no = 0, ih = H, iw = W, matched = 0;
    float sc[4] = {1, 1, 1, 1};
    REQUIRE_OK(det_predict(d, 1, H, W, img, &ih, &iw, sc, eo, &ne, 100));
    s = onnx_model_predict(&om, img, H, W, sc, ob, &no, 100);
    for (int k = 0; s == 0 && k < ne; k++)
        for (int j = 0; j < no; j++)
            if (eb[k].label == ob[j].label && fabsf(eb[k].x1 - ob[j].x1) < 1e-2f && fabsf(eb[k].y1 - ob[j].y1) < 1e-2f &&
                fabsf(eb[k].x2 - ob[j].x2) < 1e-2f && fabsf(eb[k].y2 - ob[j].y2) < 1e-2f &&
                fabsf(eb[k].score - ob[j].score) < 1e-4f) {
                matched++;
                break;
            }
    EXPECT(s == 0 && ne >= 20 && abs(ne - no) <= 2 && matched >= ne - 2,
           "%s: detections after post-processing agree (%d engine boxes, %d ONNX, %d matched)", label, ne, no, matched);
    onnx_model_close(&om);
    free(img);
    det_free(d);
}

int main(void) {
    char dir[] = "/tmp/test_train_export_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    eng_ctx e;
    REQUIRE_OK(eng_init(&e, 1));
    run_variant(&e, dir, DET_BACKBONE_PYTORCHCV, 0, "pytorchcv");
    run_variant(&e, dir, DET_BACKBONE_TORCHVISION, 1, "torchvision_tfpad");
    printf("max relative output difference over all variants: %.3e\n", worst_rel);

    /* bad input */
    det_cfg dc;
    memset(&dc, 0, sizeof dc);
    dc.num_classes = 2;
    detector *d;
    REQUIRE_OK(det_create(&d, &e, &dc));
    char path[600];
    snprintf(path, sizeof path, "%s/bad.onnx", dir);
    struct stat st;
    int s = export_onnx(d, 100, 128, 0.3, NULL, path);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "128x100") && stat(path, &st) != 0,
           "height 100: OTE_EINVAL naming the size, no file (%s)", ote_errmsg());
    snprintf(path, sizeof path, "%s/no_such_dir/m.onnx", dir);
    s = export_onnx(d, 64, 64, 0.3, NULL, path);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()); /* io/atomic.h's temporary */
    EXPECT(s == OTE_EIO && stat(path, &st) != 0 && stat(tmp, &st) != 0,
           "unwritable path: OTE_EIO, nothing left (%s)", ote_errmsg());
    snprintf(path, sizeof path, "%s/not_onnx.onnx", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not a protobuf\n", f);
    fclose(f);
    export_meta m;
    s = export_read_meta(path, &m);
    EXPECT(s == OTE_EPARSE, "a text file: OTE_EPARSE (%s)", ote_errmsg());
    det_free(d);
    eng_free(&e);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    return expect_finish();
}
