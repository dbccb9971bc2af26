/* test_train_config.c - train/config (template + params overrides) and train/schedule (adaptive
 * repeat, training sizes, warm-up, ReduceLROnPlateau, early stopping) against hand-computed values
 * from spec-ote-hpo.md §2.2 and spec-detector.md §9. One line per check (tests/expect.h).
 * Tolerances: exact for integers and table values; 1e-15 relative for learning rates.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/ote.h"
#include "tests/expect.h"
#include "train/config.h"
#include "train/schedule.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-15 * fabs(b); }

/* Sets key=value on a copy of t; returns the status; *msg gets the error text. */
static int try_set(const config_template *t, const char *key, const char *value, char *msg, size_t n) {
    config_template c = *t;
    int s = config_set(&c, key, value);
    snprintf(msg, n, "%s", s < 0 ? ote_errmsg() : "");
    return s;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static void case_template(void) {
    const char *path = "models/templates/gen3_mobilenetV2_ATSS/template.yaml";
    config_template t;
    int s = config_load(&t, path);
    EXPECT(s == 0, "config_load: the shipped template loads");
    if (s < 0) {
        printf("  %s\n", ote_errmsg());
        return;
    }
    EXPECT(t.batch_size == 8 && near(t.learning_rate, 0.008) && t.warmup_iters == 200 && t.num_iters == 300,
          "template defaults: batch 8, lr 0.008, warm-up 200, num_iters 300 (spec-ote-hpo §2.2)");
    EXPECT(near(t.confidence_threshold, 0.35) && t.result_based_confidence_threshold == 1,
          "template defaults: confidence threshold 0.35, result-based true");
    EXPECT(t.input_w == 992 && t.input_h == 736 && t.seed == 42, "model: 992x736, seed 42");
    /* the shipped ImageNet backbone by default, with the variant and padding its weights need */
    EXPECT(t.backbone == 1 && t.tf_padding == 1 &&
              !strcmp(t.pretrained_backbone, "../../pretrained/mobilenet_v2_1.0_224_ptq.tflite"),
          "model: torchvision variant, TF padding, the shipped pretrained backbone");
    char bb[2 * CONFIG_PATH_LEN + 2];
    snprintf(bb, sizeof bb, "%s/%s", t.dir, t.pretrained_backbone);
    FILE *bf = fopen(bb, "rb");
    EXPECT(bf != NULL, "the default pretrained backbone exists in the project (relative to the template)");
    if (bf) fclose(bf);
    config_template cn = t;
    char *argv_none[] = {"--model.pretrained_backbone", "none"};
    s = config_apply_params(&cn, 2, argv_none);
    EXPECT(s == 0 && cn.pretrained_backbone[0] == '\0', "params --model.pretrained_backbone none: random initialisation");
    EXPECT(!strcmp(t.dir, "models/templates/gen3_mobilenetV2_ATSS"), "template directory (hpo_config.yaml beside it)");
    const config_hparam *h = config_find(&t, "learning_parameters.learning_rate");
    EXPECT(h && h->has_min && h->has_max && near(h->min, 1e-7) && near(h->max, 0.1), "lr min 1e-7, max 0.1");

    char msg[2048];
    config_template c = t;
    char *argv1[] = {"--learning_parameters.batch_size", "16", "--learning_parameters.learning_rate=0.01",
                     "--model.input_size", "256x160", "--postprocessing.result_based_confidence_threshold", "false"};
    s = config_apply_params(&c, 7, argv1);
    EXPECT(s == 0 && c.batch_size == 16 && near(c.learning_rate, 0.01) && c.input_w == 256 && c.input_h == 160 &&
              c.result_based_confidence_threshold == 0,
          "params: '--k V', '--k=V', model.input_size WxH and a boolean apply");
    EXPECT(t.batch_size == 8, "params on a copy leave the original untouched");

    /* issue 13 item 10: a batch the template allows (max_value 1e9) but the loader cannot take is
     * refused where the value is read, with the real limit */
    config_template big = t;
    for (int i = 0; i < big.n_hp; i++)
        if (!strcmp(big.hp[i].key, "learning_parameters.batch_size")) big.hp[i].max = 1e9;
    s = try_set(&big, "learning_parameters.batch_size", "1000000000", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "limit of 4096 images per batch") && strstr(msg, "template.yaml"),
          "batch_size 1e9 under a template max of 1e9: refused with the loader's limit, file and line");
    s = try_set(&t, "learning_parameters.batch_sizee", "4", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "learning_parameters.batch_sizee") && strstr(msg, "template.yaml") &&
              strstr(msg, "'4'"),
          "unknown key: error names key, value and file");
    s = try_set(&t, "learning_parameters.batch_size", "0", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "template.yaml:") && strstr(msg, "below min_value 1") && strstr(msg, "'0'"),
          "batch_size 0: below min_value, with file:line and value");
    printf("  (%s)\n", msg);
    s = try_set(&t, "learning_parameters.learning_rate", "0.5", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "above max_value 0.1"), "lr 0.5: above max_value 0.1");
    s = try_set(&t, "learning_parameters.batch_size", "8.5", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "expected an integer"), "batch_size 8.5: not an integer");
    s = try_set(&t, "learning_parameters.learning_rate", "abc", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "expected a number"), "lr abc: not a number");
    s = try_set(&t, "learning_parameters.learning_rate", "nan", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL, "lr nan: rejected");
    s = try_set(&t, "postprocessing.result_based_confidence_threshold", "yes", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "boolean"), "boolean 'yes': rejected (OTE accepts true/false/1/0)");
    s = try_set(&t, "learning_parameters.num_workers", "4", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "not a params key"), "num_workers (affects NONE): not a params key, as OTE");
    s = try_set(&t, "model.input_size", "250x250", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "multiples of 32"), "input size 250x250: not a multiple of 32");
    s = try_set(&t, "model.colour", "red", msg, sizeof msg);
    EXPECT(s == OTE_EINVAL && strstr(msg, "model.colour"), "unknown model key");
    char *argv2[] = {"--learning_parameters.batch_size"};
    c = t;
    EXPECT(config_apply_params(&c, 1, argv2) == OTE_EINVAL && strstr(ote_errmsg(), "needs a value"),
          "params: a key without a value");
    char *argv3[] = {"learning_parameters.batch_size", "4"};
    EXPECT(config_apply_params(&c, 2, argv3) == OTE_EINVAL, "params: a word without -- is rejected");
    h = config_find(&t, "learning_parameters.learning_rate");
    char buf[64];
    config_format_value(h, buf, sizeof buf);
    EXPECT(!strcmp(buf, "0.008"), "format: 0.008 prints shortest round-trip");
}

static void case_bad_templates(void) {
    char dir[] = "/tmp/ote_cfg_XXXXXX";
    if (!mkdtemp(dir)) {
        EXPECT(0, "mkdtemp");
        return;
    }
    char p[256];
    snprintf(p, sizeof p, "%s/t.yaml", dir);
    config_template t;
    EXPECT(config_load(&t, "/nonexistent/template.yaml") == OTE_EIO, "missing template: OTE_EIO");
    write_file(p,
               "name: x\n"
               "hyper_parameters:\n"
               "  learning_parameters:\n"
               "    batch_size:\n"
               "      type: INTEGER\n"
               "      default_value: 8\n"
               "      colour: blue\n");
    int s = config_load(&t, p);
    EXPECT(s < 0 && strstr(ote_errmsg(), "t.yaml:7") && strstr(ote_errmsg(), "colour"),
          "unknown entry key: file:line and key named");
    printf("  (%s)\n", ote_errmsg());
    write_file(p,
               "name: x\n"
               "hyper_parameters:\n"
               "  learning_parameters:\n"
               "    batch_size:\n"
               "      type: INTEGER\n"
               "      default_value: 8\n");
    s = config_load(&t, p);
    EXPECT(s < 0 && strstr(ote_errmsg(), "learning_parameters.learning_rate"), "missing required entry named");
    write_file(p,
               "hyper_parameters:\n"
               "  learning_parameters:\n"
               "    batch_size: {type: INTEGER, default_value: 600, min_value: 1, max_value: 512}\n");
    s = config_load(&t, p);
    EXPECT(s < 0 && strstr(ote_errmsg(), "t.yaml:3") && strstr(ote_errmsg(), "above max_value 512"),
          "default outside its range: line named");
    write_file(p, "nmae: x\nhyper_parameters: {}\n");
    s = config_load(&t, p);
    EXPECT(s < 0 && strstr(ote_errmsg(), "t.yaml:1") && strstr(ote_errmsg(), "nmae"), "unknown top-level key");
    write_file(p, "model:\n  input_size: 100x100\nhyper_parameters: {}\n");
    s = config_load(&t, p);
    EXPECT(s < 0 && strstr(ote_errmsg(), "t.yaml:2") && strstr(ote_errmsg(), "100x100"), "bad input_size in template");
    unlink(p);
    rmdir(dir);
}

static void case_schedule(void) {
    /* spec-ote-hpo §2.2 examples for num_iters 300 */
    const int tab[][3] = {{100, 25, 12}, {500, 11, 28}, {1000, 4, 75}, {1300, 2, 150}, {1498, 1, 300}, {5000, 1, 300}};
    int ok = 1;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        int r, e;
        schedule_adaptive_repeat(tab[i][0], 300, &r, &e);
        if (r != tab[i][1] || e != tab[i][2]) {
            printf("  N=%d: repeat %d epochs %d, expected %d %d\n", tab[i][0], r, e, tab[i][1], tab[i][2]);
            ok = 0;
        }
    }
    EXPECT(ok, "adaptive repeat: spec table (N=100,500,1000,1300,1498,5000 at 300 epochs)");
    int r, e;
    schedule_adaptive_repeat(100, 3, &r, &e);
    EXPECT(r == 1 && e == 3, "adaptive repeat: a single resulting epoch leaves the schedule unchanged (3 epochs, N=100)");
    schedule_adaptive_repeat(100, 30, &r, &e);
    EXPECT(r == 25 && e == 2, "adaptive repeat: N=100, 30 epochs -> repeat 25, 2 epochs");

    aug_size s[5];
    schedule_train_sizes(992, 736, s);
    EXPECT(s[0].w == 992 && s[0].h == 736 && s[1].w == 896 && s[1].h == 736 && s[2].w == 1088 && s[2].h == 736 &&
              s[3].w == 992 && s[3].h == 672 && s[4].w == 992 && s[4].h == 800,
          "train sizes at 992x736: exactly the spec's five");
    schedule_train_sizes(256, 256, s);
    /* 256*896/992 = 231.2 -> 224; 256*1088/992 = 280.8 -> 288; 256*672/736 = 233.7 -> 224; 256*800/736 = 278.3 -> 288 */
    EXPECT(s[0].w == 256 && s[0].h == 256 && s[1].w == 224 && s[2].w == 288 && s[3].h == 224 && s[4].h == 288 &&
              s[1].h == 256 && s[3].w == 256,
          "train sizes at 256x256: hand-rounded to multiples of 32");

    schedule_plateau p;
    schedule_plateau_init(&p, 0.008, 200);
    EXPECT(near(schedule_lr(&p, 0), 0.008 / 3) && near(schedule_lr(&p, 100), 0.008 * (1 - 0.5 * 2.0 / 3.0)) &&
              near(schedule_lr(&p, 200), 0.008),
          "warm-up: lr/3 at 0, 2/3 lr at 100 of 200, lr from 200 (mmcv linear, ratio 1/3)");
    /* During warm-up nothing counts. */
    EXPECT(schedule_plateau_update(&p, 0.1, 150) == 0 && p.bad == 0 && isinf(p.best), "plateau: ignored during warm-up");
    schedule_plateau_update(&p, 0.5, 300); /* best at 300 */
    int drops = 0;
    for (long it = 400; it <= 800; it += 100) drops += schedule_plateau_update(&p, 0.4, it); /* bad 1..5 at 400..800 */
    EXPECT(drops == 0 && p.bad == 5, "plateau: 5 bad evals within 600 iterations of the best: no drop");
    drops = schedule_plateau_update(&p, 0.4, 900); /* bad 6, 600 iterations since 300 */
    EXPECT(drops == 1 && near(p.lr, 0.0008) && p.bad == 0 && p.last_iter == 900,
          "plateau: bad >= 5 and 600 iterations since the best: lr x 0.1, counter reset");
    for (int k = 0; k < 100; k++) schedule_plateau_update(&p, 0.0, 1000 + 1000L * k);
    EXPECT(near(p.lr, 8e-6), "plateau: lr floors at min_lr 8e-6");
    EXPECT(near(schedule_lr(&p, 5000), 8e-6), "lr after warm-up is the plateau lr");

    schedule_early_stop es;
    schedule_early_stop_init(&es, 0);
    schedule_early_stop_update(&es, 0.3, 100);
    int stop = 0;
    for (int k = 1; k <= 7; k++) stop |= schedule_early_stop_update(&es, 0.2, 100 + 200L * k);
    EXPECT(!stop, "early stop: 7 bad epochs: go on");
    stop = schedule_early_stop_update(&es, 0.3, 1000); /* equal is not better: bad 8, but 900 iterations */
    EXPECT(!stop && es.wait == 8, "early stop: 8 bad but only 900 iterations since the best: go on");
    stop = schedule_early_stop_update(&es, 0.1, 1100);
    EXPECT(stop, "early stop: 9 bad and 1000 iterations since the best: stop");
}

int main(void) {
    EXPECT_RUN(case_template);
    EXPECT_RUN(case_bad_templates);
    EXPECT_RUN(case_schedule);
    return expect_finish();
}
