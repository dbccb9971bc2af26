/* test_engine_sgd.c - engine/sgd.c against torch.optim.SGD fixtures (tests/reference/sgd_ref.py:
 * momentum 0.9, weight decay 1e-4 and 0.05, 4 steps with per-step gradients and warm-up lr,
 * including the first step that initialises the momentum buffer), the mmcv warm-up formula at
 * it = 0, W/2, W-1, W, untouched non-registered tensors (BN running stats), span merging, a large
 * multi-chunk update against a naive double loop, and gradient-norm clipping.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/rng.h"
#include "engine/sgd.h"
#include "engine/ote.h"
#include "tests/expect.h"
#include "tests/fixture.h"

static double rel_f(const float *a, const double *ref, long n) {
    double num = 0, den = 1e-30;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d != d) return INFINITY;
        if (d > num) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return num / den;
}

static void run_fixture(eng_ctx *e, const fx_file *f, const char *pre, float wd, double base_lr) {
    char cname[32];
    snprintf(cname, sizeof cname, "fixture run %s", pre);
    expect_case(cname);
    arena params, grads;
    arena_init(&params, "params"), arena_init(&grads, "grads");
    tensor w, rs, b, gw, gb;
    ASSERT(tensor_plan_plain(e, &w, TL_X, 12, 1, 1, 1, &params) == 0);
    ASSERT(tensor_plan_plain(e, &rs, TL_X, 7, 1, 1, 1, &params) == 0); /* BN running stat: not trained */
    ASSERT(tensor_plan_plain(e, &b, TL_X, 5, 1, 1, 1, &params) == 0);
    ASSERT(tensor_plan_plain(e, &gw, TL_X, 12, 1, 1, 1, &grads) == 0);
    ASSERT(tensor_plan_plain(e, &gb, TL_X, 5, 1, 1, 1, &grads) == 0);
    sgd o;
    sgd_init(&o, 0.9f, wd, &params, &grads);
    ASSERT(sgd_add(&o, &w, &gw) == 0 && sgd_add(&o, &b, &gb) == 0);
    ASSERT(arena_commit(&params) == 0 && arena_commit(&grads) == 0 && sgd_commit(&o) == 0);
    EXPECT(o.n_spans == 2, "run %s: a running stat between w and b keeps 2 spans (got %d)", pre, o.n_spans);
    char nm[32];
    snprintf(nm, sizeof nm, "%s_w0", pre);
    const fx_array *a = fx_get(f, nm);
    for (int i = 0; i < 12; i++) w.data[i] = (float)a->v[i];
    snprintf(nm, sizeof nm, "%s_b0", pre);
    a = fx_get(f, nm);
    for (int i = 0; i < 5; i++) b.data[i] = (float)a->v[i];
    for (int i = 0; i < 7; i++) rs.data[i] = 42.0f + i;
    snprintf(nm, sizeof nm, "%s_lr", pre);
    const fx_array *lrs = fx_get(f, nm);
    double worst = 0, worst_lr = 0;
    for (int k = 0; k < 4; k++) {
        double lr = sgd_lr_warmup(base_lr, k, 3, 1.0 / 3.0);
        double elr = fabs(lr - lrs->v[k]) / lrs->v[k];
        if (elr > worst_lr) worst_lr = elr;
        snprintf(nm, sizeof nm, "%s_gw%d", pre, k);
        a = fx_get(f, nm);
        for (int i = 0; i < 12; i++) gw.data[i] = (float)a->v[i];
        snprintf(nm, sizeof nm, "%s_gb%d", pre, k);
        a = fx_get(f, nm);
        for (int i = 0; i < 5; i++) gb.data[i] = (float)a->v[i];
        sgd_step(&o, lr);
        snprintf(nm, sizeof nm, "%s_w%d", pre, k + 1);
        double ew = rel_f(w.data, fx_get(f, nm)->v, 12);
        snprintf(nm, sizeof nm, "%s_b%d", pre, k + 1);
        double eb = rel_f(b.data, fx_get(f, nm)->v, 5);
        /* float32 on both sides, torch's add(alpha) may use FMA: 1e-6 relative to the largest param. */
        EXPECT_ERR(ew, 1e-6, "run %s step %d (lr %.6g%s): w vs torch.optim.SGD, rel err", pre, k, lr,
                   k == 0 ? ", buffer initialised with g" : "");
        EXPECT_ERR(eb, 1e-6, "run %s step %d: b vs torch.optim.SGD, rel err", pre, k);
        if (ew > worst) worst = ew;
        if (eb > worst) worst = eb;
    }
    EXPECT_ERR(worst_lr, 1e-15, "run %s: sgd_lr_warmup matches the script's lr at it = 0..3, worst rel err", pre);
    int untouched = 1;
    for (int i = 0; i < 7; i++) untouched &= rs.data[i] == 42.0f + i;
    EXPECT(untouched, "run %s: non-registered tensor (BN running stat) untouched by 4 steps", pre);
    printf("     run %s: largest relative error vs torch over 4 steps: %.3g\n", pre, worst);
    sgd_free(&o);
    tensor_free(&w), tensor_free(&rs), tensor_free(&b), tensor_free(&gw), tensor_free(&gb);
    arena_free(&params), arena_free(&grads);
}

/* Many tensors, adjacent in both arenas (merged into one span), multi-chunk sizes, 3 steps vs a
 * naive double loop; then clipping. */
static void run_large(eng_ctx *e) {
    expect_case("large multi-chunk update and clipping");
    enum { NT = 5 };
    const int sizes[NT] = {20000, 37, 1, 9000, 64};
    arena params, grads;
    arena_init(&params, "params"), arena_init(&grads, "grads");
    tensor p[NT], g[NT];
    for (int t = 0; t < NT; t++) {
        ASSERT(tensor_plan_plain(e, &p[t], TL_X, sizes[t], 1, 1, 1, &params) == 0);
        ASSERT(tensor_plan_plain(e, &g[t], TL_X, sizes[t], 1, 1, 1, &grads) == 0);
    }
    sgd o;
    sgd_init(&o, 0.9f, 1e-4f, &params, &grads);
    for (int t = 0; t < NT; t++) ASSERT(sgd_add(&o, &p[t], &g[t]) == 0);
    ASSERT(arena_commit(&params) == 0 && arena_commit(&grads) == 0 && sgd_commit(&o) == 0);
    EXPECT(o.n_spans == 1, "5 adjacent tensors merge into 1 span (got %d)", o.n_spans);
    rng gen;
    rng_seed(&gen, 9);
    long tot = 0;
    for (int t = 0; t < NT; t++) tot += sizes[t];
    double *rp = malloc((size_t)tot * sizeof *rp), *rm = calloc((size_t)tot, sizeof *rm);
    long k = 0;
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < sizes[t]; i++) p[t].data[i] = (float)rng_normal(&gen), rp[k++] = p[t].data[i];
    double worst = 0;
    for (int step = 0; step < 3; step++) {
        double lr = sgd_lr_warmup(0.008, step, 200, 1.0 / 3.0);
        k = 0;
        for (int t = 0; t < NT; t++)
            for (int i = 0; i < sizes[t]; i++) {
                g[t].data[i] = (float)rng_normal(&gen);
                double d = (double)g[t].data[i] + 1e-4 * rp[k];
                rm[k] = step == 0 ? d : 0.9 * rm[k] + d;
                rp[k] -= lr * rm[k];
                k++;
            }
        sgd_step(&o, lr);
        k = 0;
        for (int t = 0; t < NT; t++) {
            double e1 = rel_f(p[t].data, rp + k, sizes[t]);
            if (e1 > worst) worst = e1;
            k += sizes[t];
        }
    }
    EXPECT_ERR(worst, 1e-6, "29102 params in 5 tensors, 3 steps vs naive double SGD, rel err");

    double ss = 0;
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < sizes[t]; i++) ss += (double)g[t].data[i] * (double)g[t].data[i];
    double norm_ref = sqrt(ss), norm = sgd_grad_norm(&o);
    EXPECT_REL(norm, norm_ref, 1e-12, "grad norm vs naive");
    double before = sgd_clip_grad_norm(&o, 2 * norm_ref);
    double after = sgd_grad_norm(&o);
    EXPECT(before == norm && after == norm, "clip with max_norm > norm leaves grads unchanged");
    sgd_clip_grad_norm(&o, 0.5 * norm_ref);
    after = sgd_grad_norm(&o);
    EXPECT_NEAR(after, 0.5 * norm_ref, 1e-6 * norm_ref, "clip with max_norm = norm/2: new norm (tol 1e-06 * norm)");
    free(rp), free(rm);
    sgd_free(&o);
    for (int t = 0; t < NT; t++) tensor_free(&p[t]), tensor_free(&g[t]);
    arena_free(&params), arena_free(&grads);
}

int main(void) {
    eng_ctx e;
    if (eng_init(&e, 0) < 0) {
        fprintf(stderr, "eng_init: %s\n", ote_errmsg());
        return 1;
    }
    expect_case("sgd_lr_warmup formula");
    /* Warm-up (OTE: W = 200, ratio 1/3, base 0.008), values computed by hand from the mmcv rule. */
    const struct {
        long it;
        double want;
    } wu[] = {{0, 0.008 / 3.0}, {100, 0.008 * 2.0 / 3.0}, {199, 0.008 * (1.0 - 1.0 / 300.0)}, {200, 0.008}, {5000, 0.008}};
    for (int i = 0; i < 5; i++) {
        double lr = sgd_lr_warmup(0.008, wu[i].it, 200, 1.0 / 3.0);
        EXPECT_NEAR(lr, wu[i].want, 1e-15, "sgd_lr_warmup(0.008, it=%ld, W=200, 1/3)", wu[i].it);
    }
    const char *src = getenv("OTE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/sgd_ref.fx", src ? src : ".");
    fx_file f;
    if (fx_load(&f, path) == 0) {
        run_fixture(&e, &f, "a", 1e-4f, 0.01);
        run_fixture(&e, &f, "c", 0.05f, 0.05);
        fx_free(&f);
    } else {
        EXPECT(0, "load fixture %s", path);
    }
    run_large(&e);
    eng_free(&e);
    return expect_finish();
}
