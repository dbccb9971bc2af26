/* cmd_pth.c - hidden `ote pth-dump` sub-command: inspect, re-save or generate PyTorch checkpoints
 * through io/pth. It exists for the torch interoperability test (tests/test_pth_interop.py)
 * and for debugging a weights file by hand.
 *
 *   ote pth-dump FILE [--resave OUT] [--layout ote|state_dict|bare]
 *   ote pth-dump --sample OUT [--layout ote|state_dict|bare]
 *
 * Dump format (one record per line, tab-separated fields):
 *   layout <name> / confidence_threshold <%.17g or -> / version <int or -> / config <key> <value>
 *   tensor <name> <f32|i64> <storage class> <dims comma-separated, empty for 0-d> <fnv1a64 hex>
 * The hash is FNV-1a 64 over the little-endian f32/i64 bytes, so a script can check values
 * exactly without printing them.
 */
#include <math.h>
#include <float.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "io/pth.h"
#include "engine/ote.h"
#include "tools/commands.h"

static uint64_t cmd_pth_fnv1a(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void cmd_pth_print(const pth_ckpt *c) {
    printf("layout\t%s\n", pth_layout_name(c->layout));
    if (c->has_confidence_threshold) printf("confidence_threshold\t%.17g\n", c->confidence_threshold);
    else printf("confidence_threshold\t-\n");
    if (c->has_version) printf("version\t%" PRId64 "\n", c->version);
    else printf("version\t-\n");
    for (size_t i = 0; i < c->n_config; i++) printf("config\t%s\t%s\n", c->config[i].key, c->config[i].value);
    for (size_t i = 0; i < c->n_tensors; i++) {
        const pth_tensor *t = &c->tensors[i];
        printf("tensor\t%s\t%s\t%s\t", t->name, t->dtype == PTH_F32 ? "f32" : "i64", t->src_type);
        for (int d = 0; d < t->ndim; d++) printf("%s%" PRId64, d ? "," : "", t->shape[d]);
        size_t bytes = t->numel * (t->dtype == PTH_F32 ? sizeof(float) : sizeof(int64_t));
        printf("\t%016" PRIx64 "\n", cmd_pth_fnv1a(t->data, bytes));
    }
}

/* The sample checkpoint: the same formulas are written out independently in
 * tests/test_pth_interop.py, which checks torch.load's view of this file against them. */
static int cmd_pth_sample(pth_ckpt *c) {
    float w[3 * 64 * 3 * 3];
    for (int j = 0; j < 3 * 64 * 9; j++) w[j] = (float)((j * 37 + 11) % 97 - 48) / 16.0f;
    int64_t s4333[4] = {4, 3, 3, 3}, s4[1] = {4}, s8[1] = {8}, s64[1] = {64}, s3[4] = {3, 64, 3, 3}, s0[1] = {0},
            s203[3] = {2, 0, 3}, s5[1] = {5};
    CHECK(pth_add_f32(c, "backbone.features.init_block.conv.weight", 4, s4333, w));
    float g[4] = {1.0f, 1.25f, 1.5f, 1.75f};
    CHECK(pth_add_f32(c, "backbone.features.init_block.bn.weight", 1, s4, g));
    float sp[8] = {0x1p-149f, -0.0f, FLT_MAX, INFINITY, -INFINITY, NAN, 0.1f, -2.5f};
    CHECK(pth_add_f32(c, "backbone.features.init_block.bn.running_var", 1, s8, sp));
    int64_t nbt = 1234567890123;
    CHECK(pth_add_i64(c, "backbone.features.init_block.bn.num_batches_tracked", 0, NULL, &nbt));
    float b[64];
    for (int j = 0; j < 64; j++) b[j] = (float)j * 0.125f - 4.0f;
    CHECK(pth_add_f32(c, "neck.lateral_convs.0.conv.bias", 1, s64, b));
    CHECK(pth_add_f32(c, "bbox_head.atss_cls.weight", 4, s3, w));
    CHECK(pth_add_f32(c, "bbox_head.empty", 1, s0, NULL));
    CHECK(pth_add_f32(c, "bbox_head.empty3d", 3, s203, NULL));
    float half = 0.5f;
    CHECK(pth_add_f32(c, "bbox_head.scalar", 0, NULL, &half));
    int64_t cnt[5] = {INT64_MIN, -1, 0, 70000, INT64_MAX};
    CHECK(pth_add_i64(c, "bbox_head.counts", 1, s5, cnt));
    CHECK(pth_config_set(c, "learning_parameters.batch_size", "8"));
    CHECK(pth_config_set(c, "learning_parameters.learning_rate", "0.008"));
    CHECK(pth_config_set(c, "postprocessing.confidence_threshold", "0.35"));
    CHECK(pth_config_set(c, "model_name", "MobileNetV2-ATSS"));
    CHECK(pth_config_set(c, "learning_parameters.num_iters", "300"));
    CHECK(pth_config_set(c, "a.b.c", "deep"));
    CHECK(pth_config_set(c, "unicode", "h\xc3\xa9llo \xe2\x9c\x93"));
    c->confidence_threshold = 0.35;
    c->version = 1;
    return OTE_OK;
}

static int cmd_pth_layout(const char *s, pth_layout *l) {
    if (!strcmp(s, "ote")) *l = PTH_LAYOUT_OTE;
    else if (!strcmp(s, "state_dict")) *l = PTH_LAYOUT_STATE_DICT;
    else if (!strcmp(s, "bare")) *l = PTH_LAYOUT_BARE;
    else return -1;
    return 0;
}

int cmd_pth_dump(int argc, char **argv) {
    const char *in = NULL, *sample = NULL, *resave = NULL;
    pth_layout layout = PTH_LAYOUT_OTE;
    int have_layout = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: ote pth-dump FILE [--resave OUT] [--layout ote|state_dict|bare]\n"
                   "       ote pth-dump --sample OUT [--layout ote|state_dict|bare]\n");
            return 0;
        } else if (!strcmp(argv[i], "--sample") && i + 1 < argc) {
            sample = argv[++i];
        } else if (!strcmp(argv[i], "--resave") && i + 1 < argc) {
            resave = argv[++i];
        } else if (!strcmp(argv[i], "--layout") && i + 1 < argc) {
            if (cmd_pth_layout(argv[++i], &layout) < 0) {
                fprintf(stderr, "ote pth-dump: --layout: unknown value '%s' (ote, state_dict, bare)\n", argv[i]);
                return 2;
            }
            have_layout = 1;
        } else if (argv[i][0] != '-' && !in) {
            in = argv[i];
        } else {
            fprintf(stderr, "ote pth-dump: unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!!in == !!sample) {
        fprintf(stderr, "ote pth-dump: give exactly one of FILE or --sample OUT (see --help)\n");
        return 2;
    }
    pth_ckpt c;
    pth_init(&c);
    int rc;
    if (sample) {
        rc = cmd_pth_sample(&c);
        c.layout = layout;
        if (rc >= 0) rc = pth_save(sample, &c);
    } else {
        rc = pth_load(in, &c);
        if (rc >= 0) {
            cmd_pth_print(&c);
            if (resave) {
                if (have_layout) c.layout = layout;
                rc = pth_save(resave, &c);
            }
        }
    }
    if (rc < 0) fprintf(stderr, "ote pth-dump: %s\n", ote_errmsg());
    pth_free(&c);
    return rc < 0 ? 1 : 0;
}
