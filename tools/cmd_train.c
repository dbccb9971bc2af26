/* cmd_train.c - `ote train`: OTE's training command line (spec-ote-hpo.md §1.1) on the trainer.
 *
 *   ote train TEMPLATE --train-ann-files A --train-data-roots D --val-ann-files B
 *             --val-data-roots E --save-model-to OUT [--load-weights W] [--enable-hpo]
 *             [--hpo-time-ratio R] [--resume-from OUT/last.pth] [params --group.key V ...]
 *
 * --resume-from and an earlier run's OUT/last.pth: tools/cmd_train_resume.h (issue 14).
 *
 * Under `mpirun -np N` (N > 1, dist/dist.h) every rank runs this command and the training is
 * data-parallel (train/trainer.h): rank 0 prints and writes; the other ranks' stdout goes to
 * /dev/null and they print errors only. Each rank runs --threads, else OMP_NUM_THREADS, else
 * dist_default_threads() (the node's cores / its ranks) OpenMP threads. A rank that fails ends the
 * whole job (dist_abort with the exit code) so that no rank waits for it forever.
 *
 * Options are parsed like Python's argparse (OTE uses it): `--opt value` or `--opt=value`, and any
 * unambiguous prefix of a long option (`--train-ann-file`). Exit codes: 0 ok; 2 usage error
 * (missing/unknown/ambiguous option, missing template, bad template, unknown params key, value
 * out of range, missing hpo_config.yaml with --enable-hpo); 1 runtime error (missing or bad data
 * files, unwritable output folder - checked before training starts -, a non-finite loss). Every
 * error is one line on stderr. Nothing is written before the inputs are validated; the weights
 * are written atomically (temp + rename) each time the validation mAP improves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/coco.h"
#include "data/eval.h"
#include "dist/dist.h"
#include "engine/ote.h"
#include "tools/cmd_train_resume.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/metrics.h"
#include "train/predict.h"
#include "train/train_hpo.h"
#include "train/trainer.h"
#include "train/weights.h"

/* Larger --hpo-time-ratio values are typing mistakes: a million trainings' time. */
#define CMD_TRAIN_MAX_RATIO 1e6

enum { TR_TRAIN_ANN, TR_TRAIN_ROOTS, TR_VAL_ANN, TR_VAL_ROOTS, TR_LOAD, TR_SAVE, TR_HPO, TR_RATIO, TR_HELP, TR_RESUME,
       TR_RESUME_FROM, TR_THREADS, TR_N };

static const struct {
    const char *name;
    int takes_value;
} cmd_train_opts[TR_N] = {
    {"--train-ann-files", 1}, {"--train-data-roots", 1}, {"--val-ann-files", 1}, {"--val-data-roots", 1},
    {"--load-weights", 1},    {"--save-model-to", 1},    {"--enable-hpo", 0},    {"--hpo-time-ratio", 1},
    {"--help", 0},            {"--hpo-resume", 1},       {"--resume-from", 1},   {"--threads", 1},
};

static void cmd_train_usage(FILE *f) {
    fprintf(f,
            "usage: ote train TEMPLATE --train-ann-files A --train-data-roots D --val-ann-files B\n"
            "                 --val-data-roots E --save-model-to OUT [--load-weights W]\n"
            "                 [--resume-from OUT/last.pth] [--enable-hpo] [--hpo-time-ratio R]\n"
            "                 [--threads T] [params --group.key V ...]\n\n"
            "Trains the MobileNetV2-ATSS detector of TEMPLATE (template.yaml) on COCO-format data,\n"
            "validates VOC mAP@0.5 every epoch and keeps the best weights.\n\n"
            "options:\n"
            "  TEMPLATE                  model template (e.g. models/templates/gen3_mobilenetV2_ATSS/template.yaml)\n"
            "  --train-ann-files A       comma-separated COCO annotation files for training\n"
            "  --train-data-roots D      comma-separated image folders (one, or one per file)\n"
            "  --val-ann-files B         validation annotation files\n"
            "  --val-data-roots E        validation image folders\n"
            "  --save-model-to OUT       output: OUT/weights.pth + OUT/label_schema.json (+ OUT/hpo/), or\n"
            "                            OUT=DIR/X.pth itself with DIR/X.label_schema.json (+ DIR/X.hpo/);\n"
            "                            at the end 8 validation images drawn with the best model's boxes\n"
            "                            and the ground truth go to OUT/samples/ (DIR/X.samples/)\n"
            "  --load-weights W          start from a checkpoint (ours or torch.save'd); a different class\n"
            "                            count re-initialises only the classification conv\n"
            "  --resume-from S           continue the interrupted training whose state S is (OUT/last.pth,\n"
            "                            written after every epoch; DIR/X.last.pth for OUT=DIR/X.pth) from\n"
            "                            its last finished epoch; the data and params must be the same (else\n"
            "                            exit 2 naming what differs); a finished one: nothing to do (exit 0).\n"
            "                            Without it, an interrupted training in OUT is refused (exit 2) rather\n"
            "                            than overwritten; a finished one is replaced by a new training.\n"
            "                            With --enable-hpo the final training continues when the search is\n"
            "                            resumed or reused and its values match\n"
            "  --enable-hpo              run hyper-parameter optimisation first (needs hpo_config.yaml\n"
            "                            beside the template)\n"
            "  --hpo-time-ratio R        HPO + training time / plain training time (default 4)\n"
            "  --hpo-resume ask|yes|no   an earlier search in hpo/: ask (default; without a terminal:\n"
            "                            resume or reuse it), yes (resume/reuse), no (rerun from scratch)\n"
            "  --threads N               OpenMP threads per process (default: OMP_NUM_THREADS, else the\n"
            "                            cores; under mpirun -np P: the node's cores / its ranks). Under\n"
            "                            mpirun, --enable-hpo runs up to P trials at once (rank 0 keeps the\n"
            "                            files) and the final training runs on all ranks\n"
            "  -h, --help                this help\n\n"
            "Under `mpirun -np N ote train ...` the N processes train data-parallel: each takes its\n"
            "share of every batch (batch_size >= N), gradients are summed, BatchNorm statistics stay per\n"
            "process; rank 0 validates, prints and writes the files.\n\n"
            "params (after the word `params`; checked against the template's type, min and max):\n"
            "  --learning_parameters.batch_size N     --learning_parameters.learning_rate X\n"
            "  --learning_parameters.learning_rate_warmup_iters N\n"
            "  --learning_parameters.num_iters N      (epochs before OTE's adaptive repeat)\n"
            "  --postprocessing.confidence_threshold X\n"
            "  --postprocessing.result_based_confidence_threshold true|false\n"
            "  --model.input_size WxH                 (multiples of 32; training sizes scale with it)\n"
            "  --model.seed N\n\n"
            "Unambiguous prefixes of the long options are accepted, as with OTE's argparse.\n");
}

/* argparse-like lookup: exact name or unambiguous prefix. Returns the option index, -1 unknown,
 * -2 ambiguous (message printed). */
static int cmd_train_find_opt(const char *arg, size_t len) {
    int found = -1, n = 0;
    for (int i = 0; i < TR_N; i++) {
        if (strlen(cmd_train_opts[i].name) == len && !strncmp(cmd_train_opts[i].name, arg, len)) return i;
        if (len > 2 && !strncmp(cmd_train_opts[i].name, arg, len)) {
            found = i;
            n++;
        }
    }
    if (n > 1) {
        fprintf(stderr, "ote train: ambiguous option: %.*s could match", (int)len, arg);
        for (int i = 0, k = 0; i < TR_N; i++)
            if (!strncmp(cmd_train_opts[i].name, arg, len)) fprintf(stderr, "%s %s", k++ ? "," : "", cmd_train_opts[i].name);
        fprintf(stderr, "\n");
        return -2;
    }
    return found;
}

typedef struct cmd_train_args {
    const char *template_path;
    const char *v[TR_N];
    int hpo;
    double hpo_ratio;
    int params_at; /* argv index of the word `params`, 0 if none */
    int threads;   /* --threads, 0 if not given */
} cmd_train_args;

/* 0 go on, 1 help shown, 2 usage error (printed). */
static int cmd_train_parse(int argc, char **argv, cmd_train_args *a) {
    memset(a, 0, sizeof *a);
    a->hpo_ratio = 4.0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "params")) {
            a->params_at = i;
            break;
        }
        if (!strcmp(o, "-h")) {
            cmd_train_usage(stdout);
            return 1;
        }
        if (strncmp(o, "--", 2) != 0 || o[2] == '\0') {
            if (o[0] == '-') {
                fprintf(stderr, "ote train: unknown option '%s' (see 'ote train --help')\n", o);
                return 2;
            }
            if (a->template_path) {
                fprintf(stderr, "ote train: unexpected argument '%s' (see 'ote train --help')\n", o);
                return 2;
            }
            a->template_path = o;
            continue;
        }
        const char *eq = strchr(o, '=');
        size_t len = eq ? (size_t)(eq - o) : strlen(o);
        int k = cmd_train_find_opt(o, len);
        if (k == -2) return 2;
        if (k < 0) {
            fprintf(stderr, "ote train: unknown option '%.*s' (see 'ote train --help')\n", (int)len, o);
            return 2;
        }
        if (k == TR_HELP) {
            cmd_train_usage(stdout);
            return 1;
        }
        if (!cmd_train_opts[k].takes_value) {
            if (eq) {
                fprintf(stderr, "ote train: option %s takes no value\n", cmd_train_opts[k].name);
                return 2;
            }
            if (k == TR_HPO) a->hpo = 1;
            continue;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2) || !strcmp(argv[i + 1], "params")) {
                fprintf(stderr, "ote train: option %s needs a value\n", cmd_train_opts[k].name);
                return 2;
            }
            val = argv[++i];
        }
        if (!*val) {
            fprintf(stderr, "ote train: option %s: empty value\n", cmd_train_opts[k].name);
            return 2;
        }
        a->v[k] = val;
    }
    if (!a->template_path) {
        fprintf(stderr, "ote train: missing TEMPLATE (see 'ote train --help')\n");
        return 2;
    }
    const int required[] = {TR_TRAIN_ANN, TR_TRAIN_ROOTS, TR_VAL_ANN, TR_VAL_ROOTS, TR_SAVE};
    for (size_t r = 0; r < sizeof required / sizeof required[0]; r++)
        if (!a->v[required[r]]) {
            fprintf(stderr, "ote train: missing required option %s (see 'ote train --help')\n", cmd_train_opts[required[r]].name);
            return 2;
        }
    if (a->v[TR_RESUME] && train_hpo_parse_resume(a->v[TR_RESUME]) < 0) {
        fprintf(stderr, "ote train: --hpo-resume '%s': expected ask, yes or no\n", a->v[TR_RESUME]);
        return 2;
    }
    if (a->v[TR_RESUME_FROM] && a->hpo) { /* continuing means continuing the search too */
        if (a->v[TR_RESUME] && train_hpo_parse_resume(a->v[TR_RESUME]) == HPO_RESUME_NO) {
            fprintf(stderr, "ote train: --resume-from and --hpo-resume no contradict each other\n");
            return 2;
        }
        if (!a->v[TR_RESUME]) a->v[TR_RESUME] = "yes";
    }
    if (a->v[TR_THREADS]) {
        char *end;
        long t = strtol(a->v[TR_THREADS], &end, 10);
        if (end == a->v[TR_THREADS] || *end || t < 1 || t > 4096) {
            fprintf(stderr, "ote train: --threads '%s': expected a whole number from 1 to 4096\n", a->v[TR_THREADS]);
            return 2;
        }
        a->threads = (int)t;
    }
    if (a->v[TR_RATIO]) {
        char *end;
        a->hpo_ratio = strtod(a->v[TR_RATIO], &end);
        if (end == a->v[TR_RATIO] || *end || !(a->hpo_ratio > 0)) {
            fprintf(stderr, "ote train: --hpo-time-ratio '%s': expected a positive number\n", a->v[TR_RATIO]);
            return 2;
        }
        if (a->hpo_ratio > CMD_TRAIN_MAX_RATIO) {
            fprintf(stderr, "ote train: --hpo-time-ratio %s: at most %g (the whole run takes about R x one training)\n",
                    a->v[TR_RATIO], CMD_TRAIN_MAX_RATIO);
            return 2;
        }
    }
    return 0;
}

static int cmd_train_file_readable(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, R_OK) == 0;
}

static void cmd_train_print_summary(const coco_dataset *val, const trainer_result *r) {
    printf("\ntraining finished: %d of %d epochs, %ld iterations, %ld images, %.1f s%s\n", r->epochs_run,
           r->epochs_planned, r->iters, r->images, r->seconds,
           r->stop == TRAINER_STOP_EARLY ? " (early stopping)" : r->stop == TRAINER_STOP_DEADLINE ? " (deadline)" : "");
    if (!r->has_best) return;
    printf("best model: epoch %d; confidence threshold %.3f\n", r->best_epoch, r->confidence_threshold);
    printf("validation VOC mAP@0.5 of the best model: %.4f  (%.17g)\n", (double)r->best.voc.map,
           (double)r->best.voc.map);
    for (int k = 0; k < r->best.voc.n_classes; k++)
        if (r->best.voc.cls[k].num_gts)
            printf("  %-24s AP %.4f  (%d gts, %d dets)\n", val->cats[k].name ? val->cats[k].name : "?",
                   (double)r->best.voc.cls[k].ap, r->best.voc.cls[k].num_gts, r->best.voc.cls[k].num_dets);
    printf("COCO bbox (maxDets %d,%d,%d):\n", r->best.coco.max_dets[0], r->best.coco.max_dets[1],
           r->best.coco.max_dets[2]);
    for (int i = 0; i < EVAL_COCO_NSTATS; i++) {
        char line[160];
        eval_coco_format_stat(&r->best.coco, i, line, sizeof line);
        printf("%s\n", line);
    }
}

/* A few validation images drawn with the best model's predictions and the ground truth
 * (train/predict.h), into OUT/samples/ (DIR/X.samples/ for DIR/X.pth). A failure here is a
 * warning: the training itself succeeded and its weights are saved. */
#define CMD_TRAIN_SAMPLES 8
static void cmd_train_write_samples(const config_template *cfg, const char *weights_path, const coco_dataset *val,
                                    double thr) {
    char dir[4200];
    int n = 0;
    int s = weights_side_path(weights_path, "samples", dir, sizeof dir);
    if (s >= 0) s = predict_samples(cfg, weights_path, val, CMD_TRAIN_SAMPLES, thr, dir, &n);
    if (s < 0) fprintf(stderr, "ote train: warning: validation samples not drawn: %s\n", ote_errmsg());
    else printf("drew %d validation images (green: ground truth; scores >= %.3g) into %s/\n", n, thr, dir);
}

/* What the steps of one `ote train` share. A step returns CMD_TRAIN_GO to go on, else the exit
 * status. */
enum { CMD_TRAIN_GO = -1 };
typedef struct cmd_train_run_ctx {
    cmd_train_args a;
    config_template cfg;
    char weights_path[4096], labels_path[4096];
    coco_dataset train, val;
    train_resume_plan rp; /* issue 14: --resume-from, or an earlier run's state in OUT */
    char made[4096];      /* the folders weights_prepare_dir created: removed again if the run fails */
    int writer;           /* trainer_is_writer: this rank prints and writes the files */
    int nthreads;
    trainer_result res;
} cmd_train_run_ctx;

/* The template with the params and every input and output path, checked before any data loads. */
static int cmd_train_setup(cmd_train_run_ctx *c, int argc, char **argv) {
    const cmd_train_args *a = &c->a;
    config_template *cfg = &c->cfg;
    int s = config_load(cfg, a->template_path);
    if (s < 0) {
        if (s == OTE_EIO) fprintf(stderr, "ote train: template not found or unreadable: %s\n", ote_errmsg());
        else fprintf(stderr, "ote train: %s\n", ote_errmsg());
        return 2;
    }
    if (a->params_at) {
        s = config_apply_params(cfg, argc - a->params_at - 1, argv + a->params_at + 1);
        if (s < 0) {
            fprintf(stderr, "ote train: %s\n", ote_errmsg());
            return 2;
        }
    }
    if (a->hpo) {
        char hp[2 * CONFIG_PATH_LEN];
        snprintf(hp, sizeof hp, "%s/hpo_config.yaml", cfg->dir);
        if (!cmd_train_file_readable(hp)) {
            fprintf(stderr, "ote train: --enable-hpo: %s not found (hpo_config.yaml must sit beside the template)\n", hp);
            return 2;
        }
    }
    char bb[2 * CONFIG_PATH_LEN + 2];
    int nb = a->v[TR_LOAD] ? 0 : config_pretrained_path(cfg, bb, sizeof bb);
    if (nb < 0 || (nb > 0 && !cmd_train_file_readable(bb))) {
        fprintf(stderr,
                "ote train: %s: model.pretrained_backbone: cannot read %s (relative paths are relative to the "
                "template's folder; `none` trains from scratch)\n",
                a->template_path, nb < 0 ? cfg->pretrained_backbone : bb);
        return 2;
    }
    if (weights_paths(a->v[TR_SAVE], c->weights_path, sizeof c->weights_path, c->labels_path, sizeof c->labels_path) < 0) {
        fprintf(stderr, "ote train: %s\n", ote_errmsg());
        return 2;
    }
    if (a->v[TR_LOAD] && !cmd_train_file_readable(a->v[TR_LOAD])) {
        fprintf(stderr, "ote train: --load-weights: cannot read %s\n", a->v[TR_LOAD]);
        return 1;
    }
    return CMD_TRAIN_GO;
}

/* Both datasets, or neither (1). */
static int cmd_train_load_data(cmd_train_run_ctx *c) {
    if (coco_load(&c->train, c->a.v[TR_TRAIN_ANN], c->a.v[TR_TRAIN_ROOTS]) < 0) {
        fprintf(stderr, "ote train: training data: %s\n", ote_errmsg());
        return 1;
    }
    if (coco_load(&c->val, c->a.v[TR_VAL_ANN], c->a.v[TR_VAL_ROOTS]) < 0) {
        fprintf(stderr, "ote train: validation data: %s\n", ote_errmsg());
        coco_free(&c->train);
        return 1;
    }
    char warn[1024];
    if (c->writer && coco_warning_summary(&c->train, warn, sizeof warn) > 0)
        fprintf(stderr, "ote train: warning: training data: %s\n", warn);
    if (c->writer && coco_warning_summary(&c->val, warn, sizeof warn) > 0)
        fprintf(stderr, "ote train: warning: validation data: %s\n", warn);
    return CMD_TRAIN_GO;
}

static int cmd_train_check_data(const cmd_train_run_ctx *c) {
    if (trainer_check_classes(&c->train, &c->val) < 0) {
        fprintf(stderr, "ote train: %s\n", ote_errmsg());
        return 1;
    }
    int n_train_boxes = 0;
    for (int b = 0; b < c->train.n_boxes; b++) n_train_boxes += !c->train.boxes[b].iscrowd;
    if (n_train_boxes == 0) { /* nothing to learn: it would "train" and save an untrained model */
        fprintf(stderr, "ote train: training data: %s: no (non-crowd) boxes in %d images: nothing to learn from\n",
                c->a.v[TR_TRAIN_ANN], c->train.n_images);
        return 1;
    }
    return CMD_TRAIN_GO;
}

/* An earlier run's state in OUT, then the output folder: writable before hours of training
 * start, and cleared of an interrupted run's temporaries. */
static int cmd_train_prepare(cmd_train_run_ctx *c) {
    const cmd_train_args *a = &c->a;
    int stop = 0, rc = train_resume_before(&c->rp, a->v[TR_RESUME_FROM], c->weights_path, a->hpo,
                                           a->v[TR_RESUME] && train_hpo_parse_resume(a->v[TR_RESUME]) == HPO_RESUME_NO,
                                           &c->cfg, &c->train, &c->val, &stop);
    if (stop) return rc;
    if (c->writer && weights_prepare_dir(c->weights_path, c->made, sizeof c->made) < 0) {
        fprintf(stderr, "ote train: --save-model-to: %s\n", ote_errmsg());
        return 1;
    }
    /* --threads, else OMP_NUM_THREADS (eng_init reads it), else the node's cores / its ranks */
    c->nthreads = a->threads ? a->threads : getenv("OMP_NUM_THREADS") ? 0 : dist_default_threads();
    int stale = 0;
    char curves[4200], pr[4200]; /* the figures are written through temporaries too (train/plots.c) */
    if (c->writer) {
        stale += weights_clean_stale_temps(c->weights_path, c->labels_path);
        stale += weights_clean_stale_temps(c->rp.state_path, c->rp.state_path);
        if (metrics_side_path(c->weights_path, "curves.png", curves, sizeof curves) == 0 &&
            metrics_side_path(c->weights_path, "pr_curves.png", pr, sizeof pr) == 0)
            stale += weights_clean_stale_temps(curves, pr);
    }
    if (stale > 0) printf("removed %d temporary file(s) left by an interrupted earlier run\n", stale);
    return CMD_TRAIN_GO;
}

/* The search (on success cfg holds the best values), then whether the final training resumes. */
static int cmd_train_hpo(cmd_train_run_ctx *c) {
    const cmd_train_args *a = &c->a;
    train_hpo_args ha = {&c->train, &c->val, c->weights_path, a->v[TR_LOAD], a->hpo_ratio,
                         (hpo_resume)train_hpo_parse_resume(a->v[TR_RESUME]), isatty(0), stdout, c->nthreads};
    int hs = train_hpo_run(&ha, &c->cfg);
    if (hs) return hs == TRAIN_HPO_QUIT ? 0 : hs;
    int stop = 0, rc = train_resume_after_hpo(&c->rp, &c->cfg, &c->train, &c->val, &stop);
    return stop ? rc : CMD_TRAIN_GO;
}

/* The training over every rank (issue 18), then the summary and samples on the writer. */
static int cmd_train_final(cmd_train_run_ctx *c, int *nan) {
    trainer_opts o;
    trainer_opts_init(&o, &c->cfg);
    o.state_path = c->rp.state_path;
    o.resume_from = c->rp.use ? c->rp.state_path : NULL;
    o.init_weights = c->a.v[TR_LOAD];
    o.save_path = c->weights_path;
    o.labels_path = c->labels_path;
    o.log = stdout;
    o.write_metrics = 1; /* metrics.csv, curves.png, pr_curves.png beside the weights (issue 14) */
    o.data_parallel = 1; /* issue 18: the final training over every rank of the job (HPO trials run alone) */
    o.nthreads = c->nthreads;
    int s = trainer_run(&o, &c->train, &c->val, &c->res);
    if (s < 0) {
        /* a non-finite loss stops every rank at once (the loss is summed): the writer says it */
        *nan = s == OTE_ENAN;
        if (c->writer || s != OTE_ENAN)
            fprintf(stderr, "ote train%s: %s\n", !c->writer ? " (a data-parallel rank)" : "", ote_errmsg());
        return 1;
    }
    if (!c->writer) return 0;
    cmd_train_print_summary(&c->val, &c->res);
    if (!c->res.has_best) {
        fprintf(stderr, "ote train: no epoch finished: nothing saved\n");
        return 1;
    }
    printf("saved %s and %s\n", c->weights_path, c->labels_path);
    cmd_train_write_samples(&o.cfg, c->weights_path, &c->val, c->res.confidence_threshold);
    return 0;
}

/* *nan: the training stopped at a non-finite loss (under data-parallel training: on every rank). */
static int cmd_train_run(int argc, char **argv, int *nan) {
    *nan = 0;
    cmd_train_run_ctx c;
    memset(&c, 0, sizeof c);
    /* under mpirun the training is data-parallel: the writer speaks for the job; the other ranks
     * keep stderr for their errors */
    c.writer = trainer_is_writer(1);
    if (!c.writer && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "ote train: rank %d: cannot silence stdout\n", dist_rank());
        return 1;
    }
    int u = cmd_train_parse(argc, argv, &c.a);
    if (u == 1) return 0;
    if (u) return 2;
    int rc = cmd_train_setup(&c, argc, argv);
    if (rc == CMD_TRAIN_GO) rc = cmd_train_load_data(&c);
    if (rc != CMD_TRAIN_GO) return rc; /* nothing loaded or made */
    rc = cmd_train_check_data(&c);
    if (rc == CMD_TRAIN_GO) rc = cmd_train_prepare(&c);
    if (rc == CMD_TRAIN_GO && c.a.hpo) rc = cmd_train_hpo(&c);
    if (rc == CMD_TRAIN_GO) rc = cmd_train_final(&c, nan);
    if (rc != 0) weights_remove_made_dirs(c.weights_path, c.made);
    trainer_result_free(&c.res);
    coco_free(&c.train);
    coco_free(&c.val);
    return rc;
}

int cmd_train(int argc, char **argv) {
    int nan;
    int rc = cmd_train_run(argc, argv, &nan);
    /* Data-parallel: a rank that fails alone would leave the others waiting in a collective. A
     * non-finite loss is the one failure every rank sees at the same step (trainer.h): they all
     * return it and end normally. Any other failure ends the job. */
    if (rc != 0 && dist_size() > 1 && !nan) {
        fflush(stdout);
        fflush(stderr);
        dist_abort(rc);
    }
    return rc;
}
