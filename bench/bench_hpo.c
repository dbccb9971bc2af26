/* bench_hpo.c - optimiser benchmark: our SMBO (GP + log-EI) against random search on standard test
 * functions, and the optimiser's own time per proposal.
 *
 * Functions (minimised; simple regret = best value found - global minimum):
 *   Branin (2-D, x1 in [-5,10], x2 in [0,15]), Hartmann3 (3-D, [0,1]^3), Hartmann6 (6-D, [0,1]^6),
 *   Rosenbrock (2-D, [-2,2]^2), Levy (4-D, [-10,10]^4).
 * Each run: `uniform` parameters, num_init 5 Sobol points (no defaults trial), then SMBO; random
 * search draws uniformly. Median regret over the seeds after 10/30/50/100 evaluations.
 * Timing: one SMBO run of Hartmann6 to 200 evaluations; mean and max wall time of the proposals
 * made with 30..49 and 180..199 finished points (means include the periodic full ML refits).
 *
 * usage: bench_hpo [seeds=20] [evals=100]   (seeds 0: timing only)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/rng.h"
#include "hpo/smbo.h"
#include "hpo/space.h"

typedef struct fn {
    const char *name;
    int d;
    double lo[6], hi[6];
    double fmin;
    double (*f)(const double *x);
} fn;

static double branin(const double *x) {
    double a = 1, b = 5.1 / (4 * M_PI * M_PI), c = 5 / M_PI, r = 6, s = 10, t = 1 / (8 * M_PI);
    double u = x[1] - b * x[0] * x[0] + c * x[0] - r;
    return a * u * u + s * (1 - t) * cos(x[0]) + s;
}

static double hartmann(const double *x, int d) {
    static const double a3[4][3] = {{3, 10, 30}, {0.1, 10, 35}, {3, 10, 30}, {0.1, 10, 35}};
    static const double p3[4][3] = {{0.3689, 0.1170, 0.2673}, {0.4699, 0.4387, 0.7470},
                                    {0.1091, 0.8732, 0.5547}, {0.0381, 0.5743, 0.8828}};
    static const double a6[4][6] = {{10, 3, 17, 3.5, 1.7, 8}, {0.05, 10, 17, 0.1, 8, 14},
                                    {3, 3.5, 1.7, 10, 17, 8}, {17, 8, 0.05, 10, 0.1, 14}};
    static const double p6[4][6] = {{0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886},
                                    {0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991},
                                    {0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650},
                                    {0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381}};
    static const double al[4] = {1.0, 1.2, 3.0, 3.2};
    double s = 0;
    for (int i = 0; i < 4; i++) {
        double e = 0;
        for (int j = 0; j < d; j++) {
            double a = d == 3 ? a3[i][j] : a6[i][j], p = d == 3 ? p3[i][j] : p6[i][j];
            e += a * (x[j] - p) * (x[j] - p);
        }
        s -= al[i] * exp(-e);
    }
    return s;
}
static double hartmann3(const double *x) { return hartmann(x, 3); }
static double hartmann6(const double *x) { return hartmann(x, 6); }

static double rosenbrock2(const double *x) {
    return 100 * (x[1] - x[0] * x[0]) * (x[1] - x[0] * x[0]) + (1 - x[0]) * (1 - x[0]);
}

static double levy4(const double *x) {
    int d = 4;
    double w[4];
    for (int i = 0; i < d; i++) w[i] = 1 + (x[i] - 1) / 4;
    double s = sin(M_PI * w[0]) * sin(M_PI * w[0]);
    for (int i = 0; i < d - 1; i++)
        s += (w[i] - 1) * (w[i] - 1) * (1 + 10 * pow(sin(M_PI * w[i] + 1), 2));
    s += (w[d - 1] - 1) * (w[d - 1] - 1) * (1 + pow(sin(2 * M_PI * w[d - 1]), 2));
    return s;
}

static const fn fns[] = {
    {"Branin (2-D)", 2, {-5, 0}, {10, 15}, 0.397887357729739, branin},
    {"Hartmann3 (3-D)", 3, {0, 0, 0}, {1, 1, 1}, -3.86278214782076, hartmann3},
    {"Hartmann6 (6-D)", 6, {0, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1}, -3.32236801141551, hartmann6},
    {"Rosenbrock (2-D)", 2, {-2, -2}, {2, 2}, 0, rosenbrock2},
    {"Levy (4-D)", 4, {-10, -10, -10, -10}, {10, 10, 10, 10}, 0, levy4},
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void make_space(const fn *f, hp_space *sp) {
    memset(sp, 0, sizeof *sp);
    sp->n = f->d;
    for (int j = 0; j < f->d; j++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", j);
        double r[2] = {f->lo[j], f->hi[j]};
        hp_param_make(&sp->p[j], name, HP_UNIFORM, r, 2, 0, "bench");
    }
}

/* Runs one optimisation; trace[i] = best f after i+1 evaluations. prop_t[i] = proposal time. */
static void run(const fn *f, int smbo_on, uint64_t seed, int evals, double *trace, double *prop_t) {
    hp_space sp;
    make_space(f, &sp);
    smbo s;
    smbo_init(&s, &sp, 5, seed);
    rng r;
    rng_seed(&r, seed * 7919 + 1);
    double *xs = malloc((size_t)evals * f->d * sizeof *xs), *ys = malloc((size_t)evals * sizeof *ys);
    double best = HUGE_VAL;
    for (int i = 0; i < evals; i++) {
        double *x = xs + (size_t)i * f->d;
        double t0 = now();
        if (smbo_on) {
            if (smbo_propose(&s, xs, i, xs, ys, i, x) != 0) {
                for (int j = 0; j < f->d; j++) x[j] = f->lo[j] + rng_uniform(&r) * (f->hi[j] - f->lo[j]);
            }
        } else {
            for (int j = 0; j < f->d; j++) x[j] = f->lo[j] + rng_uniform(&r) * (f->hi[j] - f->lo[j]);
        }
        if (prop_t) prop_t[i] = now() - t0;
        double v = f->f(x);
        ys[i] = -v; /* SMBO maximises */
        if (v < best) best = v;
        trace[i] = best - f->fmin;
    }
    free(xs);
    free(ys);
    smbo_free(&s);
}

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, dcmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    int seeds = argc > 1 ? atoi(argv[1]) : 20;
    int evals = argc > 2 ? atoi(argv[2]) : 100;
    const int marks[] = {10, 30, 50, 100};
    printf("HPO optimiser benchmark: median simple regret over %d seeds\n\n", seeds);
    printf("| function | method | after 10 | after 30 | after 50 | after 100 |\n");
    printf("|---|---|---|---|---|---|\n");
    double *tr = malloc((size_t)seeds * evals * sizeof *tr);
    double *col = malloc((size_t)seeds * sizeof *col);
    double t_start = now();
    for (size_t fi = 0; seeds > 0 && fi < sizeof fns / sizeof fns[0]; fi++) {
        for (int m = 1; m >= 0; m--) {
            for (int sd = 0; sd < seeds; sd++) run(&fns[fi], m, 1000 + (uint64_t)sd, evals, tr + (size_t)sd * evals, NULL);
            printf("| %s | %s |", fns[fi].name, m ? "SMBO" : "random");
            for (int k = 0; k < 4; k++) {
                if (marks[k] > evals) {
                    printf(" - |");
                    continue;
                }
                for (int sd = 0; sd < seeds; sd++) col[sd] = tr[(size_t)sd * evals + marks[k] - 1];
                printf(" %.4g |", median(col, seeds));
            }
            printf("\n");
            fflush(stdout);
        }
    }
    printf("\n(regret table took %.0f s)\n\n", now() - t_start);
    /* proposal time with 50 and 200 finished points */
    int n = 200;
    double *trace = malloc((size_t)n * sizeof *trace), *pt = malloc((size_t)n * sizeof *pt);
    run(&fns[2], 1, 1, n, trace, pt);
    const int at[] = {50, 200};
    for (int k = 0; k < 2; k++) {
        double sum = 0, mx = 0;
        for (int i = at[k] - 20; i < at[k]; i++) {
            sum += pt[i];
            mx = fmax(mx, pt[i]);
        }
        printf("Hartmann6 proposal time with %d-%d finished points: mean %.4f s, max %.4f s\n", at[k] - 20,
               at[k] - 1, sum / 20, mx);
    }
    free(trace);
    free(pt);
    free(tr);
    free(col);
    return 0;
}
