/* budget.c - the planner of budget.h (formula and procedure documented there). */
#include "hpo/budget.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/status.h"

#define Z_MIN 0.25
#define Z_STEP 0.05
#define T_MIN 5

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

double hpo_plan_cost(const hpo_budget_in *in, int trials, int epochs, double s, double z) {
    double v = in->val_fraction;
    return (double)trials * epochs * hpo_plan_pixel_share(in, z) * ((1 - v) * s + v) / in->full_epochs;
}

/* z values live on a 0.05 grid; keep them exact decimals */
static double zr(double z) { return round(z / Z_STEP) * Z_STEP; }

int hpo_plan_budget(const hpo_budget_in *in, hpo_plan *out) {
    memset(out, 0, sizeof *out);
    if (!(in->train_seconds > 0) || in->full_epochs < 1 || in->full_dataset_size < 1 || in->num_hyperparams < 1 ||
        in->val_fraction < 0 || in->val_fraction > 1)
        return ote_err(OTE_EINVAL,
                       "hpo budget: need positive training time, epochs, dataset size and parameters "
                       "(got %g s, %d epochs, %ld images, %d parameters, validation share %g)",
                       in->train_seconds, in->full_epochs, in->full_dataset_size, in->num_hyperparams,
                       in->val_fraction);
    double b = in->ratio - 1;
    long N = in->full_dataset_size;
    int E = in->full_epochs, Tmax = 20 * in->num_hyperparams;
    int T = in->fixed_trials > 0 ? in->fixed_trials : 10;
    int I = in->fixed_epochs > 0 ? in->fixed_epochs : (E < 2 ? E : 2);
    double s_floor = fmax(0.05, 1.0 / (double)N);
    double s = in->fixed_subset > 0 ? in->fixed_subset : fmin(1.0, fmax(0.2, 500.0 / (double)N));
    double z = in->fixed_resize > 0 ? in->fixed_resize : 0.5;
    int fz = in->fixed_resize > 0, fs = in->fixed_subset > 0, fT = in->fixed_trials > 0, fI = in->fixed_epochs > 0;
#define COST() hpo_plan_cost(in, T, I, s, z)
    /* shrink */
    while (COST() > b && !fz && z > Z_MIN + 1e-9) z = zr(z - Z_STEP);
    while (COST() > b && !fs && s > s_floor) s = fmax(s_floor, s / 1.05);
    while (COST() > b && !fT && T > T_MIN) T--;
    while (COST() > b && !fI && I > 1) I--;
    if (COST() > b) {
        out->over_budget = 1;
    } else {
        /* grow */
        int blocked[4] = {fz || z >= 1 - 1e-9, fs || s >= 1, fI || I >= E, fT || T >= Tmax};
        for (;;) {
            double prog[4] = {(z - Z_MIN) / (1 - Z_MIN), s, (double)I / E, (double)T / Tmax};
            int k = -1;
            for (int i = 0; i < 4; i++)
                if (!blocked[i] && (k < 0 || prog[i] < prog[k])) k = i;
            if (k < 0) break;
            double z2 = z, s2 = s;
            int I2 = I, T2 = T;
            if (k == 0) z2 = zr(z + Z_STEP);
            if (k == 1) s2 = fmin(1.0, s * 1.05);
            if (k == 2) I2 = I + 1;
            if (k == 3) T2 = T + 1;
            if (hpo_plan_cost(in, T2, I2, s2, z2) > b) {
                blocked[k] = 1;
                continue;
            }
            z = z2, s = s2, I = I2, T = T2;
            if (k == 0 && z >= 1 - 1e-9) blocked[0] = 1;
            if (k == 1 && s >= 1) blocked[1] = 1;
            if (k == 2 && I >= E) blocked[2] = 1;
            if (k == 3 && T >= Tmax) blocked[3] = 1;
        }
    }
    out->num_trials = T;
    out->epochs = I;
    out->subset_ratio = s;
    out->image_resize = z;
    out->cost = COST();
    out->expected_seconds = out->cost * in->train_seconds;
#undef COST
    return 0;
}

int hpo_plan_trial_size(int full, double z) {
    int v = (int)floor(full * z / 32.0 + 1e-9) * 32;
    return v < 32 ? 32 : v;
}

int hpo_plan_format(const hpo_plan *p, long n, int w, int h, char *buf, int size) {
    long sub = (long)floor(p->subset_ratio * (double)n + 1e-9);
    if (sub < 1) sub = 1;
    char px[64] = "";
    if (w > 0 && h > 0) snprintf(px, sizeof px, "%dx%d ", hpo_plan_trial_size(w, p->image_resize),
                                 hpo_plan_trial_size(h, p->image_resize));
    return snprintf(buf, (size_t)size,
                    "HPO plan: %d trials x %d epochs, subset %ld of %ld training images (subset_ratio %.4g), "
                    "trial input %s(image_resize %.4g), expected HPO time %.0f s (%.2f x one training)%s",
                    p->num_trials, p->epochs, sub, n, p->subset_ratio, px, p->image_resize, p->expected_seconds,
                    p->cost, p->over_budget ? "; even this minimal plan exceeds the requested ratio" : "");
}

void hpo_budget_from_config(hpo_budget_in *in, const hpo_config *c) {
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
