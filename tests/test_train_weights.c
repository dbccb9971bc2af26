/* test_train_weights.c - train/weights path rules and checkpoint-to-model key matching on
 * hand-made parameter tables (no detector needed): exact match, unknown / missing / mis-shaped
 * keys named in one message, the class-count exception for bbox_head.atss_cls, scalar shapes.
 * One line per check (tests/expect.h); exit 1 on any failure or when no check ran.
 */
#include <stdio.h>
#include <string.h>

#include "io/pth.h"
#include "engine/ote.h"
#include "tests/expect.h"
#include "train/weights.h"

static void test_paths(void) {
    char w[256], l[256];
    int s = weights_paths("out", w, sizeof w, l, sizeof l);
    EXPECT(s == 0 && !strcmp(w, "out/weights.pth") && !strcmp(l, "out/label_schema.json"), "OUT -> OUT/weights.pth");
    s = weights_paths("out/", w, sizeof w, l, sizeof l);
    EXPECT(s == 0 && !strcmp(w, "out/weights.pth") && !strcmp(l, "out/label_schema.json"), "OUT/ -> OUT/weights.pth");
    s = weights_paths("a/b/best.pth", w, sizeof w, l, sizeof l);
    EXPECT(s == 0 && !strcmp(w, "a/b/best.pth") && !strcmp(l, "a/b/best.label_schema.json"),
          "X.pth kept, X.label_schema.json beside it (issue 13 item 4: two models in one folder)");
    s = weights_paths("m.pth", w, sizeof w, l, sizeof l);
    EXPECT(s == 0 && !strcmp(w, "m.pth") && !strcmp(l, "m.label_schema.json"), "bare m.pth: m.label_schema.json in the cwd");
    s = weights_paths("a/weights.pth", w, sizeof w, l, sizeof l);
    EXPECT(s == 0 && !strcmp(l, "a/label_schema.json"), "DIR/weights.pth keeps OTE's DIR/label_schema.json");
    char h[256];
    EXPECT(weights_side_path("a/b/best.pth", "hpo", h, sizeof h) == 0 && !strcmp(h, "a/b/best.hpo") &&
              weights_side_path("a/weights.pth", "hpo", h, sizeof h) == 0 && !strcmp(h, "a/hpo"),
          "HPO folders: DIR/X.hpo for X.pth, DIR/hpo for weights.pth");
    EXPECT(weights_paths("", w, sizeof w, l, sizeof l) == OTE_EINVAL, "empty path rejected");
}

/* The model table: a conv weight, a scalar scale, the classification conv for 3 classes. */
static det_param_info P[4] = {
    {"neck.conv.weight", 4, {8, 4, 1, 1}, 0, 0},
    {"bbox_head.scales.0.scale", 0, {0}, 0, 0},
    {"bbox_head.atss_cls.weight", 4, {3, 8, 3, 3}, 0, 0},
    {"bbox_head.atss_cls.bias", 1, {3}, 0, 0},
};

static void add(pth_ckpt *c, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    size_t n = 1;
    for (int k = 0; k < ndim; k++) n *= (size_t)shape[k];
    static float zeros[4096];
    if (pth_add_f32(c, name, ndim, shape, zeros) < 0 || n > 4096) printf("  (add %s failed)\n", name);
}

static int match(pth_ckpt *c, int *src, weights_match_result *m) {
    const det_param_info *pp[4] = {&P[0], &P[1], &P[2], &P[3]};
    m->src = src;
    return weights_match(pp, 4, c, "ck.pth", m);
}

static void test_match(void) {
    int src[4];
    weights_match_result m;
    pth_ckpt c;

    pth_init(&c);
    add(&c, "bbox_head.atss_cls.bias", 1, 3, 0, 0, 0);
    add(&c, "neck.conv.weight", 4, 8, 4, 1, 1);
    add(&c, "bbox_head.scales.0.scale", 1, 1, 0, 0, 0); /* [1] where the model has a 0-d scalar */
    add(&c, "bbox_head.atss_cls.weight", 4, 3, 8, 3, 3);
    int s = match(&c, src, &m);
    EXPECT(s == 0 && src[0] == 1 && src[1] == 2 && src[2] == 3 && src[3] == 0 && !m.reinit_cls && m.ckpt_classes == 3,
          "exact match in any order; a [1] tensor fills a 0-d parameter");
    pth_free(&c);

    pth_init(&c);
    add(&c, "neck.conv.weight", 4, 8, 4, 1, 1);
    add(&c, "bbox_head.scales.0.scale", 0, 0, 0, 0, 0);
    add(&c, "bbox_head.atss_cls.weight", 4, 5, 8, 3, 3);
    add(&c, "bbox_head.atss_cls.bias", 1, 5, 0, 0, 0);
    s = match(&c, src, &m);
    EXPECT(s == 0 && m.reinit_cls == 1 && m.ckpt_classes == 5 && src[2] == -1 && src[3] == -1 && src[0] == 0,
          "class count 5 vs 3: only atss_cls left for re-initialisation");
    pth_free(&c);

    pth_init(&c);
    add(&c, "neck.conv.weight", 4, 8, 4, 1, 1);
    add(&c, "bbox_head.scales.0.scale", 0, 0, 0, 0, 0);
    add(&c, "bbox_head.atss_cls.weight", 4, 3, 16, 3, 3);
    add(&c, "bbox_head.atss_cls.bias", 1, 3, 0, 0, 0);
    s = match(&c, src, &m);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "mis-shaped keys (1): bbox_head.atss_cls.weight (checkpoint [3, 16, 3, 3] vs model [3, 8, 3, 3])"),
          "atss_cls differing in input channels is mis-shaped, not a class change");
    pth_free(&c);

    pth_init(&c);
    add(&c, "neck.conv.weight", 4, 8, 4, 3, 3);
    add(&c, "bbox_head.atss_cls.weight", 4, 3, 8, 3, 3);
    add(&c, "bbox_head.atss_cls.bias", 1, 3, 0, 0, 0);
    add(&c, "extra.a", 1, 2, 0, 0, 0);
    s = match(&c, src, &m);
    const char *e = ote_errmsg();
    EXPECT(s == OTE_EINVAL && strstr(e, "ck.pth: checkpoint does not match the model") && strstr(e, "unknown keys (1): extra.a") &&
              strstr(e, "missing keys (1): bbox_head.scales.0.scale") &&
              strstr(e, "mis-shaped keys (1): neck.conv.weight (checkpoint [8, 4, 3, 3] vs model [8, 4, 1, 1])"),
          "unknown, missing and mis-shaped keys all named in one message");
    printf("  (%s)\n", e);
    pth_free(&c);

    pth_init(&c);
    char nm[32];
    for (int k = 0; k < 7; k++) {
        snprintf(nm, sizeof nm, "junk.%d", k);
        add(&c, nm, 1, 1, 0, 0, 0);
    }
    s = match(&c, src, &m);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "unknown keys (7): junk.0, junk.1, junk.2, junk.3, +3 more") &&
              strstr(ote_errmsg(), "missing keys (4)"),
          "long key lists are cut after 4 names with a count");
    pth_free(&c);
}

int main(void) {
    EXPECT_RUN(test_paths);
    EXPECT_RUN(test_match);
    return expect_finish();
}
