/* cmd_eval.c - `ote eval`: score detections against COCO ground truth with mmdet's VOC-style
 * mAP@0.5 and pycocotools' 12 COCO bbox stats.
 *
 *   ote eval --test-ann-files GT.json --detections RESULTS.json [--save-performance F.json]
 *   ote eval TEMPLATE --load-weights W --test-ann-files GT --test-data-roots D [params ...]
 *
 * The detection form reads a COCO results file. The model form runs the trained detector through
 * train/trainer.c's evaluation (the same code that validates during training). Exit codes: 0 ok,
 * 1 runtime error (missing file, malformed JSON, checkpoint not matching), 2 usage error.
 * Every error is one line on stderr. Owns nothing beyond one call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/coco.h"
#include "data/eval.h"
#include "engine/ote.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/trainer.h"
#include "train/weights.h"

typedef struct cmd_eval_args {
    const char *template_path;   /* positional; model form only */
    const char *ann_files;       /* --test-ann-files (comma-separated) */
    const char *data_roots;      /* --test-data-roots */
    const char *detections;      /* --detections */
    const char *weights;         /* --load-weights */
    const char *save_performance;
    eval_crowd_mode crowd;
    int max_dets[3];
    int params_argc;             /* model form: the words after `params` */
    char **params_argv;
} cmd_eval_args;

static void cmd_eval_usage(FILE *f) {
    fprintf(f,
            "usage: ote eval --test-ann-files GT.json --detections RESULTS.json\n"
            "                [--save-performance F.json] [--crowd absent|ignored]\n"
            "                [--coco-max-dets A,B,C]\n"
            "       ote eval TEMPLATE --load-weights W --test-ann-files GT --test-data-roots D\n"
            "                [--save-performance F.json] [params --model.input_size WxH ...]\n\n"
            "Scores detections against COCO-format ground truth and prints mmdetection's VOC-style\n"
            "mAP@0.5 (eval_map, 'area' AP: OTE's validation mAP) and the 12 pycocotools COCO bbox stats.\n\n"
            "options:\n"
            "  --test-ann-files F[,F2]  ground-truth COCO JSON file(s)\n"
            "  --detections R           COCO results JSON: [{image_id, category_id, bbox [x,y,w,h], score}]\n"
            "  --save-performance F     write {\"voc_map_050\", \"coco_stats\", ...} as JSON to F\n"
            "  --crowd absent|ignored   VOC mAP: crowd gts left out as mmdet's CocoDataset does (default),\n"
            "                           or passed as ignored gts\n"
            "  --coco-max-dets A,B,C    COCO maxDets (default 1,10,100; mmdet uses 100,300,1000)\n"
            "  --test-data-roots D      image root(s) (model form)\n"
            "  --load-weights W         trained weights (model form): weights.pth, or a model.onnx from\n"
            "                           `ote export` (run by OpenCV dnn at its exported input size)\n"
            "  -h, --help               this help\n");
}

/* Returns 0 to go on, 1 after --help, 2 (with one line printed) on a usage error. */
static int cmd_eval_parse(int argc, char **argv, cmd_eval_args *a) {
    memset(a, 0, sizeof *a);
    a->crowd = EVAL_CROWD_ABSENT;
    a->max_dets[0] = 1;
    a->max_dets[1] = 10;
    a->max_dets[2] = 100;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            cmd_eval_usage(stdout);
            return 1;
        }
        if (!strcmp(o, "params") && a->template_path) {
            a->params_argc = argc - i - 1;
            a->params_argv = argv + i + 1;
            break;
        }
        if (o[0] != '-') {
            if (a->template_path) {
                fprintf(stderr, "ote eval: unexpected argument '%s' (see 'ote eval --help')\n", o);
                return 2;
            }
            a->template_path = o;
            continue;
        }
        const char **dst = NULL;
        const char *crowd = NULL, *md = NULL;
        if (!strcmp(o, "--test-ann-files")) dst = &a->ann_files;
        else if (!strcmp(o, "--test-data-roots")) dst = &a->data_roots;
        else if (!strcmp(o, "--detections")) dst = &a->detections;
        else if (!strcmp(o, "--load-weights")) dst = &a->weights;
        else if (!strcmp(o, "--save-performance")) dst = &a->save_performance;
        else if (!strcmp(o, "--crowd")) dst = &crowd;
        else if (!strcmp(o, "--coco-max-dets")) dst = &md;
        else {
            fprintf(stderr, "ote eval: unknown option '%s' (see 'ote eval --help')\n", o);
            return 2;
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0' || !strncmp(argv[i + 1], "--", 2)) {
            fprintf(stderr, "ote eval: option %s needs a value\n", o);
            return 2;
        }
        *dst = argv[++i];
        if (crowd) {
            if (!strcmp(crowd, "absent")) a->crowd = EVAL_CROWD_ABSENT;
            else if (!strcmp(crowd, "ignored")) a->crowd = EVAL_CROWD_IGNORED;
            else {
                fprintf(stderr, "ote eval: --crowd '%s': expected absent or ignored\n", crowd);
                return 2;
            }
        }
        if (md) {
            char tail;
            if (sscanf(md, "%d,%d,%d%c", &a->max_dets[0], &a->max_dets[1], &a->max_dets[2], &tail) != 3 ||
                a->max_dets[0] < 1 || a->max_dets[1] <= a->max_dets[0] || a->max_dets[2] <= a->max_dets[1]) {
                fprintf(stderr, "ote eval: --coco-max-dets '%s': expected three increasing positive integers A,B,C\n", md);
                return 2;
            }
        }
    }
    if (!a->ann_files) {
        fprintf(stderr, "ote eval: missing --test-ann-files (see 'ote eval --help')\n");
        return 2;
    }
    const int model_form = a->weights || a->template_path || a->data_roots;
    if (a->detections && model_form) {
        fprintf(stderr, "ote eval: give either --detections or TEMPLATE/--load-weights/--test-data-roots, not both\n");
        return 2;
    }
    if (!a->detections && !model_form) {
        fprintf(stderr, "ote eval: missing --detections RESULTS.json (see 'ote eval --help')\n");
        return 2;
    }
    return 0;
}

static void cmd_eval_print(const coco_dataset *gt, const eval_report *r, const cmd_eval_args *a, int n_dets) {
    int n_gts = 0, n_crowd = 0;
    for (int b = 0; b < gt->n_boxes; b++) {
        n_gts += !gt->boxes[b].iscrowd;
        n_crowd += gt->boxes[b].iscrowd != 0;
    }
    printf("ground truth: %d images, %d classes, %d boxes (+%d crowd); detections: %d\n", gt->n_images,
           gt->n_cats, n_gts, n_crowd, n_dets);
    printf("\nVOC mAP@0.5 (mmdet eval_map, 'area', crowd gts %s): %.4f  (%.17g)\n",
           a->crowd == EVAL_CROWD_ABSENT ? "absent" : "ignored", (double)r->voc.map, (double)r->voc.map);
    printf("  %-24s %10s %8s %8s\n", "class", "AP", "gts", "dets");
    for (int k = 0; k < r->voc.n_classes; k++)
        printf("  %-24s %10.4f %8d %8d%s\n", gt->cats[k].name ? gt->cats[k].name : "?",
               (double)r->voc.cls[k].ap, r->voc.cls[k].num_gts, r->voc.cls[k].num_dets,
               r->voc.cls[k].num_gts ? "" : "  (no gts: not in the mean)");
    printf("\nCOCO bbox (pycocotools COCOeval, maxDets %d,%d,%d):\n", r->coco.max_dets[0],
           r->coco.max_dets[1], r->coco.max_dets[2]);
    for (int i = 0; i < EVAL_COCO_NSTATS; i++) {
        char line[160];
        eval_coco_format_stat(&r->coco, i, line, sizeof line);
        printf("%s\n", line);
    }
}

/* Model form: the template, then the checkpoint's model settings (input size, backbone,
 * confidence threshold), then `params`; the detector runs at that input size with batch 1 exactly
 * as the trainer validates (train/trainer.c), so the printed mAP reproduces `ote train`'s. COCO
 * stats use mmdetection's maxDets (100, 300, 1000). Prints and saves as the detection form. */
static int cmd_eval_model_form(const cmd_eval_args *a_in) {
    cmd_eval_args a = *a_in;
    if (!a.template_path || !a.weights || !a.data_roots) {
        fprintf(stderr, "ote eval: the model form needs TEMPLATE, --load-weights and --test-data-roots\n");
        return 2;
    }
    config_template cfg;
    int s = config_load(&cfg, a.template_path);
    if (s < 0) {
        fprintf(stderr, "ote eval: %s%s\n", s == OTE_EIO ? "template not found or unreadable: " : "", ote_errmsg());
        return 2;
    }
    pth_ckpt c;
    pth_init(&c);
    s = trainer_model_settings(a.weights, &cfg, &c);
    pth_free(&c);
    if (s < 0) {
        fprintf(stderr, "ote eval: %s\n", ote_errmsg());
        return 1;
    }
    if (a.params_argc && config_apply_params(&cfg, a.params_argc, a.params_argv) < 0) {
        fprintf(stderr, "ote eval: %s\n", ote_errmsg());
        return 2;
    }
    coco_dataset gt;
    s = coco_load(&gt, a.ann_files, a.data_roots);
    if (s < 0) {
        fprintf(stderr, "ote eval: %s\n", ote_errmsg());
        return 1;
    }
    char warn[1024];
    if (coco_warning_summary(&gt, warn, sizeof warn) > 0) fprintf(stderr, "ote eval: warning: %s\n", warn);
    eval_report r;
    s = trainer_evaluate(&cfg, a.weights, &gt, 0, &r, NULL);
    if (s < 0) {
        fprintf(stderr, "ote eval: %s\n", ote_errmsg());
        coco_free(&gt);
        return 1;
    }
    a.crowd = EVAL_CROWD_ABSENT;
    memcpy(a.max_dets, r.coco.max_dets, sizeof a.max_dets);
    printf("model %s at input size %dx%d\n", a.weights, cfg.input_w, cfg.input_h);
    int n_dets = 0;
    for (int k = 0; k < r.voc.n_classes; k++) n_dets += r.voc.cls[k].num_dets;
    cmd_eval_print(&gt, &r, &a, n_dets);
    if (a.save_performance) {
        s = eval_save_performance(a.save_performance, &gt, &r, a.crowd);
        if (s < 0) fprintf(stderr, "ote eval: %s\n", ote_errmsg());
        else printf("\nsaved %s\n", a.save_performance);
    }
    eval_report_free(&r);
    coco_free(&gt);
    return s < 0 ? 1 : 0;
}

static int cmd_eval_detections_form(const cmd_eval_args *a) {
    coco_dataset gt;
    int s = coco_load_gt(&gt, a->ann_files); /* images are not read: file_name may be absent */
    if (s < 0) {
        fprintf(stderr, "ote eval: %s\n", ote_errmsg());
        return 1;
    }
    char warn[1024];
    if (coco_warning_summary(&gt, warn, sizeof warn) > 0) fprintf(stderr, "ote eval: warning: %s\n", warn);
    eval_dets dets;
    eval_dets_init(&dets);
    int rc = 1;
    eval_report r;
    memset(&r, 0, sizeof r);
    s = eval_load_results(a->detections, &gt, &dets);
    if (s < 0) goto fail;
    s = eval_run(&gt, dets.d, dets.n, a->crowd, a->max_dets, &r);
    if (s < 0) goto fail;
    cmd_eval_print(&gt, &r, a, dets.n);
    if (a->save_performance) {
        s = eval_save_performance(a->save_performance, &gt, &r, a->crowd);
        if (s < 0) goto fail;
        printf("\nsaved %s\n", a->save_performance);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "ote eval: %s\n", ote_errmsg());
    eval_report_free(&r);
    eval_dets_free(&dets);
    coco_free(&gt);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    cmd_eval_args a;
    int u = cmd_eval_parse(argc, argv, &a);
    if (u == 1) return 0;
    if (u) return 2;
    return a.detections ? cmd_eval_detections_form(&a) : cmd_eval_model_form(&a);
}
