/* bench_plans.c - where the time of building the detector's plans goes.
 *
 *   bench_plans [--template T] [--size WxH] [--batch N] [--classes C] [--infer]
 *
 * Builds the training plans of the 5 training sizes OTE uses for input WxH (train/schedule.h:
 * schedule_train_sizes; default the template's size, 992x736) at batch N (default: the template's
 * batch_size) in one detector, as `ote train` does, then (with --infer) the inference plan at WxH.
 * Prints, per size and in total: wall seconds, seconds inside oneDNN's primitive-descriptor
 * creation (implementation dispatch, descriptor checks), inside primitive creation (JIT code
 * generation) and the rest (our planning: memory descriptors, layouts, the memory planner, the
 * arenas), the number of primitives, and one RESULT json line. Not a test: timings vary with load
 * (state `uptime` with the figures). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/aug.h"
#include "engine/eng.h"
#include "engine/ote.h"
#include "models/det.h"
#include "train/config.h"
#include "train/schedule.h"
#include "train/trainer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int die(const char *what) {
    fprintf(stderr, "bench_plans: %s: %s\n", what, ote_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    const char *tpl = "models/templates/gen3_mobilenetV2_ATSS/template.yaml";
    int w = 0, h = 0, n = 0, classes = 3, infer = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--template") && i + 1 < argc) tpl = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc && sscanf(argv[i + 1], "%dx%d", &w, &h) == 2) i++;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc) classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--infer")) infer = 1;
        else {
            fprintf(stderr, "usage: bench_plans [--template T] [--size WxH] [--batch N] [--classes C] [--infer]\n");
            return 2;
        }
    }
    config_template cfg;
    if (config_load(&cfg, tpl) < 0) return die(tpl);
    if (w <= 0) w = cfg.input_w, h = cfg.input_h;
    if (n <= 0) n = cfg.batch_size;
    aug_size sz[5];
    schedule_train_sizes(w, h, sz);
    eng_ctx e;
    double t0 = now();
    if (eng_init(&e, 0) < 0) return die("eng_init");
    det_cfg dc;
    trainer_det_cfg(&cfg, classes, &dc);
    detector *d;
    if (det_create(&d, &e, &dc) < 0) return die("det_create");
    double t_create = now() - t0;
    printf("bench_plans: %s, %d threads, input %dx%d, batch %d; detector created in %.2f s\n", tpl, e.nthreads, w, h,
           n, t_create);
    double tot = 0, tot_pd = 0, tot_prim = 0;
    long tot_n = 0;
    for (int i = 0; i < 5 + infer; i++) {
        double a = now(), pd0 = e.pd_secs, pr0 = e.prim_secs;
        long n0 = e.n_primitives;
        int s = i < 5 ? det_plan_train(d, n, sz[i].h, sz[i].w) : det_plan_infer(d, 1, h, w);
        if (s < 0) return die(i < 5 ? "det_plan_train" : "det_plan_infer");
        double t = now() - a, pd = e.pd_secs - pd0, pr = e.prim_secs - pr0;
        long np = e.n_primitives - n0;
        printf("  %-5s %4dx%-4d N=%d: %6.2f s  (pd create %5.2f s, primitive create %5.2f s, ours %5.2f s; %ld primitives)\n",
               i < 5 ? "train" : "infer", i < 5 ? sz[i].w : w, i < 5 ? sz[i].h : h, i < 5 ? n : 1, t, pd, pr, t - pd - pr, np);
        tot += t, tot_pd += pd, tot_prim += pr, tot_n += np;
    }
    printf("  total: %.2f s (pd create %.2f s, primitive create %.2f s, ours %.2f s; %ld primitives)\n", tot, tot_pd,
           tot_prim, tot - tot_pd - tot_prim, tot_n);
    printf("RESULT {\"w\": %d, \"h\": %d, \"n\": %d, \"threads\": %d, \"plans_s\": %.3f, \"pd_s\": %.3f, \"prim_s\": %.3f, "
           "\"primitives\": %ld}\n", w, h, n, e.nthreads, tot, tot_pd, tot_prim, tot_n);
    det_free(d);
    eng_free(&e);
    return 0;
}
