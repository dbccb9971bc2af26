/* bench_loader.c - data pipeline throughput: images/s decoded + augmented + batched.
 *
 * For the face-mask set (small JPEGs, up to 400 px) and the airport set (1920x1080 JPEGs) it runs
 * whole epochs of the training pipeline (MinIoU crop, resize to the spec's sizes around 992x736,
 * flip, normalise, batch 8) and of the test pipeline (resize to 992x736, batch 1), with 0
 * (synchronous), 1 and 2 prefetch workers, consuming batches without compute. It prints the median
 * and best of several runs (the machine is shared: the median is the figure to quote), and the
 * process CPU time per image, which contention from other processes barely changes. Finally an
 * overlap check: epochs with a simulated 200 ms of compute per batch, without and with prefetch.
 * Usage: bench_loader [runs=5] [max_images=64]; reads $OTE_SHARED (default ../shared).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/coco.h"
#include "data/loader.h"
#include "engine/ote.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y);
}

static int bench_one(const char *name, const coco_dataset *ds, int train, int workers, int runs) {
    loader_config c;
    if (train) loader_config_train(&c, workers, 17);
    else loader_config_test(&c, 992, 736, workers);
    data_loader *l = NULL;
    int st = loader_create(&l, ds, &c);
    if (st < 0) {
        fprintf(stderr, "bench_loader: %s\n", ote_errmsg());
        return st;
    }
    double rate[32], cpu_ms[32];
    if (runs > 32) runs = 32;
    /* one warm-up epoch: page cache, scratch growth, OpenCV init */
    for (int r = -1; r < runs; r++) {
        double t0 = now_s(), c0 = cpu_s();
        st = loader_start_epoch(l, r + 1);
        const data_batch *b;
        int n = 0;
        while ((st = loader_next(l, &b)) == 1) n += b->n;
        if (st < 0) {
            fprintf(stderr, "bench_loader: %s\n", ote_errmsg());
            loader_free(l);
            return st;
        }
        double dt = now_s() - t0;
        if (r >= 0) {
            rate[r] = n / dt;
            cpu_ms[r] = 1e3 * (cpu_s() - c0) / n;
        }
    }
    qsort(rate, (size_t)runs, sizeof *rate, cmp_d);
    qsort(cpu_ms, (size_t)runs, sizeof *cpu_ms, cmp_d);
    printf("%-9s %-5s workers=%d  %3d images  median %7.1f img/s  best %7.1f img/s  cpu %6.2f ms/img (median)\n",
           name, train ? "train" : "test", workers, ds->n_images, rate[runs / 2], rate[runs - 1], cpu_ms[runs / 2]);
    loader_free(l);
    return 0;
}

/* Overlap: the consumer "computes" by sleeping `compute_ms` per batch (a sleep, so it holds no
 * core). Without prefetch an epoch costs load + compute; with it, about max(load, compute). */
static int bench_overlap(const char *name, const coco_dataset *ds, int workers, double compute_ms) {
    loader_config c;
    loader_config_train(&c, workers, 17);
    data_loader *l = NULL;
    if (loader_create(&l, ds, &c) < 0) {
        fprintf(stderr, "bench_loader: %s\n", ote_errmsg());
        return -1;
    }
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        loader_start_epoch(l, r);
        const data_batch *b;
        int st, nb = 0;
        while ((st = loader_next(l, &b)) == 1) {
            struct timespec ts = {0, (long)(compute_ms * 1e6)};
            nanosleep(&ts, NULL);
            nb++;
        }
        if (st < 0) {
            fprintf(stderr, "bench_loader: %s\n", ote_errmsg());
            loader_free(l);
            return -1;
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
        if (r == 0) printf("%-9s overlap workers=%d  %d batches x %.0f ms simulated compute", name, workers, nb, compute_ms);
    }
    printf("  epoch %.2f s (best of 3)\n", best);
    loader_free(l);
    return 0;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    int max_images = argc > 2 ? atoi(argv[2]) : 64;
    if (runs < 1) runs = 1;
    const char *shared = getenv("OTE_SHARED");
    if (!shared) shared = "../shared";
    char ann[1200], roots[1200];
    struct {
        const char *name, *ann, *root;
    } sets[2] = {{"facemask", "data/facemask_coco/annotations/custom_train.json", "data/facemask_coco/train2017"},
                 {"airport", "data/airport/annotation_example_train.json,data/airport/annotation_example_val.json",
                  "data/airport/train,data/airport/val"}};
    for (int s = 0; s < 2; s++) {
        /* prefix every comma-separated entry with $OTE_SHARED */
        char tmp[2][600];
        snprintf(tmp[0], sizeof tmp[0], "%s", sets[s].ann);
        snprintf(tmp[1], sizeof tmp[1], "%s", sets[s].root);
        char *outs[2] = {ann, roots};
        for (int k = 0; k < 2; k++) {
            outs[k][0] = 0;
            size_t o = 0;
            for (char *tok = strtok(tmp[k], ","); tok; tok = strtok(NULL, ","))
                o += (size_t)snprintf(outs[k] + o, sizeof ann - o, "%s%s/%s", o ? "," : "", shared, tok);
        }
        coco_dataset full, ds;
        if (coco_load(&full, ann, roots) < 0) {
            fprintf(stderr, "bench_loader: %s\n", ote_errmsg());
            return 1;
        }
        if (coco_subset(&ds, &full, max_images, 3) < 0) {
            fprintf(stderr, "bench_loader: %s\n", ote_errmsg());
            return 1;
        }
        coco_free(&full);
        for (int train = 1; train >= 0; train--)
            for (int w = 0; w <= 2; w++)
                if (bench_one(sets[s].name, &ds, train, w, runs) < 0) return 1;
        for (int w = 0; w <= 1; w++)
            if (bench_overlap(sets[s].name, &ds, w, 200.0) < 0) return 1;
        coco_free(&ds);
    }
    return 0;
}
