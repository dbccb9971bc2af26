/* test_train_backbone.c - the backbone initialisation (model.pretrained_backbone) goes through the
 * checkpoint code's full name and shape check (train/weights.c weights_match_backbone /
 * weights_load_backbone), not only element counts.
 *
 * Hand-made parameter tables: a backbone file may leave parameters out and carry the ImageNet
 * classifier (skipped), but an unknown key, a tensor of the same element count and another shape,
 * or a classification conv of another class count is refused with one line naming the key and both
 * shapes. A real torchvision-variant detector: the shared TFLite MobileNetV2 imported exactly as
 * `ote import-backbone` writes it loads (every backbone parameter set, values read back equal to
 * the file's); the same file with one tensor reshaped (same element count) is refused and leaves
 * the detector unchanged (all or nothing). A missing TFLite file is a failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/eng.h"
#include "io/pth.h"
#include "engine/ote.h"
#include "io/tfl.h"
#include "models/det.h"
#include "tests/expect.h"
#include "train/import_backbone.h"
#include "train/weights.h"

/* The model table: two backbone tensors, a neck conv, the classification conv for 3 classes. */
static const det_param_info P[4] = {
    {"backbone.features.init_block.conv.weight", 4, {32, 3, 3, 3}, 0, 0},
    {"backbone.features.init_block.bn.num_batches_tracked", 0, {0}, 1, 1},
    {"neck.conv.weight", 4, {8, 4, 1, 1}, 0, 0},
    {"bbox_head.atss_cls.weight", 4, {3, 8, 3, 3}, 0, 0},
};

static void add(pth_ckpt *c, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    static float zeros[4096];
    int64_t shape[4] = {d0, d1, d2, d3};
    int64_t n = 1;
    for (int k = 0; k < ndim; k++) n *= shape[k];
    ASSERT(n <= 4096);
    REQUIRE_OK(pth_add_f32(c, name, ndim, shape, zeros));
}

static int match(const pth_ckpt *c, int *src) {
    const det_param_info *pp[4] = {&P[0], &P[1], &P[2], &P[3]};
    weights_match_result m = {src, 0, 0};
    return weights_match_backbone(pp, 4, c, "bb.pth", &m);
}

static void test_tables(void) {
    int src[4];
    pth_ckpt c;
    pth_init(&c);
    add(&c, "backbone.features.init_block.conv.weight", 4, 32, 3, 3, 3);
    add(&c, "backbone.features.init_block.bn.num_batches_tracked", 0, 0, 0, 0, 0);
    add(&c, "backbone.features.final_block.conv.weight", 4, 16, 8, 1, 1);
    add(&c, "backbone.output.weight", 2, 10, 16, 0, 0);
    int s = match(&c, src);
    EXPECT(s == 0 && src[0] == 0 && src[1] == 1 && src[2] == -1 && src[3] == -1,
           "backbone subset + ImageNet classifier: accepted, neck/head left out (%s)", s ? ote_errmsg() : "ok");
    pth_free(&c);

    pth_init(&c);
    add(&c, "backbone.features.init_block.conv.weight", 4, 32, 27, 1, 1); /* 864 elements, as (32, 3, 3, 3) */
    s = match(&c, src);
    const char *msg = ote_errmsg();
    EXPECT(s == OTE_EINVAL && strstr(msg, "bb.pth") && strstr(msg, "backbone.features.init_block.conv.weight") &&
               strstr(msg, "checkpoint [32, 27, 1, 1]") && strstr(msg, "model [32, 3, 3, 3]") && !strchr(msg, '\n'),
           "same element count, other shape: refused in one line naming key and shapes: %s", msg);
    pth_free(&c);

    pth_init(&c);
    add(&c, "backbone.features.init_block.conv.weight", 4, 32, 3, 3, 3);
    add(&c, "backbone.features.stage9.unit1.conv.weight", 1, 4, 0, 0, 0);
    s = match(&c, src);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "unknown keys (1): backbone.features.stage9.unit1.conv.weight"),
           "unknown key refused: %s", ote_errmsg());
    pth_free(&c);

    pth_init(&c);
    add(&c, "bbox_head.atss_cls.weight", 4, 5, 8, 3, 3);
    s = match(&c, src);
    EXPECT(s == OTE_EINVAL && strstr(ote_errmsg(), "bbox_head.atss_cls.weight (checkpoint [5, 8, 3, 3] vs model [3, 8, 3, 3])"),
           "no class-count exception for a backbone file: %s", ote_errmsg());
    pth_free(&c);
}

/* The import exactly as `ote import-backbone` writes it (backbone only, TF input range). */
static int import_file(const char *tflite, pth_ckpt *c) {
    tfl_model m;
    CHECK(tfl_load(&m, tflite));
    import_backbone_result r;
    int s = import_backbone_tflite(&m, 0, &r);
    tfl_free(&m);
    CHECK(s);
    s = import_backbone_to_ckpt(&r, "test.tflite", 0, c);
    import_backbone_free(&r);
    return s;
}

/* Every tensor of c equals the detector's parameter of that name (int64 as float). */
static int same_values(detector *d, const pth_ckpt *c, float *buf) {
    for (size_t j = 0; j < c->n_tensors; j++) {
        const pth_tensor *t = &c->tensors[j];
        int i = det_param_find(d, t->name);
        if (i < 0 || det_param_get(d, i, buf) < 0) return 0;
        for (size_t k = 0; k < t->numel; k++) {
            float want = t->dtype == PTH_I64 ? (float)((const int64_t *)t->data)[k] : ((const float *)t->data)[k];
            if (buf[k] != want) return 0;
        }
    }
    return 1;
}

static void test_detector(const char *shared) {
    char tflite[1024], good[256], bad[256];
    snprintf(tflite, sizeof tflite, "%s/weights/mobilenet_v2_1.0_224_tflite/tf2_mobilenet_v2_1.0_224_ptq.tflite", shared);
    snprintf(good, sizeof good, "/tmp/ote_test_backbone_%ld.pth", (long)getpid());
    snprintf(bad, sizeof bad, "/tmp/ote_test_backbone_bad_%ld.pth", (long)getpid());
    pth_ckpt c;
    pth_init(&c);
    int s = import_file(tflite, &c);
    EXPECT(s == 0, "import %s (%s)", tflite, s ? ote_errmsg() : "ok");
    if (s) return;
    REQUIRE_OK(pth_save(good, &c));

    eng_ctx e;
    REQUIRE_OK(eng_init(&e, 0));
    det_cfg dc;
    memset(&dc, 0, sizeof dc);
    dc.num_classes = 3;
    dc.backbone = DET_BACKBONE_TORCHVISION;
    dc.tf_padding = 1;
    dc.seed = 7;
    detector *d;
    REQUIRE_OK(det_create(&d, &e, &dc));
    float *buf = malloc(2 * 1024 * 1024 * sizeof *buf);
    ASSERT(buf);

    weights_load_info info;
    memset(&info, 0, sizeof info);
    s = weights_load_backbone(d, good, &info);
    EXPECT(s == 0 && info.n_loaded == (int)c.n_tensors, "imported backbone loads into the torchvision detector: "
           "%d of %zu tensors set (%s)", info.n_loaded, c.n_tensors, s ? ote_errmsg() : "ok");
    EXPECT(s == 0 && same_values(d, &c, buf), "every loaded parameter reads back equal to the file's values");

    /* the same file with init_block's conv weight (32, 3, 3, 3) stored as (32, 27, 1, 1) and
     * every value changed (the refusal must set nothing) */
    pth_ckpt b;
    pth_init(&b);
    REQUIRE_OK(import_file(tflite, &b));
    pth_tensor *t = NULL;
    for (size_t j = 0; j < b.n_tensors; j++) {
        if (!strcmp(b.tensors[j].name, "backbone.features.init_block.conv.weight")) t = &b.tensors[j];
        if (b.tensors[j].dtype == PTH_F32)
            for (size_t k = 0; k < b.tensors[j].numel; k++) ((float *)b.tensors[j].data)[k] += 1.0f;
    }
    EXPECT(t && t->ndim == 4 && t->shape[1] == 3, "the import has init_block.conv.weight (32, 3, 3, 3)");
    if (t) {
        t->shape[1] = 27, t->shape[2] = 1, t->shape[3] = 1;
        REQUIRE_OK(pth_save(bad, &b));
        s = weights_load_backbone(d, bad, &info);
        const char *msg = ote_errmsg();
        EXPECT(s == OTE_EINVAL && strstr(msg, bad) && strstr(msg, "backbone.features.init_block.conv.weight") &&
                   strstr(msg, "[32, 27, 1, 1]") && strstr(msg, "[32, 3, 3, 3]") && !strchr(msg, '\n'),
               "mis-shaped backbone file refused in one line: %s", msg);
        EXPECT(same_values(d, &c, buf), "after the refusal the detector still holds the good file's values");
    }
    pth_free(&b);
    s = weights_load_backbone(d, "/tmp/ote_test_backbone_missing.pth", NULL);
    EXPECT(s < 0 && strstr(ote_errmsg(), "ote_test_backbone_missing.pth"), "missing file named: %s", ote_errmsg());
    unlink(good);
    unlink(bad);
    free(buf);
    det_free(d);
    eng_free(&e);
    pth_free(&c);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *shared = getenv("OTE_SHARED");
    if (!shared) shared = "../shared";
    test_tables();
    test_detector(shared);
    return expect_finish();
}
