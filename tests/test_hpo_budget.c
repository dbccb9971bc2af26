/* test_hpo_budget.c - the budget planner (hpo/plan.h) on a table of hand-computed cases plus
 * properties of free plans (within budget, maximal, fixed values respected, monotone in R). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/ote.h"
#include "hpo/plan.h"
#include "tests/expect.h"


static long budget_test_images(void *ctx, long n) {
    (void)ctx;
    return n * (n <= 100 ? 4 : 1);
}

typedef struct row {
    const char *what;
    hpo_budget_in in;
    int T, I;
    double s, z, cost;
    int over;
} row;

int main(void) {
    /* in: train_seconds, v, R, N, E, nhp, fixed T, I, s, z.  Hand computation in each comment:
     * cost = T * I * z^2 * ((1 - v) s + v) / E, budget b = R - 1, horizon h = I s / E. */
    row rows[] = {
        /* b=2; start I=2: 4*2/2 = 4 > 2 -> I=1: cost 2 <= 2; I=2 again exceeds -> I=1 */
        {"A: only epochs free, shrink to fit", {100, 0, 3, 1000, 2, 2, 4, 0, 1, 1, 0, 0, 0, NULL, NULL, 0}, 4, 1, 1, 1, 2, 0},
        /* b=4; start I=2: cost 2; grow I: 3 -> 3, 4 -> 4, 5 -> 5 > 4 blocked */
        {"B: only epochs free, grow to fit", {100, 0, 5, 1000, 10, 2, 10, 0, 1, 1, 0, 0, 0, NULL, NULL, 0}, 10, 4, 1, 1, 4, 0},
        /* b=2; cost = 4 z^2; start z .5 (cost 1); z .7 -> 1.96 ok, .75 -> 2.25 > 2 */
        {"C: only resize free", {100, 0, 3, 1000, 10, 2, 10, 4, 1, 0, 0, 0, 0, NULL, NULL, 0}, 10, 4, 1, 0.7, 1.96, 0},
        /* b=2; cost = 4 (0.5 s + 0.5) = 2 s + 2 > 2 for any s > 0; h = 0.4 s: s shrinks by /1.05
         * only while h > H_MIN = 0.1, i.e. to 1.05^-29 = 0.24295 (the first with h <= 0.1: the trainer
         * keeps (int)(10000 s) = 2429 images, so h = 0.4 * 0.2429 and the cost is 2 * 0.2429 + 2) -> over */
        {"D: validation alone exceeds the budget", {100, 0.5, 3, 10000, 10, 2, 10, 4, 0, 1, 0, 0, 0, NULL, NULL, 0}, 10, 4,
         pow(1.05, -29), 1, 2 * 0.2429 + 2, 1},
        /* b=0: z to 0.5; I to 90 (h 0.3); T 10 -> 3; I to 30 (h 0.1); T 2: 2*30*.25*(.8+.2)/300 */
        {"E: ratio 1 leaves no HPO time", {100, 0.2, 1, 1000, 300, 2, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0}, 2, 30, 1, 0.5,
         2 * 30 * 0.25 / 300.0, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        row *r = &rows[i];
        hpo_plan p;
        int s = hpo_plan_budget(&r->in, &p);
        int ok = s == 0 && p.num_trials == r->T && p.epochs == r->I && fabs(p.subset_ratio - r->s) < 1e-12 &&
                 fabs(p.image_resize - r->z) < 1e-12 && fabs(p.cost - r->cost) < 1e-9 && p.over_budget == r->over &&
                 fabs(p.expected_seconds - p.cost * r->in.train_seconds) < 1e-9;
        EXPECT(ok, "%s: T=%d I=%d s=%.4g z=%.4g cost=%.4g over=%d (want T=%d I=%d s=%.4g z=%.4g cost=%.4g over=%d)",
                r->what, p.num_trials, p.epochs, p.subset_ratio, p.image_resize, p.cost, p.over_budget, r->T, r->I, r->s,
                r->z, r->cost, r->over);
    }

    /* free plans: within budget, maximal (no single further step fits), bounded, monotone in R */
    double prev_cost = -1;
    for (double R = 1.5; R <= 16; R *= 2) {
        hpo_budget_in in = {3600, 0.2, R, 1000, 300, 2, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0};
        hpo_plan p;
        int s = hpo_plan_budget(&in, &p);
        double b = R - 1;
        int within = s == 0 && !p.over_budget && p.cost <= b + 1e-12;
        int maximal = 1;
        if (p.image_resize < 1 - 1e-9) maximal &= hpo_plan_cost(&in, p.num_trials, p.epochs, p.subset_ratio, p.image_resize + 0.05) > b;
        if (p.subset_ratio < 1) maximal &= hpo_plan_cost(&in, p.num_trials, p.epochs, fmin(1, p.subset_ratio * 1.05), p.image_resize) > b;
        if (p.epochs < 300) maximal &= hpo_plan_cost(&in, p.num_trials, p.epochs + 1, p.subset_ratio, p.image_resize) > b;
        if (p.num_trials < 40) maximal &= hpo_plan_cost(&in, p.num_trials + 1, p.epochs, p.subset_ratio, p.image_resize) > b;
        int bounded = p.num_trials >= 2 && p.num_trials <= 40 && p.meaningful && p.horizon >= 0.1 - 1e-12 && p.epochs >= 1 && p.epochs <= 300 &&
                      p.subset_ratio > 0 && p.subset_ratio <= 1 && p.image_resize >= 0.5 && p.image_resize <= 1;
        EXPECT(within && maximal && bounded && p.cost >= prev_cost,
                "R=%g: T=%d I=%d s=%.3f z=%.2f cost=%.3f <= %.2f, maximal, bounded (T >= 2, z >= 0.5, h >= 0.1), cost not below R/2's",
                R, p.num_trials, p.epochs, p.subset_ratio, p.image_resize, p.cost, b);
        prev_cost = p.cost;
    }
    /* fixed values respected */
    hpo_budget_in fx = {3600, 0.2, 4, 1000, 300, 2, 7, 0, 0.3, 0.6, 0, 0, 0, NULL, NULL, 0};
    hpo_plan p;
    hpo_plan_budget(&fx, &p);
    EXPECT(p.num_trials == 7 && p.subset_ratio == 0.3 && p.image_resize == 0.6 && p.cost <= 3 + 1e-12,
            "fixed trials/subset/resize kept (T=%d s=%g z=%g, I=%d)", p.num_trials, p.subset_ratio, p.image_resize,
            p.epochs);
    /* small dataset: subset starts at 1 (500 / N >= 1) */
    hpo_budget_in small = {600, 0.2, 2, 300, 12, 2, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0};
    hpo_plan_budget(&small, &p);
    EXPECT(p.subset_ratio == 1 && p.cost <= 1 + 1e-12, "N=300: whole training set (s=%g), cost %.3f <= 1",
            p.subset_ratio, p.cost);
    /* plan line: case C above with 1000 images and a 992x736 input -> z .7: 694.4 -> 672, 515.2 -> 512 */
    {
        hpo_budget_in ci = {100, 0, 3, 1000, 10, 2, 10, 4, 1, 0, 0, 0, 0, NULL, NULL, 0};
        char line[512];
        hpo_plan_budget(&ci, &p);
        hpo_plan_format(&p, 1000, 992, 736, line, sizeof line);
        EXPECT(!strcmp(line, "HPO plan: 10 trials x 4 epochs, subset 1000 of 1000 training images (subset_ratio 1), "
                              "trial input 672x512 (image_resize 0.7), each trial 40% of a full training's iterations, "
                              "expected HPO time 196 s (1.96 x one training)"),
                "plan line: %s", line);
        EXPECT(hpo_plan_trial_size(992, 0.25) == 224 && hpo_plan_trial_size(100, 0.1) == 32,
                "trial sizes are multiples of 32, at least 32");
    }
    /* real trial pixel counts: 256x256 input, trials never below 96 px (the trainer's floor) */
    {
        hpo_budget_in pi = {100, 0, 3, 1000, 10, 2, 10, 4, 1, 0, 256, 256, 96, NULL, NULL, 0};
        /* z .25: 64 -> raised to 96: (96/256)^2 = 0.140625; z .5: 128: 0.25 (= z^2); z .7: 179.2 -> 160 */
        double p25 = hpo_plan_pixel_share(&pi, 0.25), p50 = hpo_plan_pixel_share(&pi, 0.5),
               p70 = hpo_plan_pixel_share(&pi, 0.7);
        EXPECT(fabs(p25 - 0.140625) < 1e-15 && fabs(p50 - 0.25) < 1e-15 && fabs(p70 - 0.390625) < 1e-15,
               "pixel share with sizes rounded to 32 and raised to 96: %.6f %.6f %.6f (want 0.140625 0.25 0.390625)",
               p25, p50, p70);
        EXPECT(fabs(hpo_plan_cost(&pi, 10, 4, 1, 0.25) - 10 * 4 * 0.140625 / 10) < 1e-12,
               "cost uses the raised size (%.6f)", hpo_plan_cost(&pi, 10, 4, 1, 0.25));
        /* 160x160 input: z .5 -> 80 -> raised to 96: P = 0.36, not 0.25. b = 1 with T 10, I 4, s 1 fixed:
         * cost 4 P(z) fits only for P <= 0.25; the z^2 model would promise z 0.5 (cost 1.0), the real
         * sizes make every z >= 0.5 too dear, so the plan is over budget at z 0.5 (cost 1.44) */
        pi.ratio = 2;
        pi.input_w = pi.input_h = 160;
        hpo_plan_budget(&pi, &p);
        EXPECT(p.over_budget == 1 && p.meaningful == 0 && fabs(p.cost - 4 * 0.36) < 1e-12 && p.image_resize == 0.5,
               "the 96 px floor makes a 1-training budget infeasible at 160x160 (over %d, cost %.4f, z %.2f)",
               p.over_budget, p.cost, p.image_resize);
        pi.input_w = pi.input_h = 0;
        hpo_plan_budget(&pi, &p);
        EXPECT(p.over_budget == 0 && p.meaningful == 1 && fabs(p.image_resize - 0.5) < 1e-12 && fabs(p.cost - 1) < 1e-12,
               "without the sizes the z^2 model plans z %.2f, cost %.3f (want 0.5, 1)", p.image_resize, p.cost);
    }
    /* fewer, longer trials when the budget is small: b = 0.5, N 1000, E 300, v 0.2, 2 parameters.
     * T 10 -> z .5 -> I 90 (h 0.3) costs 10*90*.25/300 = 0.75 > 0.5 -> T 6 (0.45) -> grow h: I 100
     * (6*100*.25/300 = 0.5 fits), I 101 does not; z .55 does not -> 6 trials x 100 epochs. */
    {
        hpo_budget_in in = {3600, 0.2, 1.5, 1000, 300, 2, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0};
        hpo_plan_budget(&in, &p);
        EXPECT(p.num_trials == 6 && p.epochs == 100 && p.subset_ratio == 1 && p.image_resize == 0.5 && p.meaningful &&
                   fabs(p.horizon - 1.0 / 3) < 1e-12,
               "small budget: %d trials x %d epochs, s %.3g, z %.2f, h %.3f, meaningful %d (want 6 x 100, 1, 0.5, 0.333, 1)",
               p.num_trials, p.epochs, p.subset_ratio, p.image_resize, p.horizon, p.meaningful);
    }
    /* adaptive repeat: a subset gets more passes per epoch (epoch_images), so the horizon and the
     * cost of a subset trial are larger than s. img(n) = n * (n <= 100 ? 4 : 1) here: a 10% subset
     * of 1000 images processes 400 images per epoch, 40% of a full epoch. */
    {
        hpo_budget_in in = {3600, 0, 2, 1000, 10, 2, 4, 5, 0.1, 1, 0, 0, 0, NULL, NULL, 0};
        in.epoch_images = budget_test_images;
        EXPECT(fabs(hpo_plan_horizon(&in, 5, 0.1) - 5 * 0.4 / 10) < 1e-12 &&
                   fabs(hpo_plan_cost(&in, 4, 5, 0.1, 1) - 4 * 5 * 0.4 / 10) < 1e-12,
               "subset with repeat: h %.3f (want 0.2), cost %.3f (want 0.8)", hpo_plan_horizon(&in, 5, 0.1),
               hpo_plan_cost(&in, 4, 5, 0.1, 1));
        in.epoch_images = NULL;
        EXPECT(fabs(hpo_plan_horizon(&in, 5, 0.1) - 0.05) < 1e-12, "without repeat: h %.3f (want 0.05)",
               hpo_plan_horizon(&in, 5, 0.1));
    }
    /* config round trip: fixed values in, plan out */
    {
        hpo_config c;
        memset(&c, 0, sizeof c);
        c.space.n = 2;
        c.subset_ratio = 0.4;
        c.max_iterations = 3;
        hpo_budget_in ci = {3600, 0.2, 4, 1000, 300, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0};
        hpo_plan_budget_from_config(&ci, &c);
        hpo_plan_budget(&ci, &p);
        hpo_plan_apply(&p, &c);
        EXPECT(ci.num_hyperparams == 2 && c.subset_ratio == 0.4 && c.max_iterations == 3 && c.num_trials == p.num_trials &&
                    c.image_resize == p.image_resize && p.epochs == 3 && p.subset_ratio == 0.4,
                "fixed config values go in as fixed and stay; open ones are filled (T=%d z=%g)", c.num_trials,
                c.image_resize);
    }
    /* parallel workers (issue 18): T trials cost ceil(T / W) waves; the plan grows the trial count
     * and says so; W = 1 is the single-process plan */
    {
        hpo_budget_in one = {3600, 0.2, 2, 1000, 300, 2, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0}, two = one, w1 = one;
        two.workers = 2;
        w1.workers = 1;
        hpo_plan p1, p2, pw;
        REQUIRE_OK(hpo_plan_budget(&one, &p1));
        REQUIRE_OK(hpo_plan_budget(&two, &p2));
        REQUIRE_OK(hpo_plan_budget(&w1, &pw));
        EXPECT(fabs(hpo_plan_cost(&two, 7, 10, 0.5, 0.5) - hpo_plan_cost(&one, 4, 10, 0.5, 0.5)) < 1e-15 &&
                   fabs(hpo_plan_cost(&two, 8, 10, 0.5, 0.5) - hpo_plan_cost(&one, 4, 10, 0.5, 0.5)) < 1e-15,
               "2 workers: 7 or 8 trials cost what 4 cost on one");
        EXPECT(pw.num_trials == p1.num_trials && pw.epochs == p1.epochs && pw.cost == p1.cost && pw.workers == 1,
               "workers = 1 is the single-process plan (%d trials)", p1.num_trials);
        EXPECT(p2.workers == 2 && p2.cost <= 1 + 1e-12 && p2.num_trials >= p1.num_trials &&
                   p2.num_trials * p2.epochs * p2.image_resize * p2.image_resize >
                       1.5 * p1.num_trials * p1.epochs * p1.image_resize * p1.image_resize,
               "2 workers: within the wall-clock budget, about twice the trial work (%d x %d at z %g vs %d x %d at z %g)",
               p2.num_trials, p2.epochs, p2.image_resize, p1.num_trials, p1.epochs, p1.image_resize);
        char l1[512], l2[512];
        hpo_plan_format(&p1, 1000, 992, 736, l1, sizeof l1);
        hpo_plan_format(&p2, 1000, 992, 736, l2, sizeof l2);
        EXPECT(!strstr(l1, "workers") && !strstr(l1, "wall clock") && strstr(l2, " epochs on 2 parallel workers, ") &&
                   strstr(l2, " s wall clock ("),
               "the plan line names the workers only when there are several: %s", l2);
    }
    /* bad input */
    hpo_budget_in bad = {0, 0.2, 4, 1000, 300, 2, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0};
    int s = hpo_plan_budget(&bad, &p);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "training time"), "zero training time rejected: %s", ote_errmsg());
    return expect_finish();
}
