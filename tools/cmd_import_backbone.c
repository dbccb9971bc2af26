/* cmd_import_backbone.c - `ote import-backbone FILE.tflite --save-model-to P [--keep-classifier]`.
 *
 * Reads an ImageNet MobileNetV2 1.0 TFLite file (io/tfl.h), maps it onto the
 * torchvision-variant backbone (train/import_backbone.h: names, layouts, the identity-BN choice)
 * and writes the PyTorch checkpoint import_backbone_to_ckpt builds, in our OTE layout:
 * {'model': state_dict, 'config': {...}, 'confidence_threshold', 'VERSION'}. The config records
 * what a consumer must know to reproduce the pretrained function: import.variant=torchvision,
 * import.padding=tf_same (asymmetric: a 3x3 stride-2 conv on an even input pads 0 top/left,
 * 1 bottom/right), import.input=rgb_minus1_to_1 (x / 127.5 - 1; or rgb_0_to_1 = x / 255 with
 * --input-range unit, see import_backbone_fold_unit_input), import.bn=identity_plus_bias,
 * import.source. P ending in ".pth" is the file; otherwise P is a directory that receives
 * weights.pth (DESIGN.md §6). The file is written atomically by pth_save.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/pth.h"
#include "engine/ote.h"
#include "io/tfl.h"
#include "tools/commands.h"
#include "train/import_backbone.h"

static void cmd_import_backbone_usage(FILE *f) {
    fprintf(f,
            "usage: ote import-backbone FILE.tflite --save-model-to OUT [--keep-classifier]\n"
            "                         [--input-range minus1_to_1|unit]\n\n"
            "Imports ImageNet MobileNetV2 1.0 weights from a TFLite file (int8/uint8/float) as the\n"
            "torchvision-variant backbone with mmdetection names (backbone.features.*).\n"
            "OUT ending in .pth is the checkpoint file; otherwise OUT is a directory that receives\n"
            "weights.pth. --keep-classifier also stores the final 1x1 conv (final_block) and the\n"
            "ImageNet classifier (backbone.output.*, 1001 classes incl. background).\n"
            "The weights expect TF 'SAME' (asymmetric) padding and RGB input mapped to [-1, 1]\n"
            "(x / 127.5 - 1, the default). --input-range unit folds that mapping into the first conv\n"
            "so the weights take x / 255 as the detector does (exact except at the first conv's\n"
            "padded bottom row / right column).\n");
}

static int cmd_import_backbone_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int cmd_import_backbone(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int keep = 0, unit = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cmd_import_backbone_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--save-model-to")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ote import-backbone: --save-model-to needs a value\n");
                return 2;
            }
            out = argv[++i];
        } else if (!strcmp(argv[i], "--input-range")) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "unit") && strcmp(argv[i + 1], "minus1_to_1"))) {
                fprintf(stderr, "ote import-backbone: --input-range needs 'unit' or 'minus1_to_1'\n");
                return 2;
            }
            unit = !strcmp(argv[++i], "unit");
        } else if (!strcmp(argv[i], "--keep-classifier")) {
            keep = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "ote import-backbone: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else if (!in) {
            in = argv[i];
        } else {
            fprintf(stderr, "ote import-backbone: unexpected argument '%s' (one input file)\n", argv[i]);
            return 2;
        }
    }
    if (!in || !out || !*out) {
        fprintf(stderr, "ote import-backbone: need FILE.tflite and --save-model-to OUT (see --help)\n");
        return 2;
    }
    char path[4096];
    if (cmd_import_backbone_ends_with(out, ".pth")) {
        snprintf(path, sizeof path, "%s", out);
    } else {
        if (mkdir(out, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "ote import-backbone: %s: cannot create directory: %s\n", out, strerror(errno));
            return 1;
        }
        snprintf(path, sizeof path, "%s/weights.pth", out);
    }

    tfl_model m;
    int s = tfl_load(&m, in);
    if (s < 0) {
        fprintf(stderr, "ote import-backbone: %s\n", ote_errmsg());
        return 1;
    }
    import_backbone_result r;
    s = import_backbone_tflite(&m, keep, &r);
    tfl_free(&m);
    if (s == 0 && unit) {
        s = import_backbone_fold_unit_input(&r);
        if (s < 0) import_backbone_free(&r);
    }
    if (s < 0) {
        fprintf(stderr, "ote import-backbone: %s\n", ote_errmsg());
        return 1;
    }
    pth_ckpt c;
    const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
    s = import_backbone_to_ckpt(&r, base, unit, &c);
    if (s == 0) s = pth_save(path, &c);
    if (s < 0) {
        fprintf(stderr, "ote import-backbone: %s\n", ote_errmsg());
        pth_free(&c);
        import_backbone_free(&r);
        return 1;
    }
    printf("imported %d convs (%zu tensors%s) from %s -> %s\n", r.n_convs, c.n_tensors, keep ? ", classifier kept" : "", in, path);
    pth_free(&c);
    import_backbone_free(&r);
    return 0;
}
