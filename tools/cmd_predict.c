/* cmd_predict.c - `ote predict`: a trained model on image files or folders, with the boxes drawn
 * and/or the detections written as a COCO results file (train/predict.h does the work).
 *
 *   ote predict TEMPLATE --load-weights W --images PATH... [--save-images DIR]
 *               [--save-detections F.json] [--score-threshold X] [params --model.input_size WxH ...]
 *   ote predict TEMPLATE --load-weights W --test-ann-files GT --test-data-roots D [...]   (COCO
 *               images; their ground truth is drawn too)
 *
 * Settings: the template, then the checkpoint's model settings and confidence threshold, then
 * `params`. Options as cmd_train.c parses them (argparse-like: `--opt value`, `--opt=value`,
 * unambiguous prefixes). Exit codes: 0 every image predicted; 1 some image could not be read or
 * written (one line each, the others are still done), or a runtime error (a checkpoint that does
 * not fit the model, bad annotation JSON); 2 usage error or an input missing, all checked before
 * any work (template, weights file, an --images folder without images, unwritable outputs).
 * Owns nothing beyond one call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/coco.h"
#include "io/pth.h"
#include "engine/ote.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/predict.h"
#include "train/trainer.h"
#include "train/weights.h"

enum { PR_LOAD, PR_IMAGES, PR_ANN, PR_ROOTS, PR_SAVE_IMAGES, PR_SAVE_DETS, PR_THR, PR_HELP, PR_N };

static const char *const cmd_predict_opts[PR_N] = {
    "--load-weights",    "--images",          "--test-ann-files",  "--test-data-roots",
    "--save-images",     "--save-detections", "--score-threshold", "--help",
};

static void cmd_predict_usage(FILE *f) {
    fprintf(f,
            "usage: ote predict TEMPLATE --load-weights W --images PATH... [--save-images DIR]\n"
            "                   [--save-detections F.json] [--score-threshold X] [params ...]\n"
            "       ote predict TEMPLATE --load-weights W --test-ann-files GT --test-data-roots D\n"
            "                   [--save-images DIR] [--save-detections F.json] [params ...]\n\n"
            "Runs a trained detector on images and writes them with their boxes, class names and\n"
            "scores drawn, and/or the detections as a COCO results file. Detections are computed\n"
            "exactly as `ote eval` computes them (the input size stored in the checkpoint).\n\n"
            "options:\n"
            "  TEMPLATE                model template (the one the weights were trained with)\n"
            "  --load-weights W        trained weights; class names from the label_schema.json beside\n"
            "                          them (DIR/label_schema.json, or DIR/X.label_schema.json for X.pth);\n"
            "                          or DIR/model.onnx from `ote export`, run by OpenCV dnn\n"
            "  --images PATH...        image files and/or folders (a folder: its .jpg .jpeg .png .bmp\n"
            "                          .tif .tiff .webp files, sorted by name)\n"
            "  --test-ann-files GT     instead of --images: the images of COCO annotations, whose\n"
            "  --test-data-roots D     ground truth is drawn too (green; a key strip below each image)\n"
            "  --save-images DIR       drawn images, same size and file name as the inputs (created)\n"
            "  --save-detections F     COCO results JSON [{image_id, category_id, bbox, score}] with every\n"
            "                          detection; with --images, image_id is the image's position in\n"
            "                          the list (from 1)\n"
            "  --score-threshold X     draw boxes with score >= X (default: the checkpoint's confidence\n"
            "                          threshold)\n"
            "  -h, --help              this help\n\n"
            "params: as `ote train` (e.g. --model.input_size WxH to predict at another size).\n"
            "Exit codes: 0 all images done; 1 some image could not be read or written (one line each;\n"
            "the others are done) or a runtime error; 2 usage error or a missing input.\n");
}

typedef struct cmd_predict_args {
    const char *template_path;
    const char *v[PR_N];
    const char **images; /* --images values (pointers into argv) */
    int n_images;
    int params_at;       /* argv index of the word `params`, 0 if none */
} cmd_predict_args;

/* argparse-like lookup: exact name or unambiguous prefix; -1 unknown, -2 ambiguous (printed). */
static int cmd_predict_find_opt(const char *arg, size_t len) {
    int found = -1, n = 0;
    for (int i = 0; i < PR_N; i++) {
        if (strlen(cmd_predict_opts[i]) == len && !strncmp(cmd_predict_opts[i], arg, len)) return i;
        if (len > 2 && !strncmp(cmd_predict_opts[i], arg, len)) {
            found = i;
            n++;
        }
    }
    if (n > 1) {
        fprintf(stderr, "ote predict: ambiguous option: %.*s could match", (int)len, arg);
        for (int i = 0, k = 0; i < PR_N; i++)
            if (!strncmp(cmd_predict_opts[i], arg, len)) fprintf(stderr, "%s %s", k++ ? "," : "", cmd_predict_opts[i]);
        fprintf(stderr, "\n");
        return -2;
    }
    return found;
}

static int cmd_predict_is_word(const char *s) { return strncmp(s, "--", 2) != 0 && strcmp(s, "params") != 0; }

/* 0 go on, 1 help shown, 2 usage error (printed). */
static int cmd_predict_parse(int argc, char **argv, cmd_predict_args *a) {
    memset(a, 0, sizeof *a);
    a->images = calloc((size_t)argc, sizeof *a->images);
    if (!a->images) {
        fprintf(stderr, "ote predict: out of memory\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "params")) {
            a->params_at = i;
            break;
        }
        if (!strcmp(o, "-h")) {
            cmd_predict_usage(stdout);
            return 1;
        }
        if (strncmp(o, "--", 2) != 0 || o[2] == '\0') {
            if (o[0] == '-' && o[1] != '\0') {
                fprintf(stderr, "ote predict: unknown option '%s' (see 'ote predict --help')\n", o);
                return 2;
            }
            if (a->template_path) {
                fprintf(stderr, "ote predict: unexpected argument '%s' (see 'ote predict --help')\n", o);
                return 2;
            }
            a->template_path = o;
            continue;
        }
        const char *eq = strchr(o, '=');
        size_t len = eq ? (size_t)(eq - o) : strlen(o);
        int k = cmd_predict_find_opt(o, len);
        if (k == -2) return 2;
        if (k < 0) {
            fprintf(stderr, "ote predict: unknown option '%.*s' (see 'ote predict --help')\n", (int)len, o);
            return 2;
        }
        if (k == PR_HELP) {
            cmd_predict_usage(stdout);
            return 1;
        }
        if (k == PR_IMAGES) { /* one or more values, as argparse's nargs='+' */
            int before = a->n_images;
            if (eq && eq[1]) a->images[a->n_images++] = eq + 1;
            while (!eq && i + 1 < argc && cmd_predict_is_word(argv[i + 1])) a->images[a->n_images++] = argv[++i];
            if (a->n_images == before) {
                fprintf(stderr, "ote predict: option --images needs at least one file or folder\n");
                return 2;
            }
            continue;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc || !cmd_predict_is_word(argv[i + 1])) {
                fprintf(stderr, "ote predict: option %s needs a value\n", cmd_predict_opts[k]);
                return 2;
            }
            val = argv[++i];
        }
        if (!*val) {
            fprintf(stderr, "ote predict: option %s: empty value\n", cmd_predict_opts[k]);
            return 2;
        }
        a->v[k] = val;
    }
    if (!a->template_path) {
        fprintf(stderr, "ote predict: missing TEMPLATE (see 'ote predict --help')\n");
        return 2;
    }
    if (!a->v[PR_LOAD]) {
        fprintf(stderr, "ote predict: missing required option --load-weights (see 'ote predict --help')\n");
        return 2;
    }
    const int coco_form = a->v[PR_ANN] || a->v[PR_ROOTS];
    if (a->n_images && coco_form) {
        fprintf(stderr, "ote predict: give either --images or --test-ann-files/--test-data-roots, not both\n");
        return 2;
    }
    if (!a->n_images && !coco_form) {
        fprintf(stderr, "ote predict: missing --images PATH... (or --test-ann-files and --test-data-roots)\n");
        return 2;
    }
    if (coco_form && (!a->v[PR_ANN] || !a->v[PR_ROOTS])) {
        fprintf(stderr, "ote predict: --test-ann-files and --test-data-roots go together\n");
        return 2;
    }
    if (!a->v[PR_SAVE_IMAGES] && !a->v[PR_SAVE_DETS]) {
        fprintf(stderr, "ote predict: nothing to write: give --save-images DIR and/or --save-detections F.json\n");
        return 2;
    }
    return 0;
}

/* The settings (template, checkpoint, params) and the class names; 0, or the exit code (printed). */
static int cmd_predict_setup(int argc, char **argv, const cmd_predict_args *a, predict_opts *o, coco_dataset *ds) {
    memset(o, 0, sizeof *o);
    int s = config_load(&o->cfg, a->template_path);
    if (s < 0) {
        fprintf(stderr, "ote predict: %s%s\n", s == OTE_EIO ? "template not found or unreadable: " : "", ote_errmsg());
        return 2;
    }
    const char *w = a->v[PR_LOAD];
    if (access(w, R_OK) != 0) {
        fprintf(stderr, "ote predict: --load-weights: cannot read %s\n", w);
        return 2;
    }
    pth_ckpt c;
    pth_init(&c);
    s = trainer_model_settings(w, &o->cfg, &c);
    if (s < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        pth_free(&c);
        return 1;
    }
    if (a->params_at && config_apply_params(&o->cfg, argc - a->params_at - 1, argv + a->params_at + 1) < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        pth_free(&c);
        return 2;
    }
    o->weights = w;
    o->score_thr = o->cfg.confidence_threshold;
    if (a->v[PR_THR]) {
        char *end;
        o->score_thr = strtod(a->v[PR_THR], &end);
        if (end == a->v[PR_THR] || *end || !(o->score_thr >= 0 && o->score_thr <= 1)) {
            fprintf(stderr, "ote predict: --score-threshold '%s': expected a number in [0, 1]\n", a->v[PR_THR]);
            pth_free(&c);
            return 2;
        }
    }
    o->save_images = a->v[PR_SAVE_IMAGES];
    o->save_detections = a->v[PR_SAVE_DETS];
    o->log = stdout;
    o->err = stderr;
    o->err_prefix = "ote predict: ";
    int rc = 0;
    const char *names_from = "the annotations";
    if (a->n_images) {
        predict_files files;
        coco_dataset labels;
        memset(&labels, 0, sizeof labels);
        int from_schema = 0;
        if (predict_expand(a->images, a->n_images, &files) < 0) {
            fprintf(stderr, "ote predict: %s\n", ote_errmsg());
            rc = 2;
        } else {
            if (predict_labels(w, &c, &labels, &from_schema) < 0 || predict_dataset_of_files(&files, &labels, ds) < 0) {
                fprintf(stderr, "ote predict: %s\n", ote_errmsg());
                rc = 1;
            }
            predict_files_free(&files);
        }
        coco_free(&labels);
        names_from = from_schema ? "label_schema.json" : "none found: numbered";
    } else {
        o->draw_gt = 1;
        if (coco_load(ds, a->v[PR_ANN], a->v[PR_ROOTS]) < 0) {
            fprintf(stderr, "ote predict: %s\n", ote_errmsg());
            rc = 1;
        } else {
            char warn[1024];
            if (coco_warning_summary(ds, warn, sizeof warn) > 0) fprintf(stderr, "ote predict: warning: %s\n", warn);
        }
    }
    pth_free(&c);
    if (rc) return rc;
    if (predict_check_outputs(o, ds) < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        coco_free(ds);
        return 2;
    }
    printf("model %s at input size %dx%d, %d classes (names: %s); %d images; drawing scores >= %.3g\n", w,
           o->cfg.input_w, o->cfg.input_h, ds->n_cats, names_from, ds->n_images, o->score_thr);
    fflush(stdout);
    return 0;
}

int cmd_predict(int argc, char **argv) {
    cmd_predict_args a;
    int u = cmd_predict_parse(argc, argv, &a);
    if (u) {
        free(a.images);
        return u == 1 ? 0 : 2;
    }
    predict_opts o;
    coco_dataset ds;
    memset(&ds, 0, sizeof ds);
    int rc = cmd_predict_setup(argc, argv, &a, &o, &ds);
    free(a.images);
    if (rc) return rc;
    predict_summary sum;
    int s = predict_run(&o, &ds, &sum);
    if (s < 0) {
        fprintf(stderr, "ote predict: %s\n", ote_errmsg());
        coco_free(&ds);
        return 1;
    }
    printf("predicted %d of %d images in %.1f s", sum.n_ok, sum.n_images, sum.seconds);
    if (sum.n_failed) printf(" (%d failed, named above)", sum.n_failed);
    printf(": %ld boxes drawn (score >= %.3g) of %ld detections", sum.n_drawn, o.score_thr, sum.n_dets);
    if (o.save_images) printf("; images in %s/", o.save_images);
    if (o.save_detections) printf("; detections in %s", o.save_detections);
    printf("\n");
    coco_free(&ds);
    return sum.n_failed ? 1 : 0;
}
