/* bench_export.c - inference speed of an `ote export` model run by OpenCV dnn next to ote's own
 * engine (issue 16), images/s at batch 1, for each input size:
 *   engine: det_predict (BN-folded oneDNN forward + post-processing), as `ote eval` runs it;
 *   dnn:    onnx_model_predict (OpenCV dnn forward of the export + the same post-processing);
 *   and both forwards alone (det_forward_infer, onnx_model_head).
 * The detector has the template's architecture (torchvision variant, TF padding by default) with
 * random weights, or --load-weights W; 3 classes unless W says otherwise. The export goes to a
 * temporary folder. Prints figures only; never asserts a time.
 *   bench_export [--sizes 320x320,992x736] [--iters N (20)] [--threads T (0: all)]
 *                [--backbone pytorchcv|torchvision] [--tf-padding 0|1]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "train/export.h"
#include "train/onnx_model.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define TRY(x)                                                                        \
    do {                                                                              \
        if ((x) < 0) {                                                                \
            fprintf(stderr, "bench_export: %s failed: %s\n", #x, ote_errmsg());        \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

int main(int argc, char **argv) {
    const char *sizes = "320x320,992x736";
    int iters = 20, threads = 0, tf_pad = 1;
    det_backbone bb = DET_BACKBONE_TORCHVISION;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--sizes") && v) sizes = v, i++;
        else if (!strcmp(argv[i], "--iters") && v) iters = atoi(v), i++;
        else if (!strcmp(argv[i], "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(argv[i], "--tf-padding") && v) tf_pad = atoi(v), i++;
        else if (!strcmp(argv[i], "--backbone") && v) {
            bb = !strcmp(v, "pytorchcv") ? DET_BACKBONE_PYTORCHCV : DET_BACKBONE_TORCHVISION;
            i++;
        } else {
            fprintf(stderr, "usage: bench_export [--sizes WxH,...] [--iters N] [--threads T] "
                            "[--backbone pytorchcv|torchvision] [--tf-padding 0|1]\n");
            return 2;
        }
    }
    if (iters < 1) iters = 1;
    eng_ctx e;
    TRY(eng_init(&e, threads));
    det_cfg dc;
    memset(&dc, 0, sizeof dc);
    dc.num_classes = 3, dc.backbone = bb, dc.tf_padding = tf_pad, dc.seed = 1;
    detector *d;
    TRY(det_create(&d, &e, &dc));
    char dir[] = "/tmp/bench_export_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    printf("bench_export: batch 1, %d timed iterations after 2 warm-ups, %d thread(s) (0 = all), %s%s\n", iters,
           threads, bb == DET_BACKBONE_PYTORCHCV ? "pytorchcv" : "torchvision", tf_pad ? " + TF padding" : "");
    printf("%-9s %14s %14s %14s %14s\n", "size", "engine img/s", "dnn img/s", "engine fwd/s", "dnn fwd/s");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sizes);
    rng r;
    rng_seed(&r, 3);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int w, h;
        if (sscanf(tok, "%dx%d", &w, &h) != 2) {
            fprintf(stderr, "bench_export: bad size '%s'\n", tok);
            return 2;
        }
        float *img = malloc((size_t)3 * h * w * sizeof *img);
        if (!img) return 1;
        for (long i = 0; i < 3L * h * w; i++) img[i] = (float)rng_uniform(&r);
        char path[128];
        snprintf(path, sizeof path, "%s/model_%dx%d.onnx", dir, w, h);
        TRY(export_onnx(d, h, w, 0.35, NULL, path));
        onnx_model om;
        TRY(onnx_model_open(&om, path, threads));
        det_box boxes[100];
        det_box *outs[1] = {boxes};
        int n_out, ih = h, iw = w;
        float sc[4] = {1, 1, 1, 1};
        head_out ho[ANCHORS_LEVELS];
        double t[4];
        for (int k = 0; k < 4; k++) {
            for (int it = -2; it < iters; it++) {
                if (it == 0) t[k] = now();
                if (k == 0) TRY(det_predict(d, 1, h, w, img, &ih, &iw, sc, outs, &n_out, 100));
                if (k == 1) TRY(onnx_model_predict(&om, img, h, w, sc, boxes, &n_out, 100));
                if (k == 2) TRY(det_forward_infer(d, 1, h, w, img));
                if (k == 3) TRY(onnx_model_head(&om, img, ho));
            }
            t[k] = iters / (now() - t[k]);
        }
        printf("%-9s %14.2f %14.2f %14.2f %14.2f\n", tok, t[0], t[1], t[2], t[3]);
        fflush(stdout);
        onnx_model_close(&om);
        unlink(path);
        free(img);
    }
    rmdir(dir);
    det_free(d);
    eng_free(&e);
    return 0;
}
