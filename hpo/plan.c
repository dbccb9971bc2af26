/* plan.c - the planner of plan.h (formula and procedure documented there). */
#include "hpo/plan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/ote.h"

#define Z_STEP 0.05

static int raised_side(int full, double z, int min_side) {
    int v = hpo_plan_trial_size(full, z);
    if (v < min_side) v = full < min_side ? full : min_side;
    return v;
}

double hpo_plan_pixel_share(const hpo_budget_in *in, double z) {
    if (in->input_w <= 0 || in->input_h <= 0) return z * z;
    return (double)raised_side(in->input_w, z, in->min_side) * raised_side(in->input_h, z, in->min_side) /
           ((double)in->input_w * in->input_h);
}

/* img(s N) / img(N): the trainer's subset is (int)(N s) images, at least 1. */
static double img_share(const hpo_budget_in *in, double s) {
    long n = in->full_dataset_size, k = (long)((double)n * s);
    if (k < 1) k = 1;
    if (!in->epoch_images) return (double)k / (double)n;
    return (double)in->epoch_images(in->epoch_ctx, k) / (double)in->epoch_images(in->epoch_ctx, n);
}

double hpo_plan_cost(const hpo_budget_in *in, int trials, int epochs, double s, double z) {
    double v = in->val_fraction;
    if (in->workers > 1) trials = (trials + in->workers - 1) / in->workers; /* waves of parallel trials */
    return (double)trials * epochs * hpo_plan_pixel_share(in, z) * ((1 - v) * img_share(in, s) + v) / in->full_epochs;
}

double hpo_plan_horizon(const hpo_budget_in *in, int epochs, double s) {
    return (double)epochs * img_share(in, s) / in->full_epochs;
}

/* z values live on a 0.05 grid; keep them exact decimals */
static double zr(double z) { return round(z / Z_STEP) * Z_STEP; }

typedef struct plan_state {
    const hpo_budget_in *in;
    double b;               /* budget in trainings: R - 1 */
    int T, I;
    double s, z;
    int fT, fI, fs, fz;     /* fixed by hpo_config.yaml */
    double s_min1, s_min2;  /* subset floors of the two shrink stages */
} plan_state;

static double ps_cost(const plan_state *p) { return hpo_plan_cost(p->in, p->T, p->I, p->s, p->z); }
static double ps_h(const plan_state *p) { return hpo_plan_horizon(p->in, p->I, p->s); }

/* One horizon step down (epochs first, then subset); 0 if neither can move above h_floor. */
static int ps_horizon_down(plan_state *p, double h_floor, double s_floor) {
    if (ps_h(p) <= h_floor) return 0;
    if (!p->fI && p->I > 1) {
        p->I--;
        return 1;
    }
    if (!p->fs && p->s > s_floor + 1e-12) {
        p->s = fmax(s_floor, p->s / 1.05);
        return 1;
    }
    return 0;
}

static void ps_shrink(plan_state *p) {
    while (ps_cost(p) > p->b && !p->fz && p->z > HPO_PLAN_Z_MIN + 1e-9) p->z = zr(p->z - Z_STEP);
    while (ps_cost(p) > p->b && ps_horizon_down(p, HPO_PLAN_H_GOOD, p->s_min1)) {}
    while (ps_cost(p) > p->b && !p->fT && p->T > HPO_PLAN_T_MIN) p->T--;
    while (ps_cost(p) > p->b && ps_horizon_down(p, HPO_PLAN_H_MIN, p->s_min2)) {}
    while (ps_cost(p) > p->b && !p->fT && p->T > 2) p->T--;
}

/* Applies `step` (0: T + 1, 1: z + 0.05, 2: horizon + 1 step) if the result fits; 1 if it did. */
static int ps_try(plan_state *p, int step, int t_cap) {
    plan_state q = *p;
    const int E = p->in->full_epochs;
    if (step == 0) {
        if (p->fT || p->T >= t_cap) return 0;
        q.T++;
    } else if (step == 1) {
        if (p->fz || p->z >= 1 - 1e-9) return 0;
        q.z = zr(p->z + Z_STEP);
    } else {
        if (!p->fI && p->I < E) q.I++;
        else if (!p->fs && p->s < 1) q.s = fmin(1.0, p->s * 1.05);
        else return 0;
        if (hpo_plan_horizon(p->in, q.I, q.s) > 1 + 1e-9) return 0; /* never longer than the full run */
    }
    if (ps_cost(&q) > p->b) return 0;
    *p = q;
    return 1;
}

static void ps_grow(plan_state *p) {
    int t_max = 20 * (p->in->workers > 1 ? p->in->workers : 1) * p->in->num_hyperparams;
    for (;;) { /* fidelity: the less advanced of resize and horizon first, the other if it is blocked */
        double pz = p->fz ? 2 : (p->z - HPO_PLAN_Z_MIN) / (1 - HPO_PLAN_Z_MIN), ph = ps_h(p);
        int first = pz <= ph ? 1 : 2;
        if (!ps_try(p, first, 0) && !ps_try(p, 3 - first, 0)) break;
    }
    while (ps_try(p, 0, t_max)) {}
}

int hpo_plan_budget(const hpo_budget_in *in, hpo_plan *out) {
    memset(out, 0, sizeof *out);
    if (!(in->train_seconds > 0) || in->full_epochs < 1 || in->full_dataset_size < 1 || in->num_hyperparams < 1 ||
        in->val_fraction < 0 || in->val_fraction > 1)
        return ote_err(OTE_EINVAL,
                       "hpo budget: need positive training time, epochs, dataset size and parameters "
                       "(got %g s, %d epochs, %ld images, %d parameters, validation share %g)",
                       in->train_seconds, in->full_epochs, in->full_dataset_size, in->num_hyperparams,
                       in->val_fraction);
    plan_state p = {.in = in, .b = in->ratio - 1};
    long N = in->full_dataset_size;
    p.fT = in->fixed_trials > 0, p.fI = in->fixed_epochs > 0, p.fs = in->fixed_subset > 0, p.fz = in->fixed_resize > 0;
    p.T = p.fT ? in->fixed_trials : HPO_PLAN_T_PER_PARAM * in->num_hyperparams;
    p.I = p.fI ? in->fixed_epochs : in->full_epochs;
    p.s = p.fs ? in->fixed_subset : 1.0;
    p.z = p.fz ? in->fixed_resize : 1.0;
    p.s_min2 = fmax(0.05, 1.0 / (double)N);
    p.s_min1 = fmax(p.s_min2, fmin(1.0, 500.0 / (double)N)); /* OTE's subset rule */
    ps_shrink(&p);
    if (ps_cost(&p) > p.b) out->over_budget = 1;
    else ps_grow(&p);
    out->num_trials = p.T;
    out->epochs = p.I;
    out->subset_ratio = p.s;
    out->image_resize = p.z;
    out->cost = ps_cost(&p);
    out->expected_seconds = out->cost * in->train_seconds;
    out->horizon = ps_h(&p);
    out->workers = in->workers > 1 ? in->workers : 1;
    out->meaningful = !out->over_budget && out->horizon >= HPO_PLAN_H_MIN - 1e-9 && p.z >= HPO_PLAN_Z_MIN - 1e-9;
    return 0;
}

int hpo_plan_trial_size(int full, double z) {
    int v = (int)floor(full * z / 32.0 + 1e-9) * 32;
    return v < 32 ? 32 : v;
}

int hpo_plan_format(const hpo_plan *p, long n, int w, int h, char *buf, int size) {
    long sub = (long)floor(p->subset_ratio * (double)n + 1e-9);
    if (sub < 1) sub = 1;
    char px[64] = "", par[48] = "";
    if (p->workers > 1) snprintf(par, sizeof par, " on %d parallel workers", p->workers);
    if (w > 0 && h > 0) snprintf(px, sizeof px, "%dx%d ", hpo_plan_trial_size(w, p->image_resize),
                                 hpo_plan_trial_size(h, p->image_resize));
    return snprintf(buf, (size_t)size,
                    "HPO plan: %d trials x %d epochs%s, subset %ld of %ld training images (subset_ratio %.4g), "
                    "trial input %s(image_resize %.4g), each trial %.0f%% of a full training's iterations, "
                    "expected HPO time %.0f s%s (%.2f x one training)%s",
                    p->num_trials, p->epochs, par, sub, n, p->subset_ratio, px, p->image_resize, 100 * p->horizon,
                    p->expected_seconds, p->workers > 1 ? " wall clock" : "", p->cost,
                    p->over_budget ? "; even this minimal plan exceeds the requested ratio" : "");
}

void hpo_plan_budget_from_config(hpo_budget_in *in, const hpo_config *c) {
    in->fixed_trials = c->num_trials;
    in->fixed_epochs = c->max_iterations;
    in->fixed_subset = c->subset_ratio;
    in->fixed_resize = c->image_resize;
    in->num_hyperparams = c->space.n;
}

void hpo_plan_apply(const hpo_plan *p, hpo_config *c) {
    if (c->num_trials <= 0) c->num_trials = p->num_trials;
    if (c->max_iterations <= 0) c->max_iterations = p->epochs;
    if (c->subset_ratio <= 0) c->subset_ratio = p->subset_ratio;
    if (c->image_resize <= 0) c->image_resize = p->image_resize;
}
