/* bench_conv_peak.c - this machine's dense f32 convolution peak, through the project's own conv
 * layer (engine/conv.h, nChw16c activations, jit:avx512_core on AVX-512 machines).
 *
 *   bench_conv_peak [reps=30]
 *
 * For a dense 3x3 64->64 convolution (pad 1, stride 1) at batch 8 80x80 (onednn-notes §2.8's
 * reference case), batch 8 40x40 (the head towers' P3 level at a 320x320 input) and batch 1
 * 92x124 (P3 at 736x992), and a 1x1 24->144 at batch 8 80x80 (MobileNetV2 expansion), prints forward, backward-data and backward-weights GFLOP/s
 * (2 FLOPs per MAC) with 1 thread and with all threads; each thread count runs in its own child
 * process (oneDNN fixes the thread count when a primitive is created). Medians over `reps` runs
 * after 3 warm-up runs; the machine is shared, so quote medians of several invocations.
 * This is the "peak" that bench_detector's in-convolution GFLOP/s is compared with.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/arena.h"
#include "engine/conv.h"
#include "engine/eng.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "engine/tensor.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define DIE(what)                                                  \
    do {                                                           \
        fprintf(stderr, "bench_conv_peak: %s: %s\n", what, ote_errmsg()); \
        exit(1);                                                   \
    } while (0)

static void fill(tensor *t, rng *r) {
    size_t n = t->bytes / sizeof(float);
    float *p = t->data;
    for (size_t i = 0; i < n; i++) p[i] = (float)(rng_uniform(r) - 0.5);
}

/* One case: returns GFLOP/s of fwd, bwd-data, bwd-weights in g[3]. */
static void run_case(eng_ctx *e, int n, int ic, int oc, int hh, int ww, int k, int reps, double g[3]) {
    arena params, grads, acts;
    arena_init(&params, "params"), arena_init(&grads, "grads"), arena_init(&acts, "acts");
    conv_cfg cfg = {.ic = ic, .oc = oc, .kh = k, .kw = k, .stride_h = 1, .stride_w = 1,
                    .pad_t = k / 2, .pad_l = k / 2, .pad_b = k / 2, .pad_r = k / 2, .groups = 1};
    conv_layer l;
    if (conv_layer_init(&l, e, &cfg, &params, &grads) != OTE_OK) DIE("conv_layer_init");
    tensor x, y, dy, dx;
    if (tensor_plan_act(e, &x, n, ic, hh, ww, &acts) || tensor_plan_act(e, &y, n, oc, hh, ww, &acts) ||
        tensor_plan_act(e, &dy, n, oc, hh, ww, &acts) || tensor_plan_act(e, &dx, n, ic, hh, ww, &acts))
        DIE("tensor_plan_act");
    if (arena_commit(&params) || arena_commit(&grads) || arena_commit(&acts)) DIE("arena_commit");
    rng r;
    rng_seed(&r, 7);
    fill(&l.w, &r), fill(&x, &r), fill(&dy, &r);
    if (conv_refresh_weights(&l, e) != OTE_OK) DIE("conv_refresh_weights");
    conv_plan p;
    if (conv_plan_init(&p, e, &l, &x, &y, &dy, &dx, 1) != OTE_OK) DIE("conv_plan_init");
    double flop = 2.0 * n * oc * hh * ww * ic * k * k;
    double *t = malloc((size_t)reps * sizeof *t);
    dnnl_primitive_t prims[3] = {p.fwd, p.bwd_data, p.bwd_w};
    const dnnl_exec_arg_t *args[3] = {p.fwd_args, p.bd_args, p.bw_args};
    int nargs[3] = {p.n_fwd_args, p.n_bd_args, p.n_bw_args};
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < reps + 3; i++) {
            double a = now();
            if (eng_exec(e, prims[pass], nargs[pass], args[pass], "conv") != OTE_OK) DIE("exec");
            if (i >= 3) t[i - 3] = now() - a;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        g[pass] = flop / t[reps / 2] / 1e9;
    }
    free(t);
    conv_plan_free(&p);
    conv_layer_free(&l);
    tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx);
    arena_free(&params), arena_free(&grads), arena_free(&acts);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 30;
    if (reps < 1) reps = 1;
    static const struct { int n, ic, oc, h, w, k; const char *name; } C[] = {
        {8, 64, 64, 80, 80, 3, "N8 3x3 64->64 80x80"},
        {8, 64, 64, 40, 40, 3, "N8 3x3 64->64 40x40"},
        {1, 64, 64, 92, 124, 3, "N1 3x3 64->64 92x124"},
        {8, 24, 144, 80, 80, 1, "N8 1x1 24->144 80x80"},
    };
    int all = (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_conv_peak: dense f32 conv, medians of %d runs, GFLOP/s (fwd / bwd-data / bwd-weights)\n", reps);
    fflush(stdout);
    int threads[2] = {1, all};
    for (int ti = 0; ti < (all > 1 ? 2 : 1); ti++) {
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            eng_ctx e;
            if (eng_init(&e, threads[ti]) != OTE_OK) DIE("eng_init");
            for (size_t c = 0; c < sizeof C / sizeof C[0]; c++) {
                double g[3];
                run_case(&e, C[c].n, C[c].ic, C[c].oc, C[c].h, C[c].w, C[c].k, reps, g);
                printf("  %d thread%s  %-22s %7.1f / %7.1f / %7.1f\n", threads[ti], threads[ti] > 1 ? "s" : " ",
                       C[c].name, g[0], g[1], g[2]);
                fflush(stdout);
            }
            eng_free(&e);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    }
    return 0;
}
