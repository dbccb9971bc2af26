/* test_train_plots.c - the PNG figures of train/plots.c from synthetic data: each file exists,
 * decodes (OpenCV through data/image.h), has the documented size, is not blank (many distinct
 * colours, ink in every panel), and a failure (unwritable path) is an error return naming the
 * file - the process survives PLplot's errors and can draw again afterwards. Also the metrics
 * writer (train/metrics.h) end to end without a detector: CSV header and rows, iteration buffer,
 * and the figures beside a DIR/X.pth weights path.
 *
 * OTE_PLOTS_KEEP=DIR keeps the figures in DIR (to look at them); otherwise a temporary folder
 * is removed at the end.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/image.h"
#include "engine/ote.h"
#include "hpo/hp.h"
#include "tests/expect.h"
#include "train/metrics.h"
#include "train/plots.h"

/* Distinct RGB colours (capped at 4096 counted) in a rectangle [x0,x1) x [y0,y1) of img. */
static int distinct_colours(const image_u8 *img, int x0, int y0, int x1, int y1) {
    static unsigned seen[4096];
    int n = 0;
    for (int y = y0; y < y1 && n < 4096; y++)
        for (int x = x0; x < x1 && n < 4096; x++) {
            const uint8_t *p = img->data + (size_t)y * 3 * (size_t)img->w + 3 * (size_t)x;
            unsigned c = (unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2];
            int k = 0;
            while (k < n && seen[k] != c) k++;
            if (k == n) seen[n++] = c;
        }
    return n;
}

/* Fraction of non-white pixels in a rectangle. */
static double ink(const image_u8 *img, int x0, int y0, int x1, int y1) {
    long n = 0, all = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++, all++) {
            const uint8_t *p = img->data + (size_t)y * 3 * (size_t)img->w + 3 * (size_t)x;
            n += p[0] < 250 || p[1] < 250 || p[2] < 250;
        }
    return all ? (double)n / (double)all : 0;
}

/* Checks one figure; returns the decoded image in *img (caller frees) or leaves it empty. */
static void check_png(const char *path, int w, int h, int min_colours, image_u8 *img) {
    memset(img, 0, sizeof *img);
    struct stat sb;
    int exists = stat(path, &sb) == 0 && sb.st_size > 1000;
    int s = exists ? image_read_rgb(path, img) : -1;
    EXPECT(exists && s == 0, "%s exists and decodes (%ld bytes)", path, exists ? (long)sb.st_size : 0L);
    if (s != 0) return;
    EXPECT(img->w == w && img->h == h, "%s is %dx%d (got %dx%d)", path, w, h, img->w, img->h);
    int nc = distinct_colours(img, 0, 0, img->w, img->h);
    EXPECT(nc >= min_colours, "%s is not blank: %d distinct colours (>= %d)", path, nc, min_colours);
    double k = ink(img, 0, 0, img->w, img->h);
    EXPECT(k > 0.01 && k < 0.9, "%s: %.1f%% of the pixels carry ink", path, 100 * k);
}

static void no_temp_left(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'tmp-'", dir);
    EXPECT(system(cmd) != 0, "no temporary PNG left in %s", dir);
}

static void make_run(metrics_iter *it, long n_it, metrics_epoch *ep, int n_ep) {
    for (long i = 0; i < n_it; i++) {
        double t = (double)i / (double)n_it, noise = 0.15 * sin(12.9898 * (double)i) * sin(78.233 * (double)i);
        double lr = i < 30 ? 0.01 * (1.0 / 3 + (2.0 / 3) * i / 30.0) : t < 0.7 ? 0.01 : 0.001;
        it[i] = (metrics_iter){(float)lr, (float)(2.2 * exp(-3 * t) + 0.9 + noise), (float)(1.0 * exp(-3 * t) + 0.2 + noise / 2),
                               (float)(0.6 * exp(-2 * t) + 0.1 + noise / 4), (float)(0.6 + 0.02 * noise)};
    }
    for (int e = 0; e < n_ep; e++) {
        ep[e] = (metrics_epoch){.epoch = e + 1, .iters = (long)(e + 1) * n_it / n_ep, .voc_map50 = 0.6 * (1 - exp(-0.5 * (e + 1))),
                                .coco_ap = 0.3 * (1 - exp(-0.5 * (e + 1))), .coco_ap50 = 0.62 * (1 - exp(-0.5 * (e + 1)))};
        ep[e].best = e == n_ep - 2;
    }
}

static void test_figures(const char *dir) {
    char p[512];
    image_u8 img;
    /* curves.png */
    enum { NI = 400, NE = 8 };
    metrics_iter it[NI];
    metrics_epoch ep[NE];
    make_run(it, NI, ep, NE);
    snprintf(p, sizeof p, "%s/curves.png", dir);
    int s = plots_training_curves(p, it, NI, ep, NE);
    EXPECT(s == 0, "curves.png drawn (%s)", s ? ote_errmsg() : "ok");
    check_png(p, PLOTS_CURVES_W, PLOTS_CURVES_H, 12, &img);
    if (img.data) { /* each of the three panels has lines in it: inside the frame, beyond the grid */
        int W = img.w, H = img.h;
        double a = ink(&img, W / 8, H * 6 / 100, W * 9 / 10, H * 43 / 100);
        double b = ink(&img, W / 8, H * 55 / 100, W * 9 / 10, H * 66 / 100);
        double c = ink(&img, W / 8, H * 78 / 100, W * 9 / 10, H * 93 / 100);
        EXPECT(a > 0.02 && b > 0.01 && c > 0.005, "curves.png: ink in the loss (%.3f), lr (%.3f), validation (%.3f) panels", a, b, c);
        image_u8_free(&img);
    }
    /* one iteration and one epoch: still a figure */
    snprintf(p, sizeof p, "%s/curves_tiny.png", dir);
    s = plots_training_curves(p, it, 1, ep, 1);
    EXPECT(s == 0, "curves.png with 1 iteration and 1 epoch drawn (%s)", s ? ote_errmsg() : "ok");
    check_png(p, PLOTS_CURVES_W, PLOTS_CURVES_H, 8, &img);
    image_u8_free(&img);

    /* pr_curves.png: two classes with curves, one without gts */
    eval_pr_curves pc = {3, calloc(3, sizeof(eval_pr_curve))};
    eval_voc_result v = {0.55f, 3, 2, calloc(3, sizeof(eval_voc_class))};
    for (int k = 0; k < 2; k++) {
        int n = 40;
        pc.cls[k].n = n;
        pc.cls[k].recall = malloc(n * sizeof(double));
        pc.cls[k].precision = malloc(n * sizeof(float));
        pc.cls[k].score = malloc(n * sizeof(float));
        for (int i = 0; i < n; i++) {
            pc.cls[k].recall[i] = (k ? 0.7 : 0.9) * (i + 1) / n;
            pc.cls[k].precision[i] = (float)(1 - (k ? 0.5 : 0.3) * (double)i / n + 0.05 * sin(i));
            pc.cls[k].score[i] = 1.0f - (float)i / n;
        }
        v.cls[k] = (eval_voc_class){k ? 0.45f : 0.65f, 20, n};
    }
    const char *names[3] = {"person", "with#hash", "empty"};
    snprintf(p, sizeof p, "%s/pr_curves.png", dir);
    s = plots_pr_curves(p, &pc, &v, names, 7);
    EXPECT(s == 0, "pr_curves.png drawn (%s)", s ? ote_errmsg() : "ok");
    check_png(p, PLOTS_PR_W, PLOTS_PR_H, 8, &img);
    image_u8_free(&img);
    eval_pr_curves_free(&pc);
    free(v.cls);

    /* HPO: 12 trials over lr (loguniform) and batch size (qloguniform), one failed */
    hpo_state st;
    memset(&st, 0, sizeof st);
    st.cfg.mode_max = 1;
    snprintf(st.cfg.metric, sizeof st.cfg.metric, "mAP");
    double r1[2] = {0.0005, 0.05}, r2[3] = {2, 16, 2};
    REQUIRE_OK(hp_param_make(&st.cfg.space.p[0], "learning_parameters.batch_size", HP_QLOGUNIFORM, r2, 3, 1, "test"));
    REQUIRE_OK(hp_param_make(&st.cfg.space.p[1], "learning_parameters.learning_rate", HP_LOGUNIFORM, r1, 2, 0, "test"));
    st.cfg.space.n = 2;
    st.best_id = -1;
    for (int i = 0; i < 12; i++) {
        hpo_trial_rec *t = hpo_store_state_add(&st);
        ASSERT(t);
        double lr = exp(log(0.0005) + (log(0.05) - log(0.0005)) * fmod(0.618 * i + 0.1, 1.0));
        double bs = 2 * (1 + (i * 5) % 8);
        t->values[0] = hp_snap(&st.cfg.space.p[0], bs);
        t->values[1] = lr;
        t->status = i == 5 ? HPO_FAILED : HPO_STOP;
        t->has_score = i != 5;
        t->score = 0.6 - 0.08 * pow(log10(lr) + 2.2, 2) - 0.01 * fabs(log2(bs) - 3);
        t->bracket = -1;
        hpo_store_trial_push(t, t->score * 0.8, 10, 100);
        hpo_store_trial_push(t, t->score, 10, 200);
    }
    snprintf(p, sizeof p, "%s/history.png", dir);
    s = plots_hpo_history(p, &st);
    EXPECT(s == 0, "history.png drawn (%s)", s ? ote_errmsg() : "ok");
    check_png(p, PLOTS_HISTORY_W, PLOTS_HISTORY_H, 8, &img);
    image_u8_free(&img);
    snprintf(p, sizeof p, "%s/space.png", dir);
    s = plots_hpo_space(p, &st);
    EXPECT(s == 0, "space.png drawn (%s)", s ? ote_errmsg() : "ok");
    check_png(p, PLOTS_SPACE_W, PLOTS_SPACE_H, 64, &img); /* the GP mean's shades: many colours */
    image_u8_free(&img);
    /* one parameter: the 1-D view with the GP band */
    st.cfg.space.p[0] = st.cfg.space.p[1];
    st.cfg.space.n = 1;
    for (int i = 0; i < st.n; i++) st.t[i].values[0] = st.t[i].values[1];
    snprintf(p, sizeof p, "%s/space_1d.png", dir);
    s = plots_hpo_space(p, &st);
    EXPECT(s == 0, "space.png for one parameter drawn (%s)", s ? ote_errmsg() : "ok");
    check_png(p, PLOTS_SPACE_W, PLOTS_SPACE_H, 8, &img);
    image_u8_free(&img);
    /* nothing scored yet: still a figure */
    for (int i = 0; i < st.n; i++) st.t[i].has_score = 0;
    snprintf(p, sizeof p, "%s/history_none.png", dir);
    EXPECT(plots_hpo_history(p, &st) == 0, "history.png with no scored trial drawn");
    hpo_store_state_free(&st);

    /* an unwritable target: an error naming it, not an exit; drawing works again afterwards */
    snprintf(p, sizeof p, "%s/no/such/dir/curves.png", dir);
    s = plots_training_curves(p, it, NI, ep, NE);
    EXPECT(s == OTE_EIO && strstr(ote_errmsg(), "no/such/dir/curves.png"), "unwritable figure: OTE_EIO naming it (%s)",
           ote_errmsg());
    snprintf(p, sizeof p, "%s/isdir.png", dir);
    mkdir(p, 0777);
    s = plots_training_curves(p, it, NI, ep, NE);
    EXPECT(s == OTE_EIO && strstr(ote_errmsg(), "isdir.png"), "a directory in the way: OTE_EIO naming it (%s)", ote_errmsg());
    rmdir(p);
    snprintf(p, sizeof p, "%s/again.png", dir);
    EXPECT(plots_training_curves(p, it, NI, ep, NE) == 0 && access(p, R_OK) == 0, "a figure after the failures draws");
    no_temp_left(dir);
}

/* The metrics writer without a detector: rows, header, means over the epoch, figures beside X.pth. */
static void test_metrics_writer(const char *dir) {
    char w[512], p[512];
    snprintf(w, sizeof w, "%s/model.pth", dir);
    coco_dataset val;
    memset(&val, 0, sizeof val);
    metrics_run *m = metrics_open(w, 20, 2, NULL, stderr, 0);
    EXPECT(m != NULL, "metrics_open beside %s", w);
    if (!m) return;
    for (int i = 0; i < 20; i++) metrics_iter_add(m, 0.01 * (i + 1), 2.0 + (i < 10 ? i : 0), 1, 0.5, 0.5);
    metrics_epoch r = {.epoch = 1, .iters = 10, .images_per_s = 12.5, .voc_map50 = 0.25, .coco_ap = 0.1,
                       .coco_ap50 = 0.3, .epoch_seconds = 3, .wall_seconds = 3.5, .best = 1};
    /* epoch 1 = iterations 1..20 here (all pushed before the row) */
    metrics_epoch_end(m, &r, NULL, 0);
    r.epoch = 2, r.iters = 20, r.best = 0;
    metrics_iter_add(m, 0.001, 4, 2, 1, 1);
    metrics_epoch_end(m, &r, NULL, 0);
    metrics_finish(m);
    metrics_close(m);
    snprintf(p, sizeof p, "%s/model.metrics.csv", dir);
    FILE *f = fopen(p, "r");
    char line[3][512] = {{0}};
    int n = 0;
    while (f && n < 3 && fgets(line[n], sizeof line[n], f)) n++;
    if (f) fclose(f);
    EXPECT(n == 3 && !strncmp(line[0], "epoch,iterations,lr,loss,loss_cls,loss_bbox,loss_centerness,train_images_per_s,"
                                        "val_voc_map50,val_coco_ap,val_coco_ap50,epoch_seconds,wall_seconds,best\n", 200),
           "model.metrics.csv beside model.pth: header + 2 rows (%d lines)", n);
    /* mean of total over 20 iterations: 2 + mean(0..9, 0 x 10) = 2 + 45/20 = 4.25; lr of the last = 0.2 */
    EXPECT(strstr(line[1], "1,10,0.2,4.250000,1.000000,0.500000,0.500000,12.50,0.250000,0.100000,0.300000,3.000,3.500,1") == line[1],
           "row 1: lr of the last iteration, epoch means, the caller's fields: %s", line[1]);
    EXPECT(strstr(line[2], "2,20,0.001,4.000000,2.000000,1.000000,1.000000,") == line[2],
           "row 2: only the iteration since row 1: %s", line[2]);
    /* a resume after epoch 1 (epoch 2's row was written but its state was not): row 1 is kept, row 2
     * dropped and written again by the resumed epoch */
    m = metrics_open(w, 20, 2, NULL, stderr, 1);
    EXPECT(m != NULL, "metrics_open for a resume after 1 epoch");
    if (m) {
        metrics_iter_add(m, 0.003, 5, 2, 2, 1);
        r.epoch = 2, r.iters = 20, r.best = 0;
        metrics_epoch_end(m, &r, NULL, 0);
        metrics_close(m);
    }
    char again[4][512] = {{0}};
    f = fopen(p, "r");
    int na = 0;
    while (f && na < 4 && fgets(again[na], sizeof again[na], f)) na++;
    if (f) fclose(f);
    EXPECT(na == 3 && !strcmp(again[0], line[0]) && !strcmp(again[1], line[1]) &&
               strstr(again[2], "2,20,0.003,5.000000,2.000000,2.000000,1.000000,") == again[2],
           "resume: header and row 1 kept, row 2 from the resumed epoch (%d lines; row 2: %s)", na, again[2]);
    snprintf(p, sizeof p, "%s/model.curves.png", dir);
    image_u8 img;
    check_png(p, PLOTS_CURVES_W, PLOTS_CURVES_H, 8, &img);
    image_u8_free(&img);
    snprintf(p, sizeof p, "%s/model.pr_curves.png", dir);
    EXPECT(access(p, F_OK) != 0, "no pr_curves.png without a validation set");
    /* an unwritable CSV: NULL, a warning, no crash; the iteration calls accept NULL */
    snprintf(w, sizeof w, "%s/missing/x.pth", dir);
    m = metrics_open(w, 5, 1, NULL, stdout, 0);
    metrics_iter_add(m, 0.1, 1, 1, 1, 1);
    metrics_epoch_end(m, &r, NULL, 0);
    metrics_finish(m);
    metrics_close(m);
    snprintf(p, sizeof p, "%s/missing", dir);
    EXPECT(access(p, F_OK) != 0, "metrics with an unwritable folder: warnings only, nothing created (%s absent)", p);
}

int main(void) {
    const char *keep = getenv("OTE_PLOTS_KEEP");
    char tmpl[] = "/tmp/ote_plots_XXXXXX";
    const char *dir = keep && *keep ? keep : mkdtemp(tmpl);
    if (!dir) return 1;
    mkdir(dir, 0777);
    test_figures(dir);
    test_metrics_writer(dir);
    if (!(keep && *keep)) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    } else {
        printf("figures kept in %s\n", dir);
    }
    return expect_finish();
}
