/* bench_detector.c - training and inference speed of the MobileNetV2-ATSS detector (models/det.h).
 *
 *   bench_detector [--steps S] [--warmup W] [--classes C] [--only HxW] [--batch N] [--bn fused|onednn]
 *
 * --bn onednn trains BN + ReLU6 on oneDNN's primitives instead of the fused layer (engine/bnr.h).
 *
 * For 320x320, 512x512 and 736x992 (H x W), batch 1 and 8 (or the --only / --batch subset), each
 * configuration runs in its own child process (fork), so the peak RSS (getrusage ru_maxrss) is
 * that configuration's alone. A child: plans training and inference, runs W warm-up steps and S
 * timed steps of each, and prints one line:
 *   train images/s (forward + targets + losses + backward + SGD, median step), inference images/s
 *   (eval-mode forward + post-processing, median), conv GFLOP/s = conv FLOPs of the plan (dense +
 *   depthwise, forward + backward-data + backward-weights, 2 FLOPs per MAC) / median step time,
 *   peak RSS, plan build time and the detector's block sizes, and the CPU seconds (user + system,
 *   all threads) per training step, which does not depend on how long threads waited for a core.
 * The batch is synthetic: uniform noise images, 3 boxes per image (fixed seed). 2 cores are shared
 * with other work on this machine: medians of several steps after warm-up, not best cases.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "models/det.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds (user + system) of this process: on a loaded shared machine, CPU time per step
 * measures the work done independently of how long the threads waited to be scheduled. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec + 1e-6 * ru.ru_stime.tv_usec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define DIE(...)                          \
    do {                                  \
        fprintf(stderr, __VA_ARGS__);     \
        fprintf(stderr, ": %s\n", ote_errmsg()); \
        exit(1);                          \
    } while (0)

static void run_config(int n, int h, int w, int steps, int warmup, int classes, int bn_onednn) {
    eng_ctx e;
    if (eng_init(&e, 0) != OTE_OK) DIE("eng_init");
    det_cfg cfg = {.num_classes = classes, .backbone = DET_BACKBONE_PYTORCHCV, .tf_padding = 0, .seed = 1,
                   .bn_onednn = bn_onednn};
    detector *d;
    if (det_create(&d, &e, &cfg) != OTE_OK) DIE("det_create");
    rng r;
    rng_seed(&r, 42);
    size_t npx = (size_t)n * 3 * h * w;
    float *img = malloc(npx * sizeof *img);
    for (size_t i = 0; i < npx; i++) img[i] = (float)rng_uniform(&r);
    int nb = 3 * n;
    float *boxes = malloc((size_t)nb * 4 * sizeof *boxes);
    int *labels = malloc((size_t)nb * sizeof *labels), *first = malloc((size_t)(n + 1) * sizeof *first);
    int *ih = malloc((size_t)n * sizeof *ih), *iw = malloc((size_t)n * sizeof *iw);
    for (int i = 0; i < n; i++) {
        ih[i] = h, iw[i] = w, first[i] = 3 * i;
        for (int k = 0; k < 3; k++) {
            float bw = (float)(0.1 + 0.4 * rng_uniform(&r)) * w, bh = (float)(0.1 + 0.4 * rng_uniform(&r)) * h;
            float x1 = (float)rng_uniform(&r) * (w - bw), y1 = (float)rng_uniform(&r) * (h - bh);
            float *b = boxes + 4 * (3 * i + k);
            b[0] = x1, b[1] = y1, b[2] = x1 + bw, b[3] = y1 + bh;
            labels[3 * i + k] = (int)rng_below(&r, (uint64_t)classes);
        }
    }
    first[n] = 3 * n;
    det_batch b = {.n = n, .h = h, .w = w, .images = img, .img_h = ih, .img_w = iw, .boxes = boxes, .labels = labels,
                   .first_box = first};
    double t0 = now();
    if (det_plan_train(d, n, h, w) != OTE_OK) DIE("det_plan_train");
    double t_plan = now() - t0;
    double *tt = malloc((size_t)(steps + 1) * sizeof *tt), *ti = malloc((size_t)(steps + 1) * sizeof *ti);
    det_losses L;
    double cpu0 = 0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) cpu0 = cpu_seconds();
        double a = now();
        if (det_forward_train(d, &b, &L) != OTE_OK) DIE("det_forward_train");
        if (det_backward(d) != OTE_OK) DIE("det_backward");
        /* tiny lr: keep the weights (and so the work) nearly fixed over the run */
        if (det_sgd_step(d, 1e-6) != OTE_OK) DIE("det_sgd_step");
        if (s >= warmup) tt[s - warmup] = now() - a;
    }
    double cpu_train = (cpu_seconds() - cpu0) / steps;
    /* Profiled pass (separate from the timed steps above, whose figures it must not disturb): wall
     * time per oneDNN primitive kind; the rest of the step is our own code (GroupNorm, upsample,
     * losses, assigner, gradient adds, SGD) and the gaps between primitives. */
    e.prof.on = 1;
    eng_prof_reset(&e);
    double tp = now();
    for (int s = 0; s < steps; s++) {
        if (det_forward_train(d, &b, &L) != OTE_OK) DIE("det_forward_train");
        if (det_backward(d) != OTE_OK) DIE("det_backward");
        if (det_sgd_step(d, 1e-6) != OTE_OK) DIE("det_sgd_step");
    }
    tp = (now() - tp) / steps;
    e.prof.on = 0;
    double conv_s = 0, prim_s = 0;
    for (int i = 0; i < e.prof.n; i++) {
        prim_s += e.prof.secs[i] / steps;
        if (e.prof.kind[i] == dnnl_convolution) conv_s += e.prof.secs[i] / steps;
    }
    printf("%4dx%-4d N=%d | profile of %d training steps, mean %.3f s/step:\n", h, w, n, steps, tp);
    for (int i = 0; i < e.prof.n; i++) {
        char nm[96];
        eng_prof_name(&e, i, nm, sizeof nm);
        printf("    %-44s %8.2f ms/step %5.1f%%  (%ld calls/step)\n", nm, 1e3 * e.prof.secs[i] / steps,
               100 * e.prof.secs[i] / steps / tp, e.prof.calls[i] / steps);
    }
    printf("    %-44s %8.2f ms/step %5.1f%%\n", "own code and gaps", 1e3 * (tp - prim_s), 100 * (tp - prim_s) / tp);
    printf("    convolutions: %.1f%% of the step, %.1f GFLOP/s inside them\n", 100 * conv_s / tp,
           det_flops_train(d, n, h, w) / conv_s / 1e9);
    long prims = e.n_primitives;
    t0 = now();
    if (det_plan_infer(d, n, h, w) != OTE_OK) DIE("det_plan_infer");
    double t_plan_i = now() - t0;
    float *sf = malloc((size_t)n * 4 * sizeof *sf);
    det_box **out = malloc((size_t)n * sizeof *out);
    int *nout = malloc((size_t)n * sizeof *nout);
    for (int i = 0; i < n; i++) {
        sf[4 * i] = sf[4 * i + 1] = sf[4 * i + 2] = sf[4 * i + 3] = 1.0f;
        out[i] = malloc(100 * sizeof(det_box));
    }
    for (int s = 0; s < warmup + steps; s++) {
        double a = now();
        if (det_predict(d, n, h, w, img, ih, iw, sf, out, nout, 100) != OTE_OK) DIE("det_predict");
        if (s >= warmup) ti[s - warmup] = now() - a;
    }
    double flops = det_flops_train(d, n, h, w), flops_i = det_flops_infer(d, n, h, w);
    double mt = median(tt, steps), mi = median(ti, steps);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t mp, mg, mo, ma;
    det_memory(d, &mp, &mg, &mo, &ma);
    printf("%4dx%-4d N=%d | train %7.2f img/s (step %7.3f s, conv %6.1f GFLOP/s of %6.1f GFLOP) | infer %7.2f img/s "
           "(%6.3f s, %6.1f GFLOP/s) | peak RSS %6.0f MB | plans %.1f + %.1f s | act block %zu MB, infer-plan prims %ld "
           "| loss %.4f | cpu %.3f s/step\n",
           h, w, n, n / mt, mt, flops / mt / 1e9, flops / 1e9, n / mi, mi, flops_i / mi / 1e9, ru.ru_maxrss / 1024.0,
           t_plan, t_plan_i, ma >> 20, e.n_primitives - prims - 0, L.total, cpu_train);
    /* machine-readable twin for bench/run_bench.sh */
    printf("RESULT {\"h\": %d, \"w\": %d, \"n\": %d, \"train_ips\": %.4f, \"step\": %.5f, \"gflops\": %.2f, "
           "\"gflop\": %.3f, \"infer_ips\": %.4f, \"rss_mb\": %.1f, \"loss\": %.5f, \"cpu_step\": %.4f, "
           "\"conv_gflops_in\": %.2f, \"conv_share\": %.3f}\n",
           h, w, n, n / mt, mt, flops / mt / 1e9, flops / 1e9, n / mi, ru.ru_maxrss / 1024.0, L.total, cpu_train,
           flops / conv_s / 1e9, conv_s / tp);
    fflush(stdout);
    for (int i = 0; i < n; i++) free(out[i]);
    free(out), free(nout), free(sf), free(tt), free(ti), free(img), free(boxes), free(labels), free(first), free(ih),
        free(iw);
    det_free(d);
    eng_free(&e);
}

int main(int argc, char **argv) {
    eng_omp_policy(argv); /* the wait policy `ote` runs with (engine/eng.h) */
    int steps = 5, warmup = 2, classes = 3, only_h = 0, only_w = 0, only_n = 0, bn_onednn = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc) classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            if (sscanf(argv[++i], "%dx%d", &only_h, &only_w) != 2) only_h = only_w = 0;
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) only_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bn") && i + 1 < argc && (!strcmp(argv[i + 1], "fused") || !strcmp(argv[i + 1], "onednn")))
            bn_onednn = !strcmp(argv[++i], "onednn");
        else {
            fprintf(stderr, "usage: bench_detector [--steps S] [--warmup W] [--classes C] [--only HxW] [--batch N] [--bn fused|onednn]\n");
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    static const int HW[3][2] = {{320, 320}, {512, 512}, {736, 992}};
    static const int NS[2] = {1, 8};
    printf("bench_detector: %d timed steps after %d warm-up, %d classes, BN %s; medians; one child process per configuration\n",
           steps, warmup, classes, bn_onednn ? "oneDNN bn + eltwise" : "fused (engine/bnrelu)");
    fflush(stdout);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 2; k++) {
            int h = HW[c][0], w = HW[c][1], n = NS[k];
            if (only_h && (h != only_h || w != only_w)) continue;
            if (only_n && n != only_n) continue;
            /* the heavy configuration gets fewer steps */
            int st = (h * w * n > 736 * 992 * 4) ? (steps < 3 ? steps : 3) : steps;
            int wu = (h * w * n > 736 * 992 * 4) ? 1 : warmup;
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 1;
            }
            if (pid == 0) {
                run_config(n, h, w, st, wu, classes, bn_onednn);
                _exit(0);
            }
            int status = 0;
            waitpid(pid, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) printf("%4dx%-4d N=%d | FAILED (status %d)\n", h, w, n, status);
            fflush(stdout);
        }
    return 0;
}
