/* tfl.c - TFLite (prefix tfl_): bounds-checked FlatBuffer walk of a TFLite model, and weight
 * dequantisation.
 *
 * FlatBuffer encoding facts used here (all little-endian):
 *   - bytes 0..3: uoffset (u32) of the root table; bytes 4..7: the file identifier ("TFL3").
 *   - a table at position T starts with an soffset (i32); its vtable is at T - soffset. The vtable
 *     holds u16 vtable size, u16 table size, then one u16 per field: the field's offset from T,
 *     0 when the field is absent (the reader then uses the schema default).
 *   - reference fields (tables, vectors, strings) hold a u32 relative to the field's own position.
 *   - a vector is a u32 element count followed by the elements; a string is a vector of bytes
 *     (followed by a NUL we do not rely on); a vector of tables holds one uoffset per element.
 *   - a union is two fields: a u8 type tag (field n) and the value reference (field n + 1).
 * Every read goes through fb_* helpers that check position + length against the file size with
 * overflow-free arithmetic, so a hostile file can only produce an error. Forward references are
 * unsigned, and the schema walk has a fixed depth, so there is no recursion to exhaust.
 *
 * TFLite schema field ids used (schema v3):
 *   Model { version 0, operator_codes 1, subgraphs 2, description 3, buffers 4 }
 *   OperatorCode { deprecated_builtin_code 0 (i8), custom_code 1, version 2, builtin_code 3 (i32) }
 *   SubGraph { tensors 0, inputs 1, outputs 2, operators 3, name 4 }
 *   Tensor { shape 0, type 1 (i8), buffer 2 (u32), name 3, quantization 4 }
 *   QuantizationParameters { min 0, max 1, scale 2 ([f32]), zero_point 3 ([i64]), details 4-5,
 *                            quantized_dimension 6 }
 *   Buffer { data 0 ([u8]), offset 1 (u64), size 2 (u64) }
 *   Operator { opcode_index 0, inputs 1, outputs 2, builtin_options_type 3, builtin_options 4 }
 *   Conv2DOptions { padding 0, stride_w 1, stride_h 2, fused_activation_function 3,
 *                   dilation_w_factor 4, dilation_h_factor 5 }            (union tag 1)
 *   DepthwiseConv2DOptions { padding 0, stride_w 1, stride_h 2, depth_multiplier 3,
 *                   fused_activation_function 4, dilation_w_factor 5, dilation_h_factor 6 } (2)
 *   Pool2DOptions { padding 0, stride_w 1, stride_h 2, filter_width 3, filter_height 4,
 *                   fused_activation_function 5 }                           (union tag 5)
 *   FullyConnectedOptions { fused_activation_function 0, ... }              (union tag 8)
 *   AddOptions { fused_activation_function 0, ... }                         (union tag 11)
 */
#include "io/tfl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tfl.c reads little-endian FlatBuffers with memcpy and assumes a little-endian host"
#endif

/* ---- FlatBuffer primitives ------------------------------------------------------------------ */

typedef struct fb {
    const uint8_t *p;
    size_t n;
    const char *label; /* file name for messages */
} fb;

typedef struct fb_table {
    size_t pos;      /* table start */
    size_t vt;       /* vtable start */
    unsigned vt_size, obj_size;
} fb_table;

static int fb_range_err(const fb *b, const char *what, size_t off, size_t len) {
    return ote_err(OTE_EPARSE, "%s: %s: %zu bytes at offset %zu exceed the file size %zu (truncated or corrupt)",
                   b->label, what, len, off, b->n);
}

static int fb_has(const fb *b, size_t off, size_t len) { return off <= b->n && len <= b->n - off; }

static uint16_t rd_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t rd_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int fb_table_at(const fb *b, size_t pos, fb_table *t, const char *what) {
    if (!fb_has(b, pos, 4)) return fb_range_err(b, what, pos, 4);
    int32_t soff;
    memcpy(&soff, b->p + pos, 4);
    int64_t vt = (int64_t)pos - (int64_t)soff;
    if (vt < 0 || !fb_has(b, (size_t)vt, 4))
        return ote_err(OTE_EPARSE, "%s: %s: vtable offset %lld of the table at %zu is outside the file (size %zu)",
                       b->label, what, (long long)vt, pos, b->n);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vt_size = rd_u16(b->p + t->vt);
    t->obj_size = rd_u16(b->p + t->vt + 2);
    if (t->vt_size < 4 || (t->vt_size & 1u))
        return ote_err(OTE_EPARSE, "%s: %s: invalid vtable size %u at offset %zu", b->label, what, t->vt_size, t->vt);
    if (!fb_has(b, t->vt, t->vt_size)) return fb_range_err(b, what, t->vt, t->vt_size);
    if (t->obj_size < 4) return ote_err(OTE_EPARSE, "%s: %s: invalid table size %u at offset %zu", b->label, what, t->obj_size, pos);
    if (!fb_has(b, pos, t->obj_size)) return fb_range_err(b, what, pos, t->obj_size);
    return 0;
}

/* 0: absent; 1: present with *fpos set; <0: the field lies outside its table. */
static int fb_field(const fb *b, const fb_table *t, int id, size_t size, size_t *fpos, const char *what) {
    size_t vo = 4 + 2 * (size_t)id;
    if (vo + 2 > t->vt_size) return 0;
    unsigned fo = rd_u16(b->p + t->vt + vo);
    if (fo == 0) return 0;
    if (fo < 4 || (size_t)fo + size > t->obj_size)
        return ote_err(OTE_EPARSE, "%s: %s: field %d offset %u (size %zu) lies outside its %u-byte table at %zu",
                       b->label, what, id, fo, size, t->obj_size, t->pos);
    *fpos = t->pos + fo;
    return 1;
}

/* The one scalar reader: a present field's `size` bytes are copied to v (the host is little-endian,
 * see the #error above), an absent one leaves v as it is. 1: present; 0: absent; <0: the field
 * lies outside its table. The typed readers below only state their size and default. */
static int fb_scalar(const fb *b, const fb_table *t, int id, size_t size, void *v, const char *what) {
    size_t fp = 0;
    int r = fb_field(b, t, id, size, &fp, what);
    if (r == 1) memcpy(v, b->p + fp, size);
    return r;
}

/* The typed readers: >= 0 with *v read, or the default when absent; < 0 as fb_field. */
static int fb_i32(const fb *b, const fb_table *t, int id, int32_t def, int32_t *v, const char *what) {
    *v = def;
    return fb_scalar(b, t, id, 4, v, what);
}

static int fb_u32f(const fb *b, const fb_table *t, int id, uint32_t def, uint32_t *v, const char *what) {
    *v = def;
    return fb_scalar(b, t, id, 4, v, what);
}

static int fb_u64f(const fb *b, const fb_table *t, int id, uint64_t *v, const char *what) {
    *v = 0;
    return fb_scalar(b, t, id, 8, v, what);
}

/* Byte-sized scalar (i8 or u8 enum); returned as int with the given signedness. */
static int fb_byte(const fb *b, const fb_table *t, int id, int is_signed, int def, int *v, const char *what) {
    uint8_t raw = 0;
    int r = fb_scalar(b, t, id, 1, &raw, what);
    if (r < 0) return r;
    *v = r == 0 ? def : (is_signed ? (int)(int8_t)raw : (int)raw);
    return 0;
}

/* Follows a uoffset field. 0: absent; 1: *target set (at least 4 bytes available there). */
static int fb_ref(const fb *b, const fb_table *t, int id, size_t *target, const char *what) {
    size_t fp = 0;
    int r = fb_field(b, t, id, 4, &fp, what);
    if (r <= 0) return r;
    uint32_t off = rd_u32(b->p + fp);
    if (off == 0 || (size_t)off > b->n - fp)
        return ote_err(OTE_EPARSE, "%s: %s: reference %u at offset %zu points outside the file (size %zu; truncated or corrupt)", b->label,
                       what, off, fp, b->n);
    *target = fp + off;
    if (!fb_has(b, *target, 4)) return fb_range_err(b, what, *target, 4);
    return 1;
}

/* A vector field of `elem`-byte elements. Absent -> len 0. */
static int fb_vec(const fb *b, const fb_table *t, int id, size_t elem, size_t *data, uint32_t *len, const char *what) {
    size_t vp;
    *len = 0;
    *data = 0;
    int r = fb_ref(b, t, id, &vp, what);
    if (r <= 0) return r;
    uint32_t n = rd_u32(b->p + vp);
    size_t avail = b->n - vp - 4;
    if ((size_t)n > avail / elem)
        return ote_err(OTE_EPARSE, "%s: %s: vector of %u elements x %zu bytes at offset %zu exceeds the file size %zu (truncated or corrupt)",
                       b->label, what, n, elem, vp, b->n);
    *data = vp + 4;
    *len = n;
    return 1;
}

/* Element i of a vector of tables. */
static int fb_vec_table(const fb *b, size_t data, uint32_t i, fb_table *t, const char *what) {
    size_t ep = data + 4 * (size_t)i; /* in range: the vector was validated */
    uint32_t off = rd_u32(b->p + ep);
    if (off == 0 || (size_t)off > b->n - ep)
        return ote_err(OTE_EPARSE, "%s: %s: table reference %u at offset %zu points outside the file (size %zu; truncated or corrupt)",
                       b->label, what, off, ep, b->n);
    return fb_table_at(b, ep + off, t, what);
}

/* Copies a string field into a fresh NUL-terminated buffer ("" when absent). */
static int fb_string(const fb *b, const fb_table *t, int id, char **out, const char *what) {
    size_t d;
    uint32_t n;
    *out = NULL;
    int r = fb_vec(b, t, id, 1, &d, &n, what);
    if (r < 0) return r;
    char *s = malloc((size_t)n + 1);
    if (!s) return ote_err(OTE_ENOMEM, "%s: %s: cannot allocate %u bytes", b->label, what, n + 1);
    if (n) memcpy(s, b->p + d, n);
    s[n] = 0;
    *out = s;
    return 0;
}

/* Copies a vector field of elem-byte scalars ([f32], [i64]: the file's little-endian bytes are the
 * host's) into a fresh array; *out NULL and *count untouched when it is absent or empty. */
static int fb_copy_vec(const fb *b, const fb_table *t, int id, size_t elem, const char *noun, void **out, int *count,
                       const char *what) {
    size_t d;
    uint32_t n;
    *out = NULL;
    CHECK(fb_vec(b, t, id, elem, &d, &n, what));
    if (n == 0) return 0;
    *out = malloc((size_t)n * elem);
    if (!*out) return ote_err(OTE_ENOMEM, "%s: %s: cannot allocate %u %s", b->label, what, n, noun);
    memcpy(*out, b->p + d, (size_t)n * elem);
    *count = (int)n;
    return 0;
}

/* Copies an [int] vector into a fresh array. */
static int fb_int_vec(const fb *b, const fb_table *t, int id, int **out, int *count, const char *what) {
    size_t d;
    uint32_t n;
    *out = NULL;
    *count = 0;
    int r = fb_vec(b, t, id, 4, &d, &n, what);
    if (r < 0) return r;
    if (n == 0) return 0;
    int *a = malloc((size_t)n * sizeof *a);
    if (!a) return ote_err(OTE_ENOMEM, "%s: %s: cannot allocate %u ints", b->label, what, n);
    for (uint32_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, b->p + d + 4 * (size_t)i, 4);
        a[i] = v;
    }
    *out = a;
    *count = (int)n;
    return 0;
}

/* ---- names and sizes ------------------------------------------------------------------------ */

const char *tfl_op_name(int opcode, char *buf, size_t n) {
    switch (opcode) {
    case TFL_OP_ADD: return "ADD";
    case TFL_OP_AVERAGE_POOL_2D: return "AVERAGE_POOL_2D";
    case TFL_OP_CONCATENATION: return "CONCATENATION";
    case TFL_OP_CONV_2D: return "CONV_2D";
    case TFL_OP_DEPTHWISE_CONV_2D: return "DEPTHWISE_CONV_2D";
    case TFL_OP_DEQUANTIZE: return "DEQUANTIZE";
    case TFL_OP_FULLY_CONNECTED: return "FULLY_CONNECTED";
    case TFL_OP_LOGISTIC: return "LOGISTIC";
    case TFL_OP_MAX_POOL_2D: return "MAX_POOL_2D";
    case TFL_OP_MUL: return "MUL";
    case TFL_OP_RELU: return "RELU";
    case TFL_OP_RELU6: return "RELU6";
    case TFL_OP_RESHAPE: return "RESHAPE";
    case TFL_OP_SOFTMAX: return "SOFTMAX";
    case TFL_OP_MEAN: return "MEAN";
    case TFL_OP_SQUEEZE: return "SQUEEZE";
    case TFL_OP_QUANTIZE: return "QUANTIZE";
    case TFL_OP_CUSTOM: return "CUSTOM";
    default: snprintf(buf, n, "OP_%d", opcode); return buf;
    }
}

const char *tfl_type_name(int type) {
    static const char *names[] = {"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16", "COMPLEX64", "INT8"};
    return type >= 0 && type < 10 ? names[type] : "UNKNOWN";
}

int tfl_type_size(int type) {
    switch (type) {
    case TFL_FLOAT32: return 4;
    case TFL_FLOAT16: return 2;
    case TFL_INT32: return 4;
    case TFL_UINT8: return 1;
    case TFL_INT64: return 8;
    case TFL_BOOL: return 1;
    case TFL_INT16: return 2;
    case TFL_COMPLEX64: return 8;
    case TFL_INT8: return 1;
    default: return 0;
    }
}

int64_t tfl_tensor_numel(const tfl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int tfl_count_ops(const tfl_model *m, int opcode) {
    int c = 0;
    for (int i = 0; i < m->n_ops; i++) c += m->ops[i].opcode == opcode;
    return c;
}

/* ---- model walk ----------------------------------------------------------------------------- */

void tfl_free(tfl_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_tensors && m->tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].scale);
        free(m->tensors[i].zero_point);
    }
    for (int i = 0; i < m->n_ops && m->ops; i++) {
        free(m->ops[i].inputs);
        free(m->ops[i].outputs);
    }
    free(m->tensors);
    free(m->ops);
    free(m->buffers);
    free(m->opcodes);
    free(m->inputs);
    free(m->outputs);
    free(m->description);
    if (m->owns_file) free(m->file);
    memset(m, 0, sizeof *m);
}

static int parse_quant(const fb *b, const fb_table *tt, tfl_tensor *t, const char *what) {
    size_t qp;
    int r = fb_ref(b, tt, 4, &qp, what);
    if (r <= 0) return r;
    fb_table q;
    CHECK(fb_table_at(b, qp, &q, what));
    void *arr;
    CHECK(fb_copy_vec(b, &q, 2, sizeof *t->scale, "scales", &arr, &t->n_scale, what));
    t->scale = arr;
    CHECK(fb_copy_vec(b, &q, 3, sizeof *t->zero_point, "zero points", &arr, &t->n_zero_point, what));
    t->zero_point = arr;
    int32_t qd;
    CHECK(fb_i32(b, &q, 6, 0, &qd, what));
    t->quant_dim = qd;
    if (t->n_zero_point != 0 && t->n_zero_point != 1 && t->n_zero_point != t->n_scale)
        return ote_err(OTE_EPARSE, "%s: %s: quantization: %d zero points for %d scales", b->label, what,
                       t->n_zero_point, t->n_scale);
    if (t->n_scale > 1 &&
        (qd < 0 || qd >= t->ndim || t->shape[qd] != t->n_scale))
        return ote_err(OTE_EPARSE, "%s: %s: quantization: %d scales do not match quantized_dimension %d of a rank-%d tensor",
                       b->label, what, t->n_scale, qd, t->ndim);
    /* zero points lie in the quantised type's range (int32 at most); a larger one would also make
     * q - zp overflow int64 in the dequantisation (found by fuzz_tflite) */
    for (int i = 0; i < t->n_zero_point; i++)
        if (t->zero_point[i] < INT32_MIN || t->zero_point[i] > INT32_MAX)
            return ote_err(OTE_EPARSE, "%s: %s: quantization: zero_point[%d] = %lld is outside the int32 range", b->label,
                           what, i, (long long)t->zero_point[i]);
    for (int i = 0; i < t->n_scale; i++)
        if (!(t->scale[i] == t->scale[i]) || t->scale[i] < 0)
            return ote_err(OTE_EPARSE, "%s: %s: quantization: invalid scale[%d] = %g", b->label, what, i, (double)t->scale[i]);
    return 0;
}

static int parse_tensor(const fb *b, const fb_table *tt, tfl_tensor *t, const char *what) {
    size_t d;
    uint32_t n;
    CHECK(fb_vec(b, tt, 0, 4, &d, &n, what));
    if (n > TFL_MAX_DIMS) return ote_err(OTE_EPARSE, "%s: %s: rank %u exceeds %d", b->label, what, n, TFL_MAX_DIMS);
    t->ndim = (int)n;
    int64_t numel = 1;
    for (uint32_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, b->p + d + 4 * (size_t)i, 4);
        /* -1 would mark a dynamic dimension; weights never have one, and the numel checks below
         * need concrete sizes. */
        if (v < 0) return ote_err(OTE_EPARSE, "%s: %s: shape[%u] = %d is negative", b->label, what, i, v);
        t->shape[i] = v;
        /* checked before the product, which could overflow int64 (found by fuzz_tflite) */
        if (v > 0 && numel > ((int64_t)1 << 40) / v)
            return ote_err(OTE_EPARSE, "%s: %s: shape is implausibly large (over 2^40 elements)", b->label, what);
        numel *= v;
    }
    CHECK(fb_byte(b, tt, 1, 1, TFL_FLOAT32, &t->type, what));
    CHECK(fb_u32f(b, tt, 2, 0, &t->buffer, what));
    CHECK(fb_string(b, tt, 3, &t->name, what));
    CHECK(parse_quant(b, tt, t, what));
    return 0;
}

static int parse_options(const fb *b, const fb_table *ot, tfl_op *op, const char *what) {
    int tag;
    CHECK(fb_byte(b, ot, 3, 0, 0, &tag, what));
    op->options_type = tag;
    op->padding = TFL_PAD_SAME;
    op->stride_w = op->stride_h = 1;
    op->dilation_w = op->dilation_h = 1;
    op->depth_multiplier = 0;
    op->filter_w = op->filter_h = 0;
    op->activation = TFL_ACT_NONE;
    if (tag != 1 && tag != 2 && tag != 5 && tag != 8 && tag != 11) return 0;
    size_t tp;
    int r = fb_ref(b, ot, 4, &tp, what);
    if (r < 0) return r;
    if (r == 0) return 0; /* all defaults */
    fb_table o;
    CHECK(fb_table_at(b, tp, &o, what));
    int32_t v;
    switch (tag) {
    case 1: /* Conv2DOptions */
    case 2: /* DepthwiseConv2DOptions: depth_multiplier shifts the later fields by one */
        CHECK(fb_byte(b, &o, 0, 1, TFL_PAD_SAME, &op->padding, what));
        CHECK(fb_i32(b, &o, 1, 0, &v, what));
        op->stride_w = v;
        CHECK(fb_i32(b, &o, 2, 0, &v, what));
        op->stride_h = v;
        {
            int k = tag == 2 ? 1 : 0;
            if (tag == 2) {
                CHECK(fb_i32(b, &o, 3, 0, &v, what));
                op->depth_multiplier = v;
            }
            CHECK(fb_byte(b, &o, 3 + k, 1, TFL_ACT_NONE, &op->activation, what));
            CHECK(fb_i32(b, &o, 4 + k, 1, &v, what));
            op->dilation_w = v;
            CHECK(fb_i32(b, &o, 5 + k, 1, &v, what));
            op->dilation_h = v;
        }
        break;
    case 5: /* Pool2DOptions */
        CHECK(fb_byte(b, &o, 0, 1, TFL_PAD_SAME, &op->padding, what));
        CHECK(fb_i32(b, &o, 1, 0, &v, what));
        op->stride_w = v;
        CHECK(fb_i32(b, &o, 2, 0, &v, what));
        op->stride_h = v;
        CHECK(fb_i32(b, &o, 3, 0, &v, what));
        op->filter_w = v;
        CHECK(fb_i32(b, &o, 4, 0, &v, what));
        op->filter_h = v;
        CHECK(fb_byte(b, &o, 5, 1, TFL_ACT_NONE, &op->activation, what));
        break;
    default: /* FullyConnectedOptions, AddOptions: fused activation is field 0 */
        CHECK(fb_byte(b, &o, 0, 1, TFL_ACT_NONE, &op->activation, what));
        break;
    }
    return 0;
}

/* Reads one element of a vector of tables into dst (an entry of the model's array for it). */
typedef int (*parse_elem_fn)(const tfl_model *m, const fb *b, const fb_table *t, void *dst, uint32_t i,
                             const char *what);

/* The one vector-of-tables walk: field id of t (`field` in messages) holds n tables; a zeroed array
 * of n entries of elem bytes (`noun` names them if it cannot be allocated) receives element i
 * through read_elem, with what = "<name>[i]". The array and n are handed out in *arr / *count also
 * when a read fails, so that tfl_free releases what the reads allocated. */
static int parse_tables(const tfl_model *m, const fb *b, const fb_table *t, int id, const char *field,
                        const char *name, size_t elem, const char *noun, parse_elem_fn read_elem, void **arr,
                        int *count) {
    size_t d;
    uint32_t n;
    *arr = NULL;
    *count = 0;
    CHECK(fb_vec(b, t, id, 4, &d, &n, field));
    if (n == 0) return 0;
    uint8_t *a = calloc(n, elem);
    if (!a) return ote_err(OTE_ENOMEM, "%s: cannot allocate %u %s", b->label, n, noun);
    *arr = a;
    *count = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s[%u]", name, i);
        fb_table et;
        CHECK(fb_vec_table(b, d, i, &et, what));
        CHECK(read_elem(m, b, &et, a + (size_t)i * elem, i, what));
    }
    return 0;
}

/* operator_codes[i] -> its resolved builtin code (an int). */
static int parse_opcode(const tfl_model *m, const fb *b, const fb_table *oc, void *dst, uint32_t i,
                        const char *what) {
    (void)m;
    (void)i;
    int dep;
    int32_t code;
    CHECK(fb_byte(b, oc, 0, 1, 0, &dep, what));
    CHECK(fb_i32(b, oc, 3, 0, &code, what));
    /* Files from before builtin_code existed only set the deprecated byte (codes < 127);
     * newer files set both, so the larger one is the real code. */
    *(int *)dst = code > dep ? code : dep;
    return 0;
}

/* buffers[i] -> a tfl_buffer pointing into the file. */
static int parse_buffer(const tfl_model *m, const fb *b, const fb_table *bt, void *dst, uint32_t i,
                        const char *what) {
    (void)m;
    (void)i;
    tfl_buffer *buf = dst;
    size_t bd;
    uint32_t bn;
    CHECK(fb_vec(b, bt, 0, 1, &bd, &bn, what));
    if (bn) {
        buf->data = b->p + bd;
        buf->size = bn;
    } else {
        /* >2 GB models keep data outside the FlatBuffer at an absolute offset. */
        uint64_t off, sz;
        CHECK(fb_u64f(b, bt, 1, &off, what));
        CHECK(fb_u64f(b, bt, 2, &sz, what));
        if (off > 1 && sz > 0) {
            if (off > b->n || sz > b->n - off) return fb_range_err(b, what, (size_t)off, (size_t)sz);
            buf->data = b->p + off;
            buf->size = (size_t)sz;
        }
    }
    return 0;
}

/* tensors[i], checked against its buffer (the buffers are read first). */
static int parse_tensor_entry(const tfl_model *m, const fb *b, const fb_table *tt, void *dst, uint32_t i,
                              const char *what) {
    tfl_tensor *t = dst;
    CHECK(parse_tensor(b, tt, t, what));
    if (t->buffer >= (uint32_t)m->n_buffers)
        return ote_err(OTE_EPARSE, "%s: tensors[%u] '%s': buffer index %u >= %d buffers", b->label, i, t->name,
                       t->buffer, m->n_buffers);
    const tfl_buffer *bf = &m->buffers[t->buffer];
    int es = tfl_type_size(t->type);
    if (bf->size && (es == 0 || (uint64_t)tfl_tensor_numel(t) * (uint64_t)es != bf->size))
        return ote_err(OTE_EPARSE, "%s: tensors[%u] '%s': buffer %u holds %zu bytes, shape and type %s need %lld",
                       b->label, i, t->name, t->buffer, bf->size, tfl_type_name(t->type),
                       (long long)(tfl_tensor_numel(t) * es));
    return 0;
}

/* operators[i] (after the tensors and operator codes: its indices are checked). */
static int parse_op(const tfl_model *m, const fb *b, const fb_table *ot, void *dst, uint32_t i,
                    const char *what) {
    (void)i;
    tfl_op *op = dst;
    uint32_t oi;
    CHECK(fb_u32f(b, ot, 0, 0, &oi, what));
    if (oi >= (uint32_t)m->n_opcodes)
        return ote_err(OTE_EPARSE, "%s: %s: opcode_index %u >= %d operator codes", b->label, what, oi, m->n_opcodes);
    op->opcode = m->opcodes[oi];
    CHECK(fb_int_vec(b, ot, 1, &op->inputs, &op->n_in, what));
    CHECK(fb_int_vec(b, ot, 2, &op->outputs, &op->n_out, what));
    for (int k = 0; k < op->n_in; k++)
        if (op->inputs[k] < -1 || op->inputs[k] >= m->n_tensors)
            return ote_err(OTE_EPARSE, "%s: %s: inputs[%d] = %d is not a tensor index (< %d)", b->label, what, k,
                           op->inputs[k], m->n_tensors);
    for (int k = 0; k < op->n_out; k++)
        if (op->outputs[k] < 0 || op->outputs[k] >= m->n_tensors)
            return ote_err(OTE_EPARSE, "%s: %s: outputs[%d] = %d is not a tensor index (< %d)", b->label, what, k,
                           op->outputs[k], m->n_tensors);
    return parse_options(b, ot, op, what);
}

/* subgraphs[0]'s inputs and outputs, checked to be tensor indices. */
static int parse_io(tfl_model *m, const fb *b, const fb_table *sg) {
    CHECK(fb_int_vec(b, sg, 1, &m->inputs, &m->n_inputs, "subgraphs[0].inputs"));
    CHECK(fb_int_vec(b, sg, 2, &m->outputs, &m->n_outputs, "subgraphs[0].outputs"));
    for (int i = 0; i < m->n_inputs; i++)
        if (m->inputs[i] < 0 || m->inputs[i] >= m->n_tensors)
            return ote_err(OTE_EPARSE, "%s: subgraphs[0].inputs[%d] = %d is not a tensor index (< %d)", b->label, i,
                           m->inputs[i], m->n_tensors);
    for (int i = 0; i < m->n_outputs; i++)
        if (m->outputs[i] < 0 || m->outputs[i] >= m->n_tensors)
            return ote_err(OTE_EPARSE, "%s: subgraphs[0].outputs[%d] = %d is not a tensor index (< %d)", b->label, i,
                           m->outputs[i], m->n_tensors);
    return 0;
}

static int parse_all(tfl_model *m, const fb *b) {
    if (b->n < 8) return ote_err(OTE_EPARSE, "%s: file of %zu bytes is too short for a FlatBuffer", b->label, b->n);
    if (memcmp(b->p + 4, "TFL3", 4) != 0) {
        char id[20];
        for (int i = 0; i < 4; i++) {
            unsigned char c = b->p[4 + i];
            id[i] = c >= 32 && c < 127 ? (char)c : '?';
        }
        id[4] = 0;
        return ote_err(OTE_EPARSE, "%s: not a TFLite FlatBuffer (file identifier '%s', expected 'TFL3')", b->label, id);
    }
    fb_table model;
    CHECK(fb_table_at(b, rd_u32(b->p), &model, "root Model table"));
    CHECK(fb_u32f(b, &model, 0, 0, &m->version, "Model.version"));
    if (m->version != 3)
        return ote_err(OTE_EPARSE, "%s: Model.version: %u is not the supported schema version 3", b->label, m->version);
    CHECK(fb_string(b, &model, 3, &m->description, "Model.description"));
    /* each array is stored in m right after the walk (also on failure: tfl_free releases it) */
    void *arr;
    int r = parse_tables(m, b, &model, 1, "Model.operator_codes", "operator_codes", sizeof *m->opcodes,
                         "operator codes", parse_opcode, &arr, &m->n_opcodes);
    m->opcodes = arr;
    CHECK(r);
    r = parse_tables(m, b, &model, 4, "Model.buffers", "buffers", sizeof *m->buffers, "buffers", parse_buffer,
                     &arr, &m->n_buffers);
    m->buffers = arr;
    CHECK(r);
    /* subgraph 0 */
    size_t sd;
    uint32_t ns;
    CHECK(fb_vec(b, &model, 2, 4, &sd, &ns, "Model.subgraphs"));
    if (ns == 0) return ote_err(OTE_EPARSE, "%s: Model.subgraphs: the model has no subgraph", b->label);
    m->n_subgraphs = (int)ns;
    fb_table sg;
    CHECK(fb_vec_table(b, sd, 0, &sg, "subgraphs[0]"));
    r = parse_tables(m, b, &sg, 0, "subgraphs[0].tensors", "tensors", sizeof *m->tensors, "tensors",
                     parse_tensor_entry, &arr, &m->n_tensors);
    m->tensors = arr;
    CHECK(r);
    CHECK(parse_io(m, b, &sg));
    r = parse_tables(m, b, &sg, 3, "subgraphs[0].operators", "operators", sizeof *m->ops, "operators", parse_op,
                     &arr, &m->n_ops);
    m->ops = arr;
    return r;
}

int tfl_parse(tfl_model *m, const void *bytes, size_t size, const char *label) {
    memset(m, 0, sizeof *m);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return ote_err(OTE_ENOMEM, "%s: cannot allocate %zu bytes", label ? label : "<memory>", size);
    if (size) memcpy(copy, bytes, size);
    int r = tfl_parse_view(m, copy, size, label);
    if (r < 0) {
        free(copy);
        return r;
    }
    m->owns_file = 1;
    return 0;
}

int tfl_parse_view(tfl_model *m, const void *bytes, size_t size, const char *label) {
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", label ? label : "<memory>");
    /* The walk never writes through `file`; the cast only lets one struct serve both modes. */
    m->file = (uint8_t *)(uintptr_t)bytes;
    m->size = size;
    fb b = {m->file, size, m->path};
    int r = parse_all(m, &b);
    if (r < 0) tfl_free(m);
    return r;
}

int tfl_load(tfl_model *m, const char *path) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return ote_err(OTE_EIO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : (1u << 20);
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(f);
                return ote_err(OTE_ENOMEM, "%s: cannot allocate %zu bytes", path, nc);
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ote_err(OTE_EIO, "%s: read error", path);
    }
    int r = tfl_parse_view(m, buf, n, path);
    if (r < 0) {
        free(buf);
        return r;
    }
    m->owns_file = 1; /* the read buffer becomes the model's copy */
    return 0;
}

/* ---- data and dequantisation ---------------------------------------------------------------- */

const uint8_t *tfl_tensor_data(const tfl_model *m, int t, size_t *bytes) {
    *bytes = 0;
    if (t < 0 || t >= m->n_tensors) return NULL;
    const tfl_buffer *b = &m->buffers[m->tensors[t].buffer];
    *bytes = b->size;
    return b->size ? b->data : NULL;
}

static int tensor_check(const tfl_model *m, int t, int64_t n, const char *fn) {
    if (t < 0 || t >= m->n_tensors)
        return ote_err(OTE_EINVAL, "%s: %s: tensor index %d out of range (%d tensors)", m->path, fn, t, m->n_tensors);
    const tfl_tensor *tt = &m->tensors[t];
    if (tfl_tensor_numel(tt) != n)
        return ote_err(OTE_EINVAL, "%s: %s: tensor %d '%s' has %lld elements, caller expects %lld", m->path, fn, t,
                       tt->name, (long long)tfl_tensor_numel(tt), (long long)n);
    size_t bytes;
    if (!tfl_tensor_data(m, t, &bytes) && n > 0)
        return ote_err(OTE_EPARSE, "%s: %s: tensor %d '%s' has no constant data", m->path, fn, t, tt->name);
    return 0;
}

static int64_t raw_int(const uint8_t *p, int type, int64_t i) {
    switch (type) {
    case TFL_INT8: return (int8_t)p[i];
    case TFL_UINT8: return p[i];
    case TFL_INT16: {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    default: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    }
}

int tfl_dequantize(const tfl_model *m, int t, float *out, int64_t n) {
    CHECK(tensor_check(m, t, n, "dequantize"));
    const tfl_tensor *tt = &m->tensors[t];
    size_t bytes;
    const uint8_t *p = tfl_tensor_data(m, t, &bytes);
    if (tt->type == TFL_FLOAT32) {
        memcpy(out, p, (size_t)n * 4);
        return 0;
    }
    if (tt->type != TFL_INT8 && tt->type != TFL_UINT8 && tt->type != TFL_INT16 && tt->type != TFL_INT32)
        return ote_err(OTE_EPARSE, "%s: tensor %d '%s': cannot dequantize type %s", m->path, t, tt->name,
                       tfl_type_name(tt->type));
    if (tt->n_scale == 0)
        return ote_err(OTE_EPARSE, "%s: tensor %d '%s': type %s without quantization scales", m->path, t, tt->name,
                       tfl_type_name(tt->type));
    /* Row-major element i belongs to channel (i / inner) % shape[quant_dim]; walk the tensor as
     * (outer, channel, inner) blocks so the per-element work is one load and one multiply. The
     * parser guarantees n_scale == shape[quant_dim] when n_scale > 1, so the blocks tile n. */
    int nch = tt->n_scale;
    int64_t inner = n, outer = 1;
    if (nch > 1) {
        inner = 1;
        for (int d = tt->quant_dim + 1; d < tt->ndim; d++) inner *= tt->shape[d];
        for (int d = 0; d < tt->quant_dim; d++) outer *= tt->shape[d];
    }
    ASSERT(outer * nch * inner == n);
    for (int64_t o = 0; o < outer; o++)
        for (int c = 0; c < nch; c++) {
            double sc = (double)tt->scale[c];
            int64_t zp = tt->n_zero_point == 0 ? 0 : tt->zero_point[tt->n_zero_point > 1 ? c : 0];
            int64_t base = (o * nch + c) * inner;
            float *dst = out + base;
            switch (tt->type) {
            case TFL_INT8:
                for (int64_t k = 0; k < inner; k++) dst[k] = (float)(sc * (double)((int64_t)(int8_t)p[base + k] - zp));
                break;
            case TFL_UINT8:
                for (int64_t k = 0; k < inner; k++) dst[k] = (float)(sc * (double)((int64_t)p[base + k] - zp));
                break;
            default:
                for (int64_t k = 0; k < inner; k++) dst[k] = (float)(sc * ((double)raw_int(p, tt->type, base + k) - (double)zp));
                break;
            }
        }
    return 0;
}

int tfl_dequantize_bias(const tfl_model *m, int bias, int input, int weight, float *out, int64_t n) {
    CHECK(tensor_check(m, bias, n, "dequantize_bias"));
    const tfl_tensor *bt = &m->tensors[bias];
    if (bt->type == TFL_FLOAT32) return tfl_dequantize(m, bias, out, n);
    if (bt->type != TFL_INT32)
        return ote_err(OTE_EPARSE, "%s: bias tensor %d '%s': type %s, expected INT32 or FLOAT32", m->path, bias,
                       bt->name, tfl_type_name(bt->type));
    if (input < 0 || input >= m->n_tensors || weight < 0 || weight >= m->n_tensors)
        return ote_err(OTE_EINVAL, "%s: dequantize_bias: input %d / weight %d out of range", m->path, input, weight);
    const tfl_tensor *it = &m->tensors[input], *wt = &m->tensors[weight];
    if (it->n_scale < 1)
        return ote_err(OTE_EPARSE, "%s: tensor %d '%s': an INT32 bias needs a quantised input, but the input has no scale",
                       m->path, input, it->name);
    if (wt->n_scale != 1 && wt->n_scale != n)
        return ote_err(OTE_EPARSE, "%s: tensor %d '%s': %d weight scales for a bias of %lld entries", m->path, weight,
                       wt->name, wt->n_scale, (long long)n);
    size_t bytes;
    const uint8_t *p = tfl_tensor_data(m, bias, &bytes);
    for (int64_t i = 0; i < n; i++) {
        double s = (double)it->scale[0] * (double)wt->scale[wt->n_scale > 1 ? i : 0];
        int64_t zp = bt->n_zero_point == 0 ? 0 : bt->zero_point[bt->n_zero_point > 1 ? i : 0];
        out[i] = (float)(s * (double)(raw_int(p, TFL_INT32, i) - zp));
    }
    return 0;
}
