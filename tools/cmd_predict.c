/* cmd_predict.c - `ote predict` (test helper): runs a checkpoint over a COCO image set exactly as
 * `ote eval`'s model form does and writes the raw detections as a COCO results file, so tests can
 * compare them with the PyTorch reference (tests/test_weights_interop.py).
 *
 *   ote predict TEMPLATE --load-weights W --test-ann-files GT --test-data-roots D
 *               --save-detections OUT.json [params --model.input_size WxH ...]
 *
 * Settings: the template, then the checkpoint's model settings, then `params`. Exit codes as every
 * command: 0 ok, 1 runtime error (missing file, checkpoint not matching the model), 2 usage error.
 * Owns nothing beyond one call.
 */
#include <stdio.h>
#include <string.h>

#include "data/coco.h"
#include "data/eval.h"
#include "engine/pth.h"
#include "engine/status.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/trainer.h"
#include "train/weights.h"

static void cmd_predict_usage(FILE *f) {
    fprintf(f, "usage: ote predict TEMPLATE --load-weights W --test-ann-files GT --test-data-roots D\n"
               "                  --save-detections OUT.json [params --model.input_size WxH ...]\n\n"
               "(test helper) Writes the detector's detections (COCO results JSON, original-image\n"
               "coordinates) for every image of GT, computed as `ote eval` computes them.\n");
}

int cmd_predict(int argc, char **argv) {
    const char *tpl = NULL, *w = NULL, *ann = NULL, *roots = NULL, *out = NULL;
    int params_at = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            cmd_predict_usage(stdout);
            return 0;
        }
        if (!strcmp(o, "params")) {
            params_at = i;
            break;
        }
        const char **dst = NULL;
        if (o[0] != '-') {
            if (tpl) {
                fprintf(stderr, "ote predict: unexpected argument '%s'\n", o);
                return 2;
            }
            tpl = o;
            continue;
        }
        if (!strcmp(o, "--load-weights")) dst = &w;
        else if (!strcmp(o, "--test-ann-files")) dst = &ann;
        else if (!strcmp(o, "--test-data-roots")) dst = &roots;
        else if (!strcmp(o, "--save-detections")) dst = &out;
        else {
            fprintf(stderr, "ote predict: unknown option '%s' (see 'ote predict --help')\n", o);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ote predict: option %s needs a value\n", o);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!tpl || !w || !ann || !roots || !out) {
        fprintf(stderr, "ote predict: needs TEMPLATE, --load-weights, --test-ann-files, --test-data-roots and "
                        "--save-detections\n");
        return 2;
    }
    config_template cfg;
    if (config_load(&cfg, tpl) < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        return 2;
    }
    pth_ckpt c;
    pth_init(&c);
    int s = weights_read(w, &c);
    if (s >= 0) s = weights_config_to_template(&c, &cfg);
    pth_free(&c);
    if (s < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        return 1;
    }
    if (params_at && config_apply_params(&cfg, argc - params_at - 1, argv + params_at + 1) < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        return 2;
    }
    coco_dataset gt;
    if (coco_load(&gt, ann, roots) < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        return 1;
    }
    eval_dets dets;
    eval_dets_init(&dets);
    eval_report r;
    s = trainer_evaluate(&cfg, w, &gt, 0, &r, &dets);
    if (s >= 0) {
        eval_report_free(&r);
        s = eval_save_results(out, &gt, dets.d, dets.n);
    }
    if (s < 0) fprintf(stderr, "ote predict: %s\n", ote_errmsg());
    else printf("%d detections on %d images at %dx%d -> %s\n", dets.n, gt.n_images, cfg.input_w, cfg.input_h, out);
    eval_dets_free(&dets);
    coco_free(&gt);
    return s < 0 ? 1 : 0;
}
