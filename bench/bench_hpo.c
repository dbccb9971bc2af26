/* bench_hpo.c - optimiser benchmark: the SMBO (new defaults and the de9139a "legacy" optimiser,
 * selectable) against random search on standard test functions, and the optimiser's own time per
 * proposal.
 *
 * Functions (minimised; simple regret = best value found - global minimum), all `uniform`
 * parameters over the box:
 *   branin   Branin 2-D, x1 in [-5,10], x2 in [0,15]
 *   h3, h6   Hartmann3 [0,1]^3, Hartmann6 [0,1]^6
 *   rosen2   Rosenbrock 2-D on [-2,2]^2 (the original bench's)
 *   rosen4   Rosenbrock 4-D on [-5,10]^4 (a long curved valley, values up to ~1e6)
 *   levy4    Levy 4-D on [-10,10]^4
 *   st4      Styblinski-Tang 4-D on [-5,5]^4 (2^4 similar local minima, 14.1 apart per coordinate)
 *   rast4    Rastrigin 4-D on [-5.12,5.12]^4 (a regular lattice of local minima)
 *   ackley5  Ackley 5-D on [-32.768,32.768]^5 (flat plateau with one funnel)
 * Each run: num_init 5 Sobol points (no defaults trial), then SMBO; random search draws uniformly.
 * Median and quartiles (linear interpolation, numpy's default) of the regret over the seeds
 * (1000, 1001, ...; --seed0 moves the start) after 25, 50 and 100 evaluations.
 *
 * Timing: one run on Hartmann6 to 500 evaluations per method; median and max of the wall time and
 * of the thread CPU time (CLOCK_THREAD_CPUTIME_ID, robust to other processes) of the proposals
 * made with 95..104 and 490..499 finished points, with the load average printed alongside.
 *
 * usage: bench_hpo [--seeds N=20] [--seed0 S=1000] [--evals N=100] [--fn a,b,..] [--method new,legacy,random]
 *                  [--opt key=value,...] [--timing-only] [--no-timing] [--timing-evals N=500]
 *   --opt sets fields of the "new" method's smbo_opts (see smbo.h; e.g. ytf=none,tr=0) so that a
 *   single change can be measured against the defaults.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/rng.h"
#include "engine/ote.h"
#include "hpo/smbo.h"
#include "hpo/hp.h"

#define MAX_D 8

typedef struct fn {
    const char *key, *name;
    int d;
    double lo[MAX_D], hi[MAX_D];
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

static double rosenbrock(const double *x, int d) {
    double s = 0;
    for (int i = 0; i + 1 < d; i++) s += 100 * pow(x[i + 1] - x[i] * x[i], 2) + pow(1 - x[i], 2);
    return s;
}
static double rosenbrock2(const double *x) { return rosenbrock(x, 2); }
static double rosenbrock4(const double *x) { return rosenbrock(x, 4); }

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

static double styblinski_tang4(const double *x) {
    double s = 0;
    for (int i = 0; i < 4; i++) s += 0.5 * (pow(x[i], 4) - 16 * x[i] * x[i] + 5 * x[i]);
    return s;
}

static double rastrigin4(const double *x) {
    double s = 10 * 4;
    for (int i = 0; i < 4; i++) s += x[i] * x[i] - 10 * cos(2 * M_PI * x[i]);
    return s;
}

static double ackley5(const double *x) {
    double s1 = 0, s2 = 0;
    for (int i = 0; i < 5; i++) s1 += x[i] * x[i], s2 += cos(2 * M_PI * x[i]);
    return -20 * exp(-0.2 * sqrt(s1 / 5)) - exp(s2 / 5) + 20 + M_E;
}

#define BOX4(a, b) {a, a, a, a}, {b, b, b, b}
static const fn fns[] = {
    {"branin", "Branin (2-D)", 2, {-5, 0}, {10, 15}, 0.397887357729739, branin},
    {"h3", "Hartmann3 (3-D)", 3, {0, 0, 0}, {1, 1, 1}, -3.86278214782076, hartmann3},
    {"h6", "Hartmann6 (6-D)", 6, {0, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1}, -3.32236801141551, hartmann6},
    {"rosen2", "Rosenbrock (2-D, [-2,2]^2)", 2, {-2, -2}, {2, 2}, 0, rosenbrock2},
    {"rosen4", "Rosenbrock (4-D, [-5,10]^4)", 4, BOX4(-5, 10), 0, rosenbrock4},
    {"levy4", "Levy (4-D)", 4, BOX4(-10, 10), 0, levy4},
    /* minimum 4 x -39.16616570377142 at x_i = -2.903534 */
    {"st4", "Styblinski-Tang (4-D)", 4, BOX4(-5, 5), -156.66466281508568, styblinski_tang4},
    {"rast4", "Rastrigin (4-D)", 4, BOX4(-5.12, 5.12), 0, rastrigin4},
    {"ackley5", "Ackley (5-D)", 5, {-32.768, -32.768, -32.768, -32.768, -32.768},
     {32.768, 32.768, 32.768, 32.768, 32.768}, 0, ackley5},
};
#define N_FNS ((int)(sizeof fns / sizeof fns[0]))

enum { M_NEW = 0, M_LEGACY, M_RANDOM, N_METHODS };
static const char *const method_names[N_METHODS] = {"new", "legacy", "random"};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void load_avg(char *buf, size_t n) {
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = 0;
    if (f) {
        if (!fgets(buf, (int)n, f)) buf[0] = 0;
        fclose(f);
    }
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
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

/* Runs one optimisation; trace[i] = regret after i+1 evaluations; wall[i], cpu[i] = proposal
 * times (optional). Returns 0 or the first negative smbo code. */
static int run(const fn *f, int method, const smbo_opts *opts, uint64_t seed, int evals, double *trace, double *wall,
               double *cpu) {
    hp_space sp;
    make_space(f, &sp);
    smbo s;
    smbo_opts lo;
    smbo_opts_legacy(&lo);
    int st = smbo_init_opts(&s, &sp, 5, seed, method == M_LEGACY ? &lo : opts);
    if (st < 0) return st;
    rng r;
    rng_seed(&r, seed * 7919 + 1);
    double *xs = malloc((size_t)evals * f->d * sizeof *xs), *ys = malloc((size_t)evals * sizeof *ys);
    double best = HUGE_VAL;
    for (int i = 0; i < evals && st >= 0; i++) {
        double *x = xs + (size_t)i * f->d;
        double t0 = now(), c0 = cpu_now();
        if (method != M_RANDOM) {
            st = smbo_propose(&s, xs, i, xs, ys, i, x);
            if (st == 1) /* cannot happen on a continuous space; keep the run going */
                for (int j = 0; j < f->d; j++) x[j] = f->lo[j] + rng_uniform(&r) * (f->hi[j] - f->lo[j]);
        } else {
            for (int j = 0; j < f->d; j++) x[j] = f->lo[j] + rng_uniform(&r) * (f->hi[j] - f->lo[j]);
        }
        if (wall) wall[i] = now() - t0;
        if (cpu) cpu[i] = cpu_now() - c0;
        double v = f->f(x);
        ys[i] = -v; /* SMBO maximises */
        if (v < best) best = v;
        trace[i] = best - f->fmin;
    }
    free(xs);
    free(ys);
    smbo_free(&s);
    return st < 0 ? st : 0;
}

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* q-quantile of sorted v, numpy's linear interpolation */
static double quantile(const double *v, int n, double q) {
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    return lo + 1 < n ? v[lo] + (pos - lo) * (v[lo + 1] - v[lo]) : v[lo];
}

static void timing(int method, const smbo_opts *opts, int n) {
    double *trace = malloc((size_t)n * sizeof *trace), *wall = malloc((size_t)n * sizeof *wall),
           *cpu = malloc((size_t)n * sizeof *cpu);
    char la0[128], la1[128];
    load_avg(la0, sizeof la0);
    double t0 = now();
    if (run(&fns[2], method, opts, 1, n, trace, wall, cpu) < 0) printf("timing run failed\n");
    double total = now() - t0;
    load_avg(la1, sizeof la1);
    /* proposals made with 95..104 and 490..499 finished points */
    const int win_lo[] = {95, 490}, win_hi[] = {105, 500};
    for (int k = 0; k < 2; k++) {
        if (win_hi[k] > n) continue;
        double w[16], c[16], mw = 0, mc = 0;
        int m = 0;
        for (int i = win_lo[k]; i < win_hi[k]; i++, m++) {
            w[m] = wall[i], c[m] = cpu[i];
            mw = fmax(mw, w[m]), mc = fmax(mc, c[m]);
        }
        qsort(w, (size_t)m, sizeof *w, dcmp);
        qsort(c, (size_t)m, sizeof *c, dcmp);
        printf("| %s | %d-%d | %.4f s | %.4f s | %.4f s | %.4f s |\n", method_names[method], win_lo[k],
               win_hi[k] - 1, quantile(w, m, 0.5), mw, quantile(c, m, 0.5), mc);
    }
    printf("(%s: Hartmann6 run to %d evaluations took %.1f s; load average before: %s; after: %s)\n",
           method_names[method], n, total, la0, la1);
    fflush(stdout);
    free(trace);
    free(wall);
    free(cpu);
}

static int in_list(const char *list, const char *key) {
    if (!list) return 1;
    size_t k = strlen(key);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == k && !strncmp(p, key, k)) return 1;
        p += n + (e ? 1 : 0);
    }
    return 0;
}

int main(int argc, char **argv) {
    int seeds = 20, evals = 100, do_regret = 1, do_timing = 1, timing_evals = 500, seed0 = 1000;
    const char *fn_list = NULL, *method_list = "new,legacy,random", *opt_str = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--seeds") && v) seeds = atoi(v), i++;
        else if (!strcmp(a, "--evals") && v) evals = atoi(v), i++;
        else if (!strcmp(a, "--seed0") && v) seed0 = atoi(v), i++;
        else if (!strcmp(a, "--fn") && v) fn_list = v, i++;
        else if (!strcmp(a, "--method") && v) method_list = v, i++;
        else if (!strcmp(a, "--opt") && v) opt_str = v, i++;
        else if (!strcmp(a, "--timing-evals") && v) timing_evals = atoi(v), i++;
        else if (!strcmp(a, "--timing-only")) do_regret = 0;
        else if (!strcmp(a, "--no-timing")) do_timing = 0;
        else {
            fprintf(stderr, "bench_hpo: unknown argument '%s' (see the header of bench/bench_hpo.c)\n", a);
            return 2;
        }
    }
    if (seeds < 1 || evals < 1 || timing_evals < 1) {
        fprintf(stderr, "bench_hpo: --seeds, --evals and --timing-evals must be positive\n");
        return 2;
    }
    smbo_opts opts;
    smbo_opts_default(&opts);
    if (opt_str && smbo_opts_parse(&opts, opt_str) < 0) {
        fprintf(stderr, "bench_hpo: --opt '%s': %s\n", opt_str, ote_errmsg());
        return 2;
    }
    char desc[256];
    smbo_opts_format(&opts, desc, sizeof desc);
    printf("new = %s\n", desc);
    const int marks[] = {25, 50, 100};
    if (do_regret) {
        char la[128];
        load_avg(la, sizeof la);
        printf("HPO optimiser benchmark: simple regret, median [q25, q75] over %d seeds (load average %s)\n\n",
               seeds, la);
        printf("| function | method | after 25 | after 50 | after 100 |\n");
        printf("|---|---|---|---|---|\n");
        double *tr = malloc((size_t)seeds * evals * sizeof *tr);
        double *col = malloc((size_t)seeds * sizeof *col);
        double t_start = now();
        for (int fi = 0; fi < N_FNS; fi++) {
            if (!in_list(fn_list, fns[fi].key)) continue;
            for (int m = 0; m < N_METHODS; m++) {
                if (!in_list(method_list, method_names[m])) continue;
                double t0 = now();
                for (int sd = 0; sd < seeds; sd++) {
                    int st = run(&fns[fi], m, &opts, (uint64_t)seed0 + (uint64_t)sd, evals, tr + (size_t)sd * evals, NULL, NULL);
                    if (st < 0) {
                        fprintf(stderr, "bench_hpo: %s seed %d: %s\n", fns[fi].key, sd, ote_errmsg());
                        return 1;
                    }
                }
                printf("| %s | %s |", fns[fi].name, method_names[m]);
                for (int k = 0; k < 3; k++) {
                    if (marks[k] > evals) {
                        printf(" - |");
                        continue;
                    }
                    for (int sd = 0; sd < seeds; sd++) col[sd] = tr[(size_t)sd * evals + marks[k] - 1];
                    qsort(col, (size_t)seeds, sizeof *col, dcmp);
                    printf(" %.3g [%.3g, %.3g] |", quantile(col, seeds, 0.5), quantile(col, seeds, 0.25),
                           quantile(col, seeds, 0.75));
                }
                printf(" %.0f s\n", now() - t0);
                fflush(stdout);
            }
        }
        printf("\n(regret table took %.0f s)\n\n", now() - t_start);
        free(tr);
        free(col);
    }
    if (do_timing) {
        printf("Proposal time, Hartmann6, single thread (wall clock depends on the load; CPU time much less):\n\n");
        printf("| method | finished points | wall median | wall max | CPU median | CPU max |\n");
        printf("|---|---|---|---|---|---|\n");
        for (int m = 0; m < M_RANDOM; m++)
            if (in_list(method_list, method_names[m])) timing(m, &opts, timing_evals);
    }
    return 0;
}
