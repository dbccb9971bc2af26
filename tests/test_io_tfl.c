/* test_io_tfl.c - the TFLite FlatBuffer reader and dequantisation.
 *
 * 1. Both shared files parse; operator counts are the README's (36 CONV_2D, 17 DEPTHWISE_CONV_2D,
 *    10 ADD); model input [1,224,224,3] and output [1,1001] (MobileNetV2 facts).
 * 2. Against tests/reference/fixtures/tflite_ref.fx (an independent Python/numpy FlatBuffer walk,
 *    tests/reference/tflite_ref.py): tensor/buffer counts, every operator's builtin code, every
 *    conv's stride/padding/activation/depth multiplier, the shape/type/scales/zero points/
 *    quantized_dimension of three weight tensors (exact), their first 64 dequantised values and
 *    the first conv's dequantised int32 bias (tolerance 1 ulp relative, 1.2e-7: both sides
 *    compute in double and round once to float).
 * 3. Hand computation from the raw bytes on a few elements: int8 per-channel (channel = output
 *    index for conv [O,KH,KW,I], last index for depthwise [1,KH,KW,C]), uint8 per-tensor with a
 *    non-zero zero point, and int32 bias = q * input_scale * weight_scale[c] (same tolerance); the
 *    stored bias scale agrees with input_scale * weight_scale to 1e-5 relative.
 * 4. Bad input: wrong identifier, short files, text, truncation at many lengths (every length
 *    that cuts into the FlatBuffer is an error; the zip of associated files that these files
 *    carry after the FlatBuffer may be cut freely), and thousands of corrupted structural bytes:
 *    only OTE_OK or OTE_EPARSE, never a crash (run under ASan/UBSan too).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rng.h"
#include "engine/ote.h"
#include "io/tfl.h"
#include "tests/expect.h"
#include "tests/fixture.h"



static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int close_f(double a, double b, double rel) { return fabs(a - b) <= rel * fmax(fabs(b), 1e-30); }

static int ival(const fx_file *fx, const char *name) { return (int)fx_get(fx, name)->v[0]; }

/* Compares one weight tensor against the reference facts stored under `p`. */
static void check_tensor(const tfl_model *m, const fx_file *fx, const char *file, const char *p) {
    char k[96];
    snprintf(k, sizeof k, "%s.index", p);
    int ti = ival(fx, k);
    const tfl_tensor *t = &m->tensors[ti];
    snprintf(k, sizeof k, "%s.shape", p);
    const fx_array *sh = fx_get(fx, k);
    int ok = t->ndim == sh->numel;
    for (int i = 0; ok && i < t->ndim; i++) ok = t->shape[i] == (int)sh->v[i];
    snprintf(k, sizeof k, "%s.type", p);
    ok &= t->type == ival(fx, k);
    snprintf(k, sizeof k, "%s.quant_dim", p);
    ok &= t->quant_dim == ival(fx, k);
    EXPECT(ok, "%s: %s tensor %d '%.40s...': shape, type %s, quant_dim %d match the reference", file, p, ti, t->name,
          tfl_type_name(t->type), t->quant_dim);
    snprintf(k, sizeof k, "%s.scale", p);
    const fx_array *sc = fx_get(fx, k);
    ok = t->n_scale == sc->numel;
    for (int i = 0; ok && i < t->n_scale; i++) ok = (double)t->scale[i] == sc->v[i];
    snprintf(k, sizeof k, "%s.zero_point", p);
    const fx_array *zp = fx_get(fx, k);
    ok &= t->n_zero_point == zp->numel;
    for (int i = 0; ok && i < t->n_zero_point; i++) ok = (double)t->zero_point[i] == zp->v[i];
    EXPECT(ok, "%s: %s: %d scales and %d zero points equal the reference exactly", file, p, t->n_scale, t->n_zero_point);
    int64_t n = tfl_tensor_numel(t);
    float *d = malloc((size_t)n * sizeof *d);
    int s = tfl_dequantize(m, ti, d, n);
    snprintf(k, sizeof k, "%s.deq", p);
    const fx_array *dq = fx_get(fx, k);
    ok = s == 0;
    double worst = 0;
    for (long i = 0; ok && i < dq->numel; i++) {
        ok = close_f(d[i], dq->v[i], 1.2e-7);
        worst = fmax(worst, fabs((double)d[i] - dq->v[i]));
    }
    EXPECT(ok, "%s: %s: first %ld dequantised values match numpy (max abs diff %.3g, tol 1.2e-7 rel)", file, p, dq->numel, worst);
    free(d);
}

static void check_file(const char *shared, const char *fname, const char *prefix, const fx_file *fx) {
    char path[512], k[96];
    snprintf(path, sizeof path, "%s/weights/mobilenet_v2_1.0_224_tflite/%s", shared, fname);
    tfl_model m;
    int s = tfl_load(&m, path);
    EXPECT(s == 0, "%s: parses (%s)", fname, s ? ote_errmsg() : "ok");
    if (s) return;
    /* README facts */
    int nc = tfl_count_ops(&m, TFL_OP_CONV_2D), nd = tfl_count_ops(&m, TFL_OP_DEPTHWISE_CONV_2D), na = tfl_count_ops(&m, TFL_OP_ADD);
    EXPECT(nc == 36 && nd == 17 && na == 10, "%s: %d CONV_2D, %d DEPTHWISE_CONV_2D, %d ADD (want 36, 17, 10)", fname, nc, nd, na);
    const tfl_tensor *in = &m.tensors[m.inputs[0]], *out = &m.tensors[m.outputs[0]];
    EXPECT(m.n_inputs == 1 && m.n_outputs == 1 && in->ndim == 4 && in->shape[1] == 224 && in->shape[2] == 224 &&
              in->shape[3] == 3 && out->ndim == 2 && out->shape[1] == 1001,
          "%s: input [1,224,224,3], output [1,1001]", fname);
    /* reference walk */
    snprintf(k, sizeof k, "%s.n_tensors", prefix);
    int rt = ival(fx, k);
    snprintf(k, sizeof k, "%s.n_buffers", prefix);
    int rb = ival(fx, k);
    EXPECT(m.n_tensors == rt && m.n_buffers == rb, "%s: %d tensors, %d buffers (reference %d, %d)", fname, m.n_tensors,
          m.n_buffers, rt, rb);
    snprintf(k, sizeof k, "%s.opcodes", prefix);
    const fx_array *oc = fx_get(fx, k);
    int ok = oc->numel == m.n_ops;
    for (int i = 0; ok && i < m.n_ops; i++) ok = m.ops[i].opcode == (int)oc->v[i];
    EXPECT(ok, "%s: the builtin codes of all %d operators match the reference", fname, m.n_ops);
    snprintf(k, sizeof k, "%s.conv_opts", prefix);
    const fx_array *co = fx_get(fx, k);
    ok = co->ndim == 2 && co->dims[0] == nc + nd && co->dims[1] == 6;
    for (long r = 0; ok && r < co->dims[0]; r++) {
        const double *v = co->v + r * 6;
        const tfl_op *op = &m.ops[(int)v[0]];
        ok = op->stride_w == (int)v[1] && op->stride_h == (int)v[2] && op->padding == (int)v[3] &&
             op->activation == (int)v[4] && op->depth_multiplier == (int)v[5] &&
             op->options_type == (op->opcode == TFL_OP_CONV_2D ? 1 : 2);
    }
    EXPECT(ok, "%s: stride, padding, fused activation, depth multiplier of all %d convs match the reference", fname, nc + nd);
    char p[64];
    snprintf(p, sizeof p, "%s.w0", prefix);
    check_tensor(&m, fx, fname, p);
    snprintf(p, sizeof p, "%s.dw0", prefix);
    check_tensor(&m, fx, fname, p);
    snprintf(p, sizeof p, "%s.wcls", prefix);
    check_tensor(&m, fx, fname, p);

    /* hand computation on raw bytes */
    int ci = -1, di = -1;
    for (int i = 0; i < m.n_ops; i++) {
        if (ci < 0 && m.ops[i].opcode == TFL_OP_CONV_2D) ci = i;
        if (di < 0 && m.ops[i].opcode == TFL_OP_DEPTHWISE_CONV_2D) di = i;
    }
    const tfl_op *c0 = &m.ops[ci];
    const tfl_tensor *w = &m.tensors[c0->inputs[1]], *x = &m.tensors[c0->inputs[0]], *b = &m.tensors[c0->inputs[2]];
    size_t nb;
    const uint8_t *raw = tfl_tensor_data(&m, c0->inputs[1], &nb);
    float wd[32 * 27];
    s = tfl_dequantize(&m, c0->inputs[1], wd, 32 * 27);
    ok = s == 0 && nb == 32 * 27;
    int idx[5] = {0, 26, 27, 400, 863}; /* channel = idx / 27 for [32,3,3,3] */
    for (int j = 0; ok && j < 5; j++) {
        int i = idx[j], c = w->n_scale > 1 ? i / 27 : 0;
        double q = w->type == TFL_INT8 ? (double)(int8_t)raw[i] : (double)raw[i];
        double zp = w->n_zero_point ? (double)w->zero_point[w->n_zero_point > 1 ? c : 0] : 0;
        ok = close_f(wd[i], (double)w->scale[c] * (q - zp), 1.2e-7);
    }
    if (w->type == TFL_INT8) {
        int zp0 = 1;
        for (int i = 0; i < w->n_zero_point; i++) zp0 &= w->zero_point[i] == 0;
        ok &= w->n_scale == 32 && zp0;
        EXPECT(ok, "%s: int8 per-channel conv weight: 32 scales, zero points 0, 5 elements == scale[o] * q", fname);
    } else {
        ok &= w->type == TFL_UINT8 && w->n_scale == 1 && w->n_zero_point == 1 && w->zero_point[0] != 0;
        EXPECT(ok, "%s: uint8 per-tensor conv weight (zero point %lld): 5 elements == scale * (q - zp)", fname,
              (long long)w->zero_point[0]);
    }
    /* depthwise: channel = last index */
    const tfl_tensor *dw = &m.tensors[m.ops[di].inputs[1]];
    raw = tfl_tensor_data(&m, m.ops[di].inputs[1], &nb);
    float dd[9 * 32];
    s = tfl_dequantize(&m, m.ops[di].inputs[1], dd, 9 * 32);
    ok = s == 0 && nb == 9 * 32;
    int didx[4] = {0, 5, 37, 287};
    for (int j = 0; ok && j < 4; j++) {
        int i = didx[j], c = dw->n_scale > 1 ? i % 32 : 0;
        double q = dw->type == TFL_INT8 ? (double)(int8_t)raw[i] : (double)raw[i];
        double zp = dw->n_zero_point ? (double)dw->zero_point[dw->n_zero_point > 1 ? c : 0] : 0;
        ok = close_f(dd[i], (double)dw->scale[c] * (q - zp), 1.2e-7);
    }
    EXPECT(ok, "%s: depthwise weight [1,3,3,32] (%d scales, quant_dim %d): 4 elements by hand", fname, dw->n_scale, dw->quant_dim);
    /* int32 bias */
    raw = tfl_tensor_data(&m, c0->inputs[2], &nb);
    float bd[32];
    s = tfl_dequantize_bias(&m, c0->inputs[2], c0->inputs[0], c0->inputs[1], bd, 32);
    snprintf(k, sizeof k, "%s.b0.deq", prefix);
    const fx_array *rbias = fx_get(fx, k);
    ok = s == 0 && b->type == TFL_INT32 && nb == 128 && rbias->numel == 32;
    double worst_scale = 0;
    for (int c = 0; ok && c < 32; c++) {
        int32_t q;
        memcpy(&q, raw + 4 * c, 4);
        double sc = (double)x->scale[0] * (double)w->scale[w->n_scale > 1 ? c : 0];
        ok = close_f(bd[c], sc * q, 1.2e-7) && close_f(bd[c], rbias->v[c], 1.2e-7);
        double stored = b->scale[b->n_scale > 1 ? c : 0];
        worst_scale = fmax(worst_scale, fabs(stored - sc) / sc);
    }
    EXPECT(ok, "%s: int32 bias (32) == q * input_scale * weight_scale[c], by hand and vs numpy", fname);
    EXPECT(worst_scale < 1e-5, "%s: stored bias scale == input_scale * weight_scale (max rel diff %.2g, tol 1e-5)", fname, worst_scale);
    float tmp[4];
    s = tfl_dequantize(&m, c0->inputs[1], tmp, 4);
    EXPECT(s == OTE_EINVAL, "%s: dequantize with a wrong element count is refused: %s", fname, ote_errmsg());
    tfl_free(&m);
}

/* Start of the zip of associated files appended after the FlatBuffer (TFLite metadata
 * convention), from the zip's own end-of-central-directory record; `size` if there is none. */
static size_t zip_start(const unsigned char *b, size_t size) {
    if (size < 22 || memcmp(b + size - 22, "PK\x05\x06", 4) != 0) return size;
    uint32_t cd_off;
    memcpy(&cd_off, b + size - 22 + 16, 4);
    if ((size_t)cd_off + 46 > size || memcmp(b + cd_off, "PK\x01\x02", 4) != 0) return size;
    uint32_t local;
    memcpy(&local, b + cd_off + 42, 4);
    return local < size ? local : size;
}

static int parse_mem(const unsigned char *b, size_t n, int deep) {
    tfl_model m;
    int s = tfl_parse_view(&m, b, n, "corrupt");
    if (s == 0 && deep) {
        /* exercise the data paths on whatever the corrupted file now claims */
        for (int t = 0; t < m.n_tensors; t++) {
            size_t bytes;
            int64_t numel = tfl_tensor_numel(&m.tensors[t]);
            if (!tfl_tensor_data(&m, t, &bytes) || numel > (1 << 22)) continue;
            float *o = malloc((size_t)numel * sizeof *o + 4);
            (void)tfl_dequantize(&m, t, o, numel);
            free(o);
        }
    }
    if (s == 0) tfl_free(&m);
    return s;
}

static void check_bad(const char *shared) {
    char path[512];
    snprintf(path, sizeof path, "%s/weights/mobilenet_v2_1.0_224_tflite/mobilenet_v2_1.0_224_quant.tflite", shared);
    size_t n;
    unsigned char *b = read_all(path, &n);
    if (!b) {
        EXPECT(0, "cannot read %s", path);
        return;
    }
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    memcpy(c + 4, "XXXX", 4);
    int s = parse_mem(c, n, 0);
    EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), "TFL3"), "wrong identifier -> %d: %s", s, ote_errmsg());
    const char *text = "this is a text file, not a FlatBuffer\n";
    s = parse_mem((const unsigned char *)text, strlen(text), 0);
    EXPECT(s == OTE_EPARSE, "text file -> %d: %s", s, ote_errmsg());
    int all = 1;
    for (size_t L = 0; L < 8; L++) all &= parse_mem(b, L, 0) == OTE_EPARSE;
    EXPECT(all, "files of 0..7 bytes -> error: %s", ote_errmsg());
    tfl_model m;
    s = tfl_load(&m, "/nonexistent/model.tflite");
    EXPECT(s == OTE_EIO && strstr(ote_errmsg(), "/nonexistent/model.tflite"), "missing file -> %d: %s", s, ote_errmsg());

    size_t z = zip_start(b, n);
    EXPECT(z < n, "the file carries an appended zip at %zu (of %zu bytes)", z, n);
    /* truncation: every length below 4096, 300 lengths spread over the FlatBuffer, the last 48
     * bytes before the zip: all must fail; cutting inside the zip must not matter. */
    int fails = 0, tried = 0;
    for (size_t L = 8; L < 4096; L++, tried++) fails += parse_mem(b, L, 0) == OTE_EPARSE;
    for (int i = 0; i < 300; i++, tried++) fails += parse_mem(b, 4096 + (z - 4096) / 300 * (size_t)i, 0) == OTE_EPARSE;
    for (size_t L = z - 48; L < z; L++, tried++) fails += parse_mem(b, L, 0) == OTE_EPARSE;
    EXPECT(fails == tried, "%d of %d truncations that cut the FlatBuffer give OTE_EPARSE; last: %s", fails, tried, ote_errmsg());
    EXPECT(parse_mem(b, z, 0) == 0 && parse_mem(b, z + 100, 0) == 0, "truncation inside the appended zip still parses");

    /* corruption of structural bytes (outside buffer data and the zip): random values and
     * boundary values at random positions; only OK or EPARSE, never a crash */
    tfl_model good;
    s = tfl_parse(&good, b, n, "good");
    ASSERT(s == 0);
    unsigned char *is_data = calloc(n, 1);
    for (int i = 0; i < good.n_buffers; i++)
        if (good.buffers[i].size) memset(is_data + (good.buffers[i].data - good.file), 1, good.buffers[i].size);
    tfl_free(&good);
    size_t *pos = malloc(n * sizeof *pos), np = 0;
    for (size_t i = 0; i < z; i++)
        if (!is_data[i]) pos[np++] = i;
    rng r;
    rng_seed(&r, 12345);
    int bad = 0, okc = 0, errc = 0;
    const unsigned char vals[6] = {0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE};
    memcpy(c, b, n);
    for (int it = 0; it < 3000; it++) {
        size_t p = pos[rng_below(&r, np)];
        unsigned char old = c[p];
        c[p] = it % 2 ? vals[rng_below(&r, 6)] : (unsigned char)rng_u64(&r);
        /* also corrupt a whole aligned u32 every third time (offsets, lengths) */
        unsigned char old4[4];
        size_t p4 = p & ~(size_t)3;
        int wide = it % 3 == 0 && p4 + 4 <= z;
        if (wide) {
            memcpy(old4, c + p4, 4);
            uint32_t v = (uint32_t)rng_u64(&r);
            memcpy(c + p4, &v, 4);
        }
        s = parse_mem(c, n, it % 100 == 0);
        if (s == 0) okc++;
        else if (s == OTE_EPARSE) errc++;
        else bad++;
        if (wide) memcpy(c + p4, old4, 4);
        c[p] = old;
    }
    EXPECT(bad == 0, "3000 corrupted structural bytes: %d parsed, %d OTE_EPARSE, %d other results (want 0)", okc, errc, bad);
    EXPECT(errc > 100, "corruption is often detected (%d of 3000 give OTE_EPARSE, want > 100)", errc);
    free(pos);
    free(is_data);
    free(c);
    free(b);
}

/* Inputs the fuzzer found (fuzz/regressions/tflite/, UBSan, fuzz_tflite 2026-12-07): each must be
 * refused cleanly, with the parser's message for it. */
static void check_fuzz_regression(const char *path, const char *expect_msg, const char *what) {
    size_t n;
    unsigned char *b = read_all(path, &n);
    if (!b) {
        EXPECT(0, "cannot read %s", path);
        return;
    }
    int s = parse_mem(b, n, 1);
    EXPECT(s == OTE_EPARSE && strstr(ote_errmsg(), expect_msg), "fuzz regression: %s is refused (%d: %s)", what, s,
           ote_errmsg());
    free(b);
}

static void check_fuzz_regressions(void) {
    check_fuzz_regression("fuzz/regressions/tflite/shape_product_overflow.tflite", "implausibly large",
                          "a shape whose element count overflows int64");
    check_fuzz_regression("fuzz/regressions/tflite/zero_point_int64_min.tflite", "outside the int32 range",
                          "a zero point of INT64_MIN (q - zp overflowed in the dequantisation)");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress stays in order with stderr under ctest */
    const char *shared = getenv("OTE_SHARED");
    if (!shared) shared = "../shared";
    fx_file fx;
    if (fx_load(&fx, "tests/reference/fixtures/tflite_ref.fx") < 0) {
        printf("FAIL: cannot load tests/reference/fixtures/tflite_ref.fx (run from the repo root)\n");
        return 1;
    }
    check_file(shared, "tf2_mobilenet_v2_1.0_224_ptq.tflite", "tf2", &fx);
    check_file(shared, "mobilenet_v2_1.0_224_quant.tflite", "v1", &fx);
    check_bad(shared);
    check_fuzz_regressions();
    fx_free(&fx);
    return expect_finish();
}
