/* bench_hpo_fidelity.c - do the HPO trials rank configurations as full trainings do? (issue 11)
 *
 * For a template + data (bench/hpo_fidelity.sh: face-mask at 320x320, the pretrained default):
 *   1. the calibration `ote train --enable-hpo` runs (train_hpo's timing of real steps) and the plan
 *      its planner makes for each --hpo-time-ratio R given (train_hpo_plan: trials, epochs per trial,
 *      subset, input size);
 *   2. for each of 6 configurations spread over the tutorial's space (learning rate 0.001-0.01 x
 *      batch size 4-8, the template default among them): the trial exactly as the search would run
 *      it for each R (train_hpo_trial_template + trainer_run with the plan's subset and epochs; its
 *      score is the best validation mAP over its epochs, as hpo_run records it; no deadline), and one
 *      full training (the template's num_iters epochs at full size on all images);
 *   3. the table of scores and, per R, Spearman's rank correlation between trial scores and
 *      full-run mAP (ties get average ranks).
 * Lines are printed as results arrive, so a stopped run keeps what it measured.
 *
 * usage: bench_hpo_fidelity TEMPLATE TRAIN_ANN TRAIN_ROOT VAL_ANN VAL_ROOT RATIOS [params --k V ...]
 *        RATIOS: comma-separated, e.g. 2,4
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/coco.h"
#include "engine/ote.h"
#include "hpo/plan.h"
#include "hpo/hpo_config.h"
#include "train/config.h"
#include "train/train_hpo.h"
#include "train/trainer.h"

enum { NCFG = 6, MAXR = 4 };

/* Spread over lr 0.001-0.01 x batch 4/6/8: both ends of each range, the default (0.008, 8). */
static const double cfg_lr[NCFG] = {0.001, 0.002, 0.004, 0.006, 0.008, 0.01};
static const int cfg_bs[NCFG] = {4, 8, 6, 4, 8, 6};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void ranks(const double *x, int n, double *r) {
    for (int i = 0; i < n; i++) {
        int less = 0, eq = 0;
        for (int j = 0; j < n; j++) less += x[j] < x[i], eq += x[j] == x[i];
        r[i] = less + (eq + 1) / 2.0; /* average rank of the tie group, 1-based */
    }
}

static double spearman(const double *a, const double *b, int n) {
    double ra[NCFG], rb[NCFG], ma = 0, mb = 0;
    ranks(a, n, ra);
    ranks(b, n, rb);
    for (int i = 0; i < n; i++) ma += ra[i] / n, mb += rb[i] / n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

static int run(const config_template *tc, const coco_dataset *tr, const coco_dataset *va, double subset, int max_epochs,
               double *map, double *secs) {
    trainer_opts o;
    train_hpo_trial_opts(tc, subset, max_epochs, &o); /* exactly a trial's options */
    trainer_result r;
    double t0 = now();
    int s = trainer_run(&o, tr, va, &r);
    *secs = now() - t0;
    if (s < 0) return s;
    *map = r.best_map;
    trainer_result_free(&r);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: bench_hpo_fidelity TEMPLATE TRAIN_ANN TRAIN_ROOT VAL_ANN VAL_ROOT RATIOS [params --k V ...]\n");
        return 2;
    }
    config_template cfg;
    coco_dataset tr, va;
    hpo_config hc;
    char path[2 * CONFIG_PATH_LEN];
    if (argc > 7 && strcmp(argv[7], "params")) {
        fprintf(stderr, "bench_hpo_fidelity: expected the word params after RATIOS, got '%s'\n", argv[7]);
        return 2;
    }
    if (config_load(&cfg, argv[1]) < 0 || (argc > 8 && config_apply_params(&cfg, argc - 8, argv + 8) < 0)) {
        fprintf(stderr, "bench_hpo_fidelity: %s\n", ote_errmsg());
        return 2;
    }
    snprintf(path, sizeof path, "%s/hpo_config.yaml", cfg.dir);
    if (hpo_config_load(&hc, path) < 0 || coco_load(&tr, argv[2], argv[3]) < 0 || coco_load(&va, argv[4], argv[5]) < 0) {
        fprintf(stderr, "bench_hpo_fidelity: %s\n", ote_errmsg());
        return 1;
    }
    double ratio[MAXR];
    int nr = 0;
    for (char *p = argv[6]; *p && nr < MAXR;) {
        ratio[nr++] = strtod(p, &p);
        if (*p == ',') p++;
        else if (*p) {
            fprintf(stderr, "bench_hpo_fidelity: RATIOS: expected e.g. 2,4, got '%s'\n", argv[6]);
            return 2;
        }
    }
    int i_lr = -1, i_bs = -1;
    for (int i = 0; i < hc.space.n; i++) {
        if (!strcmp(hc.space.p[i].name, "learning_parameters.learning_rate")) i_lr = i;
        if (!strcmp(hc.space.p[i].name, "learning_parameters.batch_size")) i_bs = i;
    }
    if (i_lr < 0 || i_bs < 0 || hc.space.n != 2) {
        fprintf(stderr, "bench_hpo_fidelity: %s must search exactly learning_rate and batch_size\n", path);
        return 2;
    }

    /* 1. calibration and plans, as `ote train --enable-hpo` makes them */
    trainer_timing tm;
    if (trainer_time_steps(&cfg, &tr, &va, 3, 3, 0, &tm) < 0) {
        fprintf(stderr, "bench_hpo_fidelity: calibration: %s\n", ote_errmsg());
        return 1;
    }
    train_hpo_estimate est;
    train_hpo_estimate_run(&cfg, &tr, &va, &tm, &est);
    printf("data: %d training images, %d validation; input %dx%d; full run %d epochs x %d repeat, estimated %.0f s\n",
           tr.n_images, va.n_images, cfg.input_w, cfg.input_h, est.epochs, est.repeat, est.total_s);
    hpo_plan plan[MAXR];
    for (int k = 0; k < nr; k++) {
        hpo_config eff = hc;
        hpo_budget_in bi;
        if (train_hpo_plan(&cfg, &tr, &est, &eff, ratio[k], &bi, &plan[k]) < 0) {
            fprintf(stderr, "bench_hpo_fidelity: plan: %s\n", ote_errmsg());
            return 1;
        }
        char line[512];
        hpo_plan_format(&plan[k], tr.n_images, cfg.input_w, cfg.input_h, line, sizeof line);
        printf("ratio %g: %s%s\n", ratio[k], line, plan[k].meaningful ? "" : " [not meaningful: the search would be skipped]");
    }
    fflush(stdout);

    /* 2. trials and full runs */
    double trial[MAXR][NCFG], full[NCFG];
    for (int c = 0; c < NCFG; c++) {
        double v[2];
        v[i_lr] = cfg_lr[c], v[i_bs] = cfg_bs[c];
        for (int k = 0; k < nr; k++) {
            config_template tc;
            double secs = 0;
            int s = train_hpo_trial_template(&cfg, &hc.space, v, plan[k].epochs, est.epochs, plan[k].image_resize, &tc);
            if (s >= 0) s = run(&tc, &tr, &va, plan[k].subset_ratio, plan[k].epochs, &trial[k][c], &secs);
            if (s < 0) {
                fprintf(stderr, "bench_hpo_fidelity: trial: %s\n", ote_errmsg());
                return 1;
            }
            printf("config %d (lr %g, batch %d): trial at ratio %g (%dx%d, %d epochs, subset %.2f): mAP %.4f  (%.0f s)\n",
                   c, cfg_lr[c], cfg_bs[c], ratio[k], tc.input_w, tc.input_h, plan[k].epochs, plan[k].subset_ratio,
                   trial[k][c], secs);
            fflush(stdout);
        }
        config_template fc;
        double secs = 0;
        int s = train_hpo_trial_template(&cfg, &hc.space, v, est.epochs, est.epochs, 1.0, &fc);
        if (s >= 0) s = run(&fc, &tr, &va, 1.0, 0, &full[c], &secs);
        if (s < 0) {
            fprintf(stderr, "bench_hpo_fidelity: full run: %s\n", ote_errmsg());
            return 1;
        }
        printf("config %d (lr %g, batch %d): full run (%dx%d, %d epochs): mAP %.4f  (%.0f s)\n", c, cfg_lr[c], cfg_bs[c],
               fc.input_w, fc.input_h, est.epochs, full[c], secs);
        fflush(stdout);
    }

    /* 3. table and rank correlations */
    printf("\n| config | lr | batch | full-run mAP |");
    for (int k = 0; k < nr; k++) printf(" trial mAP (ratio %g) |", ratio[k]);
    printf("\n|---|---|---|---|");
    for (int k = 0; k < nr; k++) printf("---|");
    printf("\n");
    for (int c = 0; c < NCFG; c++) {
        printf("| %d | %g | %d | %.4f |", c, cfg_lr[c], cfg_bs[c], full[c]);
        for (int k = 0; k < nr; k++) printf(" %.4f |", trial[k][c]);
        printf("\n");
    }
    for (int k = 0; k < nr; k++)
        printf("Spearman (trial scores vs full-run mAP) at ratio %g: %.3f\n", ratio[k], spearman(trial[k], full, NCFG));
    coco_free(&tr);
    coco_free(&va);
    return 0;
}
