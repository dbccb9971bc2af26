/* cmd_export.c - `ote export`: a trained checkpoint as an ONNX model (train/export.h).
 *
 *   ote export TEMPLATE --load-weights W --save-model-to DIR [params --model.input_size WxH ...]
 *
 * Settings as `ote eval` resolves them: the template, then the checkpoint's model settings
 * (input size, backbone, padding, confidence threshold), then `params`. Writes DIR/model.onnx,
 * DIR/label_schema.json and DIR/README.md. Exit codes: 0 ok, 2 usage error or bad input (unknown
 * option, a --load-weights that is not a detector checkpoint, an input size that is not a
 * multiple of 32, a DIR that cannot be created or written), 1 any other runtime failure. Every
 * error is one line on stderr; a failed run leaves no model.onnx (temporary file + rename).
 */
#include <stdio.h>
#include <string.h>

#include "io/pth.h"
#include "engine/ote.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/export.h"
#include "train/weights.h"

static void cmd_export_usage(FILE *f) {
    fprintf(f,
            "usage: ote export TEMPLATE --load-weights W --save-model-to DIR [params --model.input_size WxH ...]\n\n"
            "Writes the trained detector's BatchNorm-folded inference network as ONNX (opset %d) to\n"
            "DIR/model.onnx, with DIR/label_schema.json and DIR/README.md (input, outputs, pre-processing).\n"
            "Outputs are the raw per-level head maps (cls/reg/ctr for P3..P7); NMS is left to the caller\n"
            "(`ote eval TEMPLATE --load-weights DIR/model.onnx ...` runs it through OpenCV dnn).\n\n"
            "options:\n"
            "  --load-weights W      trained weights (weights.pth from `ote train`)\n"
            "  --save-model-to DIR   output folder (created if needed)\n"
            "  params ...            template overrides, e.g. --model.input_size 320x320 (multiples of 32)\n"
            "  -h, --help            this help\n",
            EXPORT_ONNX_OPSET);
}

int cmd_export(int argc, char **argv) {
    const char *tpl = NULL, *weights = NULL, *dir = NULL;
    int pargc = 0;
    char **pargv = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            cmd_export_usage(stdout);
            return 0;
        }
        if (!strcmp(o, "params") && tpl) {
            pargc = argc - i - 1;
            pargv = argv + i + 1;
            break;
        }
        if (o[0] != '-') {
            if (tpl) {
                fprintf(stderr, "ote export: unexpected argument '%s' (see 'ote export --help')\n", o);
                return 2;
            }
            tpl = o;
            continue;
        }
        const char **dst = NULL;
        if (!strcmp(o, "--load-weights")) dst = &weights;
        else if (!strcmp(o, "--save-model-to")) dst = &dir;
        else {
            fprintf(stderr, "ote export: unknown option '%s' (see 'ote export --help')\n", o);
            return 2;
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0' || !strncmp(argv[i + 1], "--", 2)) {
            fprintf(stderr, "ote export: option %s needs a value\n", o);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!tpl || !weights || !dir) {
        fprintf(stderr, "ote export: needs TEMPLATE, --load-weights W and --save-model-to DIR (see 'ote export --help')\n");
        return 2;
    }
    config_template cfg;
    int s = config_load(&cfg, tpl);
    if (s < 0) {
        fprintf(stderr, "ote export: %s%s\n", s == OTE_EIO ? "template not found or unreadable: " : "", ote_errmsg());
        return 2;
    }
    pth_ckpt c;
    pth_init(&c);
    s = weights_read(weights, &c);
    if (s >= 0) s = weights_config_to_template(&c, &cfg);
    if (s >= 0 && c.has_confidence_threshold) cfg.confidence_threshold = c.confidence_threshold;
    if (s < 0) {
        fprintf(stderr, "ote export: --load-weights: %s\n", ote_errmsg());
        pth_free(&c);
        return 2;
    }
    if (pargc && config_apply_params(&cfg, pargc, pargv) < 0) {
        fprintf(stderr, "ote export: %s\n", ote_errmsg());
        pth_free(&c);
        return 2;
    }
    s = export_run(&cfg, &c, weights, dir, 0, stdout);
    pth_free(&c);
    if (s < 0) {
        fprintf(stderr, "ote export: %s\n", ote_errmsg());
        return s == OTE_EINVAL || s == OTE_EIO ? 2 : 1;
    }
    return 0;
}
