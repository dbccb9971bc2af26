/* test_io_pth.c - io/pth: C round trip of checkpoints in every layout, API validation,
 * and hostile input: truncation at every offset, byte flips everywhere, pickle mutations behind
 * a repaired CRC (so the pickle VM itself is fuzzed), and hand-made defects (missing record,
 * compressed entry, non-contiguous stride, unknown opcode, big-endian byteorder, legacy format).
 * Torch-written files (tests/reference/pth_ref.py -> fixtures/pth_ref_*.pth, expected values in
 * pth_ref.fx) check the reader on mmcv/protocol-4/mixed-dtype content and seed the same fuzzing.
 * Run it under the ASan build too: "no crash" is half of what it checks.
 * Interoperability with torch itself is tested by tests/test_pth_interop.py.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/pth.h"
#include "engine/rng.h"
#include "engine/ote.h"
#include "tests/expect.h"
#include "tests/fixture.h"

/* load_ok()'s findings, reported (and reset) by expect_clean_errors() at the end of each case */
static int n_bad_msg, n_not_emptied;

/* Independent CRC-32 (bitwise, no table) to repair archives after we mutate them. */
static uint32_t t_crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}
static uint32_t t_rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned t_rd16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static void t_wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A zip entry as the test sees it (our writer's archives: no comment, no ZIP64). */
typedef struct tent {
    size_t cen;   /* central header offset */
    size_t loc;   /* local header offset */
    size_t data;  /* data offset */
    size_t size;
    char name[64];
} tent;

static int t_entries(const uint8_t *b, size_t len, tent *e, int max) {
    if (len < 22 || t_rd32(b + len - 22) != 0x06054b50u) return -1;
    size_t n = t_rd16(b + len - 22 + 10), p = t_rd32(b + len - 22 + 16);
    if ((int)n > max) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned nl = t_rd16(b + p + 28), xl = t_rd16(b + p + 30), cl = t_rd16(b + p + 32);
        e[i].cen = p;
        e[i].loc = t_rd32(b + p + 42);
        e[i].size = t_rd32(b + p + 24);
        e[i].data = e[i].loc + 30 + t_rd16(b + e[i].loc + 26) + t_rd16(b + e[i].loc + 28);
        snprintf(e[i].name, sizeof e[i].name, "%.*s", (int)nl, (const char *)b + p + 46);
        p += 46 + nl + xl + cl;
    }
    return (int)n;
}
static int t_find(tent *e, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, name)) return i;
    return -1;
}
/* Sets entry i's size (<= original) and recomputes its CRC in both headers. */
static void t_fix(uint8_t *b, const tent *e, size_t size) {
    uint32_t c = t_crc32(b + e->data, size);
    t_wr32(b + e->loc + 14, c);
    t_wr32(b + e->loc + 18, (uint32_t)size);
    t_wr32(b + e->loc + 22, (uint32_t)size);
    t_wr32(b + e->cen + 16, c);
    t_wr32(b + e->cen + 20, (uint32_t)size);
    t_wr32(b + e->cen + 24, (uint32_t)size);
}

static uint8_t *t_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint8_t *t_search(uint8_t *hay, size_t n, const uint8_t *pat, size_t m) {
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(hay + i, pat, m)) return hay + i;
    return NULL;
}

static int same_bits(const void *a, const void *b, size_t n) { return n == 0 || !memcmp(a, b, n); }

/* Deep equality of two checkpoints (bitwise data, so NaN payloads and -0.0 count). */
static int ckpt_equal(const pth_ckpt *a, const pth_ckpt *b, int with_meta, char *why, size_t wn) {
    if (a->n_tensors != b->n_tensors) return snprintf(why, wn, "tensor count %zu vs %zu", a->n_tensors, b->n_tensors), 0;
    for (size_t i = 0; i < a->n_tensors; i++) {
        const pth_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name)) return snprintf(why, wn, "name %s vs %s", x->name, y->name), 0;
        if (x->dtype != y->dtype || x->ndim != y->ndim || x->numel != y->numel)
            return snprintf(why, wn, "%s: dtype/ndim/numel differ", x->name), 0;
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] != y->shape[d]) return snprintf(why, wn, "%s: dim %d differs", x->name, d), 0;
        if (!same_bits(x->data, y->data, x->numel * (x->dtype == PTH_F32 ? 4 : 8))) return snprintf(why, wn, "%s: data differ", x->name), 0;
    }
    if (!with_meta) return 1;
    if (a->n_config != b->n_config) return snprintf(why, wn, "config count %zu vs %zu", a->n_config, b->n_config), 0;
    for (size_t i = 0; i < a->n_config; i++)
        if (strcmp(a->config[i].key, b->config[i].key) || strcmp(a->config[i].value, b->config[i].value))
            return snprintf(why, wn, "config %s=%s vs %s=%s", a->config[i].key, a->config[i].value, b->config[i].key, b->config[i].value), 0;
    if (a->confidence_threshold != b->confidence_threshold || a->version != b->version)
        return snprintf(why, wn, "confidence_threshold/VERSION differ"), 0;
    return 1;
}

/* A checkpoint with random values and every shape class: 4-d, 1-d, 0-d f32 and i64, empty. */
static void build_sample(pth_ckpt *c, uint64_t seed, int big) {
    rng r;
    rng_seed(&r, seed);
    int64_t s_conv[4] = {big ? 32 : 4, 3, 3, 3}, s_vec[1] = {big ? 32 : 4}, s_empty[2] = {0, 5};
    size_t nconv = (size_t)(s_conv[0] * 27);
    float *w = malloc(nconv * sizeof *w);
    for (size_t i = 0; i < nconv; i++) w[i] = (float)rng_normal(&r);
    ASSERT(pth_add_f32(c, "backbone.features.init_block.conv.weight", 4, s_conv, w) == 0);
    for (int i = 0; i < s_vec[0]; i++) w[i] = (float)rng_uniform(&r);
    w[0] = -0.0f;
    w[1] = NAN;
    ASSERT(pth_add_f32(c, "backbone.features.init_block.bn.running_var", 1, s_vec, w) == 0);
    int64_t nbt = (int64_t)(rng_u64(&r) >> 1);
    ASSERT(pth_add_i64(c, "backbone.features.init_block.bn.num_batches_tracked", 0, NULL, &nbt) == 0);
    float sc = 1.5f;
    ASSERT(pth_add_f32(c, "bbox_head.scales.0.scale", 0, NULL, &sc) == 0);
    ASSERT(pth_add_f32(c, "bbox_head.empty", 2, s_empty, NULL) == 0);
    int64_t iv[4] = {INT64_MIN, -300, 65536, INT64_MAX};
    int64_t s_iv[1] = {4};
    ASSERT(pth_add_i64(c, "bbox_head.ints", 1, s_iv, iv) == 0);
    free(w);
    ASSERT(pth_config_set(c, "learning_parameters.batch_size", "8") == 0);
    ASSERT(pth_config_set(c, "learning_parameters.learning_rate", "0.008") == 0);
    ASSERT(pth_config_set(c, "postprocessing.result_based_confidence_threshold", "True") == 0);
    ASSERT(pth_config_set(c, "x.y.z", "") == 0);
    ASSERT(pth_config_set(c, "name", "caf\xc3\xa9") == 0);
    c->confidence_threshold = 0.123456789;
    c->version = 1;
}

static int load_ok(const uint8_t *b, size_t len, pth_ckpt *out) {
    pth_init(out);
    int rc = pth_load_mem(b, len, "fuzz.pth", out);
    if (rc < 0) {
        const char *m = ote_errmsg();
        /* every error is one line naming the source */
        if (!strstr(m, "fuzz.pth") || strchr(m, '\n')) {
            if (n_bad_msg++ < 5) printf("     bad error message: %s\n", m);
        }
        if (out->n_tensors || out->n_config) n_not_emptied++;
    }
    return rc;
}

static void expect_clean_errors(void) {
    EXPECT(n_bad_msg == 0, "every load error is one line naming the source (%d are not)", n_bad_msg);
    EXPECT(n_not_emptied == 0, "every failed load leaves the checkpoint empty (%d do not)", n_not_emptied);
    n_bad_msg = n_not_emptied = 0;
}

static int msg_has(const char *s) { return strstr(ote_errmsg(), s) != NULL; }

/* Loads a torch-written fixture, compares every tensor (order, shape, dtype, exact value) with the
 * arrays "<tag>:<name>" of pth_ref.fx, then fuzzes its pickle behind a repaired CRC. */
static void torch_fixture(const char *src, const fx_file *fx, const char *tag, pth_layout want_layout, rng *r) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/pth_ref_%s.pth", src, tag);
    pth_ckpt c;
    pth_init(&c);
    int rc = pth_load(path, &c);
    if (rc < 0) printf("  %s\n", ote_errmsg());
    EXPECT(rc == 0 && c.layout == want_layout, "torch fixture %s: loads as layout %s", tag, pth_layout_name(want_layout));
    size_t tl = strlen(tag), k = 0;
    int all_ok = 1;
    char ndn[64];
    snprintf(ndn, sizeof ndn, "%s:__ndim", tag);
    const fx_array *ndim = fx_get(fx, ndn);
    for (int i = 0; i < fx->n; i++) {
        const fx_array *a = &fx->a[i];
        if (strncmp(a->name, tag, tl) || a->name[tl] != ':' || !strncmp(a->name + tl + 1, "__", 2)) continue;
        const pth_tensor *t = k < c.n_tensors ? &c.tensors[k] : NULL;
        k++;
        /* fixture arrays of 0-d tensors are stored with shape (1,); __ndim has the true rank */
        int ok = t && !strcmp(t->name, a->name + tl + 1) && (long)k <= ndim->numel && t->ndim == (int)ndim->v[k - 1] &&
                 (long)t->numel == a->numel;
        for (int d = 0; ok && d < t->ndim; d++) ok = t->ndim == a->ndim && t->shape[d] == a->dims[d];
        for (long j = 0; ok && j < a->numel; j++) {
            double v = t->dtype == PTH_F32 ? (double)((const float *)t->data)[j] : (double)((const int64_t *)t->data)[j];
            ok = v == a->v[j] || (isnan(v) && isnan(a->v[j]));
        }
        if (!ok) {
            printf("  mismatch at fixture array %s (C tensor %s)\n", a->name, t ? t->name : "<none>");
            all_ok = 0;
        }
    }
    EXPECT(all_ok && k == c.n_tensors && k > 0, "torch fixture %s: all %zu tensors in order with exact values", tag, k);
    if (want_layout == PTH_LAYOUT_OTE) {
        char cth[64];
        snprintf(cth, sizeof cth, "%s:__confidence_threshold", tag);
        const fx_array *ct = fx_get(fx, cth);
        snprintf(cth, sizeof cth, "%s:__version", tag);
        const fx_array *ve = fx_get(fx, cth);
        EXPECT(c.has_confidence_threshold && c.confidence_threshold == ct->v[0] && c.has_version && (double)c.version == ve->v[0],
              "torch fixture ote: confidence_threshold and VERSION");
        /* the config literal in pth_ref.py, flattened with Python's text for non-strings */
        const char *want[][2] = {{"learning_parameters.batch_size.value", "8"}, {"learning_parameters.batch_size.default_value", "5"},
                                 {"learning_parameters.lr", "0.01"}, {"learning_parameters.flag", "True"},
                                 {"learning_parameters.none", "None"}, {"learning_parameters.list", "[1, 'a', 2.5]"}, {"name", "x"}};
        int cfg_ok = c.n_config == sizeof want / sizeof want[0];
        for (size_t i = 0; cfg_ok && i < c.n_config; i++)
            cfg_ok = !strcmp(c.config[i].key, want[i][0]) && !strcmp(c.config[i].value, want[i][1]);
        EXPECT(cfg_ok, "torch fixture ote: nested mixed-type config flattened in order");
    }
    pth_free(&c);

    size_t len;
    uint8_t *buf = t_read(path, &len);
    tent e[64];
    int n = buf ? t_entries(buf, len, e, 64) : -1;
    int pk = -1;
    for (int i = 0; i < n; i++)
        if (strlen(e[i].name) > 9 && !strcmp(e[i].name + strlen(e[i].name) - 9, "/data.pkl")) pk = i;
    EXPECT(pk >= 0, "torch fixture %s: zip directory parsed by the test", tag);
    if (pk < 0) {
        free(buf);
        return;
    }
    int errs = 0, iters = 5000;
    uint8_t *m = malloc(len);
    for (int it = 0; it < iters; it++) {
        memcpy(m, buf, len);
        int flips = 1 + (int)rng_below(r, 3);
        for (int f = 0; f < flips; f++) m[e[pk].data + rng_below(r, e[pk].size)] = (uint8_t)rng_below(r, 256);
        size_t size = rng_below(r, 4) == 0 ? rng_below(r, e[pk].size) : e[pk].size; /* sometimes also truncate */
        t_fix(m, &e[pk], size);
        pth_ckpt x;
        if (load_ok(m, len, &x) < 0) errs++;
        pth_free(&x);
    }
    free(m);
    free(buf);
    printf("  (%d of %d mutations of %s's pickle rejected)\n", errs, iters, tag);
    EXPECT(errs > 0, "torch fixture %s: pickle mutations give errors or valid results, no crash", tag);
}

/* the scratch checkpoint every case writes: <mkdtemp dir>/weights.pth */
static char dir[] = "/tmp/test_io_pth_XXXXXX", path[256];

/* 1. round trip in every layout */
static void case_round_trip(void) {
    char tmpname[300], why[256];
    for (int lay = 0; lay < 3; lay++) {
        pth_ckpt a, b;
        pth_init(&a);
        build_sample(&a, 42 + (uint64_t)lay, 1);
        a.layout = (pth_layout)lay;
        int rc = pth_save(path, &a);
        EXPECT(rc == 0, "save layout %s", pth_layout_name(a.layout));
        snprintf(tmpname, sizeof tmpname, "%s.tmp-%ld", path, (long)getpid());
        struct stat sb;
        EXPECT(stat(tmpname, &sb) != 0, "no temporary file left behind");
        pth_init(&b);
        rc = pth_load(path, &b);
        if (rc < 0) printf("  %s\n", ote_errmsg());
        EXPECT(rc == 0 && b.layout == a.layout, "load layout %s", pth_layout_name(a.layout));
        int eq = ckpt_equal(&a, &b, lay == PTH_LAYOUT_OTE, why, sizeof why);
        if (!eq) printf("  %s\n", why);
        EXPECT(eq, "layout %s: names, shapes, values%s identical", pth_layout_name(a.layout),
               lay == PTH_LAYOUT_OTE ? ", config, threshold, VERSION" : "");
        if (lay == PTH_LAYOUT_OTE) {
            EXPECT(b.has_confidence_threshold && b.has_version && b.confidence_threshold == 0.123456789 && b.version == 1,
                  "OTE layout: confidence_threshold and VERSION present");
            EXPECT(pth_config_get(&b, "x.y.z") && !strcmp(pth_config_get(&b, "x.y.z"), ""), "nested config key x.y.z read back");
        } else {
            EXPECT(!b.has_confidence_threshold && !b.has_version && b.n_config == 0, "non-OTE layout: no metadata");
        }
        pth_free(&a);
        pth_free(&b);
    }
}

/* The small sample checkpoint (seed 7) saved and read back as bytes, with its zip directory. */
typedef struct sample {
    uint8_t *buf;
    size_t len;
    tent e[32];
    int n, pk; /* entries; index of archive/data.pkl */
} sample;

static void sample_open(sample *sm) {
    pth_ckpt a;
    pth_init(&a);
    build_sample(&a, 7, 0);
    ASSERT(pth_save(path, &a) == 0);
    pth_free(&a);
    sm->buf = t_read(path, &sm->len);
    ASSERT(sm->buf != NULL);
    sm->n = t_entries(sm->buf, sm->len, sm->e, 32);
    sm->pk = t_find(sm->e, sm->n, "archive/data.pkl");
}

/* 2. file format facts torch relies on: 64-byte aligned data records, version "3\n" */
static void case_format_facts(void) {
    sample sm;
    sample_open(&sm);
    uint8_t *buf = sm.buf;
    tent *e = sm.e;
    int n = sm.n;
    {
        int aligned = n > 0, crc_ok = n > 0;
        for (int i = 0; i < n; i++) {
            if (e[i].data % 64) aligned = 0;
            if (t_crc32(buf + e[i].data, e[i].size) != t_rd32(buf + e[i].cen + 16)) crc_ok = 0;
        }
        EXPECT(aligned, "every record's data starts at a multiple of 64");
        EXPECT(crc_ok, "CRC-32 of every record matches an independent CRC");
        int v = t_find(e, n, "archive/version");
        EXPECT(v >= 0 && e[v].size == 2 && !memcmp(buf + e[v].data, "3\n", 2), "archive/version is \"3\\n\"");
        EXPECT(t_find(e, n, "archive/data.pkl") == 0 && t_find(e, n, "archive/data/0") == 1, "data.pkl first, then data/0");
    }
    free(buf);
}

/* 3. truncation at every offset: always an error, never a crash */
static void case_truncation(void) {
    sample sm;
    sample_open(&sm);
    const uint8_t *buf = sm.buf;
    size_t len = sm.len;
    {
        int all_err = 1;
        for (size_t cut = 0; cut < len; cut++) {
            pth_ckpt c;
            if (load_ok(buf, cut, &c) >= 0) {
                all_err = 0;
                printf("  truncated at %zu loaded\n", cut);
            }
            pth_free(&c);
        }
        EXPECT(all_err, "truncated at every offset -> error");
    }
    expect_clean_errors();
    free(sm.buf);
}

/* 4. each byte flipped: either an error or exactly the original content */
static void case_byte_flips(void) {
    sample sm;
    sample_open(&sm);
    const uint8_t *buf = sm.buf;
    size_t len = sm.len;
    char why[256];
    {
        pth_ckpt ref;
        pth_init(&ref);
        ASSERT(pth_load_mem(buf, len, "ref", &ref) == 0);
        int consistent = 1, n_err = 0;
        for (size_t i = 0; i < len; i++) {
            uint8_t *m = malloc(len);
            memcpy(m, buf, len);
            m[i] ^= 0x5a;
            pth_ckpt c;
            if (load_ok(m, len, &c) >= 0) {
                if (!ckpt_equal(&ref, &c, 1, why, sizeof why)) {
                    consistent = 0;
                    printf("  flip at %zu silently changed content: %s\n", i, why);
                }
            } else {
                n_err++;
            }
            pth_free(&c);
            free(m);
        }
        printf("  (%d of %zu flips rejected)\n", n_err, len);
        EXPECT(consistent, "flipped byte anywhere -> error or identical content (CRC-32 protects the data)");
        pth_free(&ref);
    }
    expect_clean_errors();
    free(sm.buf);
}

/* 5. pickle fuzz behind a repaired CRC: every prefix of data.pkl, random byte flips */
static void case_pickle_fuzz(void) {
    sample sm;
    sample_open(&sm);
    const uint8_t *buf = sm.buf;
    size_t len = sm.len;
    const tent *e = sm.e;
    int pk = sm.pk;
    ASSERT(pk >= 0);
    {
        int prefix_err = 1;
        for (size_t cut = 0; cut < e[pk].size; cut++) {
            uint8_t *m = malloc(len);
            memcpy(m, buf, len);
            t_fix(m, &e[pk], cut);
            pth_ckpt c;
            if (load_ok(m, len, &c) >= 0) prefix_err = 0;
            pth_free(&c);
            free(m);
        }
        EXPECT(prefix_err, "every strict prefix of data.pkl -> error");
        rng r;
        rng_seed(&r, 2024);
        int fuzz_n = 20000, fuzz_err = 0;
        for (int it = 0; it < fuzz_n; it++) {
            uint8_t *m = malloc(len);
            memcpy(m, buf, len);
            int flips = 1 + (int)rng_below(&r, 3);
            for (int k = 0; k < flips; k++) {
                size_t at = e[pk].data + rng_below(&r, e[pk].size);
                m[at] = (uint8_t)rng_below(&r, 256);
            }
            t_fix(m, &e[pk], e[pk].size);
            pth_ckpt c;
            if (load_ok(m, len, &c) < 0) fuzz_err++;
            pth_free(&c);
            free(m);
        }
        printf("  (%d of %d pickle mutations rejected, the rest decoded to something valid)\n", fuzz_err, fuzz_n);
        EXPECT(fuzz_err > 0, "pickle mutations behind a repaired CRC: no crash, errors reported");
    }
    expect_clean_errors();
    free(sm.buf);
}

/* 6. hand-made defects with specific messages */
static void case_defects(void) {
    sample sm;
    sample_open(&sm);
    const uint8_t *buf = sm.buf;
    size_t len = sm.len;
    tent *e = sm.e;
    int n = sm.n, pk = sm.pk;
    {
        {
            uint8_t *m = malloc(len);
            memcpy(m, buf, len);
            int d0 = t_find(e, n, "archive/data/0");
            m[e[d0].cen + 46 + strlen("archive/data/")] = 'X'; /* rename the record in the directory */
            pth_ckpt c;
            int rc = load_ok(m, len, &c);
            EXPECT(rc < 0 && msg_has("missing"), "missing data record -> error 'missing'");
            printf("  message: %s\n", ote_errmsg());
            memcpy(m, buf, len);
            m[e[d0].cen + 10] = 8; /* method: deflate */
            rc = load_ok(m, len, &c);
            EXPECT(rc < 0 && msg_has("compressed"), "compressed entry -> error 'compressed'");
            printf("  message: %s\n", ote_errmsg());
            memcpy(m, buf, len);
            m[e[pk].data + 2] = 0xff; /* first opcode after PROTO 2 */
            t_fix(m, &e[pk], e[pk].size);
            rc = load_ok(m, len, &c);
            EXPECT(rc < 0 && msg_has("unsupported pickle opcode 0xff"), "unknown pickle opcode -> error naming it");
            printf("  message: %s\n", ote_errmsg());
            memcpy(m, buf, len);
            m[e[d0].data] ^= 1;
            rc = load_ok(m, len, &c);
            EXPECT(rc < 0 && msg_has("CRC"), "corrupt tensor data -> CRC error");
            int bo = t_find(e, n, "archive/byteorder");
            memcpy(m, buf, len);
            memcpy(m + e[bo].data, "big", 3);
            t_fix(m, &e[bo], 3);
            rc = load_ok(m, len, &c);
            EXPECT(rc < 0 && msg_has("byteorder"), "big-endian byteorder record -> error");
            pth_free(&c);
            free(m);
        }
    }
    expect_clean_errors();
    free(sm.buf);
}

/* 7. non-contiguous stride: patch the stride tuple of a (2, 3) tensor from (3, 1) to (1, 2) */
static void case_stride(void) {
    {
        pth_ckpt a;
        pth_init(&a);
        a.layout = PTH_LAYOUT_BARE;
        int64_t s[2] = {2, 3};
        float v[6] = {1, 2, 3, 4, 5, 6};
        ASSERT(pth_add_f32(&a, "t", 2, s, v) == 0);
        ASSERT(pth_save(path, &a) == 0);
        size_t len;
        uint8_t *buf = t_read(path, &len);
        tent e[8];
        int n = t_entries(buf, len, e, 8);
        int pk = t_find(e, n, "archive/data.pkl");
        const uint8_t pat[] = {'K', 2, 'K', 3, 0x86, 'K', 3, 'K', 1, 0x86};
        uint8_t *hit = t_search(buf + e[pk].data, e[pk].size, pat, sizeof pat);
        EXPECT(hit != NULL, "found size/stride tuples in data.pkl");
        if (hit) {
            hit[6] = 1;
            hit[8] = 2;
            t_fix(buf, &e[pk], e[pk].size);
            pth_ckpt c;
            int rc = load_ok(buf, len, &c);
            EXPECT(rc < 0 && msg_has("non-contiguous"), "non-contiguous stride -> error");
            printf("  message: %s\n", ote_errmsg());
            /* and a storage offset past the end of the storage */
            hit[6] = 3;
            hit[8] = 1;
            hit[-2] = 'K', hit[-1] = 1; /* storage offset (BININT1 0 -> 1) precedes the size tuple */
            t_fix(buf, &e[pk], e[pk].size);
            rc = load_ok(buf, len, &c);
            EXPECT(rc < 0 && msg_has("exceed its storage"), "storage offset + numel past the storage -> error");
            pth_free(&c);
        }
        free(buf);
        pth_free(&a);
    }
    expect_clean_errors();
}

/* 8. other bad files */
static void case_bad_files(void) {
    {
        pth_ckpt c;
        int rc = load_ok((const uint8_t *)"", 0, &c);
        EXPECT(rc < 0 && msg_has("empty"), "empty file -> error 'empty'");
        const char *txt = "model:\n  weights: not a zip at all, just some text\n";
        rc = load_ok((const uint8_t *)txt, strlen(txt), &c);
        EXPECT(rc < 0 && msg_has("not a zip"), "text file -> error 'not a zip'");
        const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
        rc = load_ok(legacy, sizeof legacy, &c);
        EXPECT(rc < 0 && msg_has("legacy"), "legacy torch < 1.6 file -> error 'legacy'");
        pth_init(&c);
        rc = pth_load("/nonexistent/dir/weights.pth", &c);
        EXPECT(rc == OTE_EIO && msg_has("/nonexistent/dir/weights.pth"), "missing file -> OTE_EIO naming the path");
        rc = pth_save("/nonexistent/dir/weights.pth", &c);
        EXPECT(rc == OTE_EIO, "unwritable path -> OTE_EIO");
        pth_free(&c);
    }
    expect_clean_errors();
}

/* 9. API validation */
static void case_api(void) {
    {
        pth_ckpt c;
        pth_init(&c);
        float x = 1;
        int64_t s1[1] = {1}, sneg[1] = {-1};
        EXPECT(pth_add_f32(&c, "a", 1, s1, &x) == 0, "add tensor");
        EXPECT(pth_add_f32(&c, "a", 1, s1, &x) == OTE_EINVAL, "duplicate name rejected");
        EXPECT(pth_add_f32(&c, "", 1, s1, &x) == OTE_EINVAL, "empty name rejected");
        EXPECT(pth_add_f32(&c, "b", 1, sneg, &x) == OTE_EINVAL, "negative dim rejected");
        EXPECT(pth_add_f32(&c, "b", PTH_MAX_DIMS + 1, s1, &x) == OTE_EINVAL, "too many dims rejected");
        EXPECT(pth_config_set(&c, "lp.bs", "8") == 0, "config set");
        EXPECT(pth_config_set(&c, "lp", "x") == OTE_EINVAL, "config leaf that is also a dict rejected");
        EXPECT(pth_config_set(&c, "lp.bs.x", "x") == OTE_EINVAL, "config dict that is also a leaf rejected");
        EXPECT(pth_config_set(&c, "lp..x", "x") == OTE_EINVAL && pth_config_set(&c, ".x", "x") == OTE_EINVAL,
              "empty key component rejected");
        EXPECT(pth_config_set(&c, "lp.bs", "16") == 0 && !strcmp(pth_config_get(&c, "lp.bs"), "16") && c.n_config == 1,
              "config set replaces");
        pth_free(&c);
    }
}

/* 10. checkpoints written by torch itself */
static void case_torch_fixtures(void) {
    {
        const char *src = getenv("OTE_SRC") ? getenv("OTE_SRC") : ".";
        char fxp[512];
        snprintf(fxp, sizeof fxp, "%s/tests/reference/fixtures/pth_ref.fx", src);
        fx_file fx;
        int rc = fx_load(&fx, fxp);
        EXPECT(rc == 0, "fixture pth_ref.fx loads");
        if (rc == 0) {
            rng r;
            rng_seed(&r, 99);
            torch_fixture(src, &fx, "mmcv", PTH_LAYOUT_STATE_DICT, &r);
            torch_fixture(src, &fx, "proto4", PTH_LAYOUT_BARE, &r);
            torch_fixture(src, &fx, "ote", PTH_LAYOUT_OTE, &r);
            fx_free(&fx);
        }
    }
    expect_clean_errors();
}

/* 11. the training state's 'optimizer' dict (aux tensors, issue 14): round trip by name, kept
 * out of the state dict, names unique among aux only, not written in the other layouts */
static void case_aux(void) {
    char why[256];
    {
        pth_ckpt a, b;
        pth_init(&a);
        build_sample(&a, 11, 0);
        size_t n_model = a.n_tensors;
        const pth_tensor *t0 = &a.tensors[0];
        float m0[65]; /* the second aux tensor starts at m0 + 1 */
        for (int i = 0; i < 65; i++) m0[i] = 0.5f * (float)i - 3.25f;
        int64_t sh[1] = {(int64_t)(t0->numel < 64 ? t0->numel : 64)};
        char name0[128];
        snprintf(name0, sizeof name0, "%s", t0->name);
        EXPECT(pth_add_aux_f32(&a, name0, 1, sh, m0) == 0 && pth_add_aux_f32(&a, "other.momentum", 1, sh, m0 + 1) == 0,
              "aux tensors may reuse state-dict names");
        EXPECT(pth_add_aux_f32(&a, name0, 1, sh, m0) == OTE_EINVAL, "duplicate aux name rejected");
        EXPECT(a.n_tensors == n_model && a.n_aux == 2, "aux tensors are not state-dict tensors");
        EXPECT(pth_save(path, &a) == 0, "save OTE layout with an 'optimizer' dict");
        pth_init(&b);
        int rc = pth_load(path, &b);
        const pth_tensor *x = rc == 0 ? pth_find_aux(&b, name0) : NULL, *y = rc == 0 ? pth_find_aux(&b, "other.momentum") : NULL;
        EXPECT(rc == 0 && b.n_tensors == n_model && b.n_aux == 2 && x && y && x->numel == (size_t)sh[0] &&
                  same_bits(x->data, m0, (size_t)sh[0] * sizeof(float)) && same_bits(y->data, m0 + 1, (size_t)sh[0] * sizeof(float)),
              "aux tensors read back bit for bit, state dict unchanged");
        EXPECT(rc == 0 && ckpt_equal(&a, &b, 1, why, sizeof why), "model tensors and config identical beside the aux dict");
        EXPECT(rc == 0 && !pth_find_aux(&b, "missing") && !pth_find(&b, "other.momentum"), "aux lookups stay separate");
        pth_free(&b);
        a.layout = PTH_LAYOUT_BARE;
        pth_init(&b);
        EXPECT(pth_save(path, &a) == 0 && pth_load(path, &b) == 0 && b.n_aux == 0 && b.n_tensors == n_model,
              "bare layout: the aux dict is not written");
        pth_free(&a);
        pth_free(&b);
    }
}

int main(void) {
    REQUIRE(mkdtemp(dir) != NULL, "scratch directory %s", dir);
    snprintf(path, sizeof path, "%s/weights.pth", dir);
    EXPECT_RUN(case_round_trip);
    EXPECT_RUN(case_format_facts);
    EXPECT_RUN(case_truncation);
    EXPECT_RUN(case_byte_flips);
    EXPECT_RUN(case_pickle_fuzz);
    EXPECT_RUN(case_defects);
    EXPECT_RUN(case_stride);
    EXPECT_RUN(case_bad_files);
    EXPECT_RUN(case_api);
    EXPECT_RUN(case_torch_fixtures);
    EXPECT_RUN(case_aux);
    unlink(path);
    rmdir(dir);
    return expect_finish();
}
