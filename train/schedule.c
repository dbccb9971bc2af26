/* schedule.c - adaptive repeat, training sizes, warm-up + ReduceLROnPlateau, early stopping
 * (see schedule.h). Pure arithmetic: no allocation, no I/O. */
#include "train/schedule.h"

#include <math.h>

#include "engine/sgd.h"

void schedule_adaptive_repeat(int n_train, int max_epochs, int *repeat, int *epochs) {
    /* Python's round() is round-half-even; 30*e^(-0.002 N) is never exactly .5 for integer N > 0
     * except where it is irrational anyway, so nearbyint (ties to even) matches it. */
    int r = (int)nearbyint(30.0 * exp(-0.002 * (double)n_train));
    if (r < 1) r = 1;
    int e = (max_epochs + r - 1) / r;
    if (e <= 1) {
        /* OTE leaves the config unchanged when the repeat would leave a single epoch. */
        *repeat = 1;
        *epochs = max_epochs;
        return;
    }
    *repeat = r;
    *epochs = e;
}

static int schedule_round32(double v) {
    int r = (int)floor(v / 32.0 + 0.5) * 32;
    return r < 32 ? 32 : r;
}

int schedule_train_sizes(int w, int h, aug_size out[5]) {
    static const int spec[5][2] = {{992, 736}, {896, 736}, {1088, 736}, {992, 672}, {992, 800}};
    for (int i = 0; i < 5; i++) {
        out[i].w = schedule_round32((double)w * spec[i][0] / 992.0);
        out[i].h = schedule_round32((double)h * spec[i][1] / 736.0);
    }
    return 5;
}

void schedule_plateau_init(schedule_plateau *p, double base_lr, long warmup_iters) {
    p->lr = base_lr;
    p->best = -INFINITY;
    p->bad = 0;
    p->last_iter = 0;
    p->patience = 5;
    p->iteration_patience = 600;
    p->factor = 0.1;
    p->min_lr = 8e-6;
    p->warmup_iters = warmup_iters;
}

int schedule_plateau_update(schedule_plateau *p, double m, long iter) {
    if (iter < p->warmup_iters) return 0;
    if (m > p->best) {
        p->best = m;
        p->bad = 0;
        p->last_iter = iter;
        return 0;
    }
    p->bad++;
    if (p->bad >= p->patience && iter - p->last_iter >= p->iteration_patience) {
        double nl = p->lr * p->factor;
        p->lr = nl > p->min_lr ? nl : p->min_lr;
        p->bad = 0;
        p->last_iter = iter;
        return 1;
    }
    return 0;
}

void schedule_early_stop_init(schedule_early_stop *s, long warmup_iters) {
    s->best = -INFINITY;
    s->wait = 0;
    s->last_iter = 0;
    s->patience = 8;
    s->iteration_patience = 1000;
    s->warmup_iters = warmup_iters;
}

int schedule_early_stop_update(schedule_early_stop *s, double m, long iter) {
    if (iter < s->warmup_iters) return 0;
    if (m > s->best) {
        s->best = m;
        s->wait = 0;
        s->last_iter = iter;
        return 0;
    }
    s->wait++;
    return s->wait >= s->patience && iter - s->last_iter >= s->iteration_patience;
}

double schedule_lr(const schedule_plateau *p, long iter) {
    return sgd_lr_warmup(p->lr, iter, p->warmup_iters, 1.0 / 3.0);
}
