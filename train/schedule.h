/* schedule.h - OTE's training schedule as pure functions and small state machines (no I/O, no
 * model): adaptive repeat, the multi-size training set scaled to the input size, the learning rate
 * (mmcv linear warm-up over OTE's ReduceLROnPlateau), early stopping and best-checkpoint selection.
 * Numbers from spec-detector.md §9 and spec-ote-hpo.md §2.2/§3. The trainer drives these once per
 * iteration / per epoch; tests check them against hand-computed tables.
 *
 * Ownership: plain values. Invariants: lr never goes below min_lr through a plateau drop; the
 * plateau and early-stopping checks are ignored while iter < warmup_iters (OTE's hooks).
 */
#ifndef OTE_SCHEDULE_H
#define OTE_SCHEDULE_H

#include "data/aug.h"

/* OTE's adaptive repeat for n_train images and max_epochs (= num_iters):
 * repeat = max(round(30 * e^(-0.002 N)), 1), epochs = ceil(max_epochs / repeat); when that gives a
 * single epoch nothing changes (repeat 1, max_epochs epochs), as patch_adaptive_repeat_dataset. */
void schedule_adaptive_repeat(int n_train, int max_epochs, int *repeat, int *epochs);

/* The spec's 5 training sizes (992,736) (896,736) (1088,736) (992,672) (992,800) scaled to the
 * input size w x h (each side = w * s / 992 or h * s / 736 rounded to the nearest multiple of 32,
 * at least 32), so 992x736 gives exactly the spec's set. Returns 5. */
int schedule_train_sizes(int w, int h, aug_size out[5]);

/* OTE's ReduceLROnPlateau (factor 0.1, patience 5 epochs, iteration_patience 600, min_lr 8e-6) and
 * EarlyStopping (patience 8, iteration_patience 1000), both on mAP, both after warm-up. */
typedef struct schedule_plateau {
    double lr;              /* current regular lr (before warm-up scaling) */
    double best;            /* best metric seen after warm-up (-inf before) */
    int bad;                /* evaluations without improvement since the last improvement/drop */
    long last_iter;         /* iteration of the last improvement or drop */
    int patience;           /* 5 */
    long iteration_patience;/* 600 */
    double factor, min_lr;  /* 0.1, 8e-6 */
    long warmup_iters;
} schedule_plateau;

typedef struct schedule_early_stop {
    double best;
    int wait;
    long last_iter;
    int patience;            /* 8 */
    long iteration_patience; /* 1000 */
    long warmup_iters;
} schedule_early_stop;

void schedule_plateau_init(schedule_plateau *p, double base_lr, long warmup_iters);
/* After an evaluation with metric m at global iteration iter (iterations done so far).
 * Returns 1 if the lr was reduced. */
int schedule_plateau_update(schedule_plateau *p, double m, long iter);

void schedule_early_stop_init(schedule_early_stop *s, long warmup_iters);
/* Returns 1 when training should stop. */
int schedule_early_stop_update(schedule_early_stop *s, double m, long iter);

/* The lr for iteration `iter` (0-based global): mmcv linear warm-up (ratio 1/3) over the plateau lr. */
double schedule_lr(const schedule_plateau *p, long iter);

#endif
