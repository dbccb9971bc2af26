/* export.c - the ONNX writer of `ote export` (see export.h for the graph it writes).
 *
 * The model is a tree of protobuf-c messages generated at build time from Debian's onnx.proto
 * (libonnx-dev) by protoc-c; every field is malloc'ed here, so one
 * onnx__model_proto__free_unpacked(model, NULL) frees it all. The graph is built from the
 * detector's parameters by their mmdetection names (det_param_find), walking the architecture
 * those names describe: backbone.features.stageS.unitU.convK (stride 2 on unit1 of stages 2-5,
 * depthwise conv2, residual when the unit keeps its channel count at stride 1), the FPN's
 * lateral/fpn convs, the ATSS head's towers and output convs. A name that is missing is an
 * error, never a silently different graph.
 *
 * Builder errors are sticky (gb.err): helpers do nothing after the first failure, and the caller
 * checks once at the end. Owns nothing between calls.
 */
#include "train/export.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/ote.h"
#include "io/atomic.h"
#include "onnx/onnx.pb-c.h"
#include "train/trainer.h"
#include "train/weights.h"

static const char *const OUTPUT_NAMES[EXPORT_N_OUTPUTS] = {
    "cls_p3", "cls_p4", "cls_p5", "cls_p6", "cls_p7", "reg_p3", "reg_p4", "reg_p5",
    "reg_p6", "reg_p7", "ctr_p3", "ctr_p4", "ctr_p5", "ctr_p6", "ctr_p7",
};

const char *export_output_name(int i) { return i >= 0 && i < EXPORT_N_OUTPUTS ? OUTPUT_NAMES[i] : NULL; }

/* ------------------------------------------------------------------------------------------ */
/* Graph builder */

typedef struct gb {
    Onnx__GraphProto *g;
    size_t cap_node, cap_init;
    detector *d;
    int tf_pad;
    int err;       /* first failure (negative) or 0 */
    int counter;   /* unique tensor names */
} gb;

static void *gb_alloc(gb *b, size_t n) {
    if (b->err) return NULL;
    void *p = calloc(1, n ? n : 1);
    if (!p) b->err = ote_err(OTE_ENOMEM, "export: out of memory");
    return p;
}

static char *gb_strdup(gb *b, const char *s) {
    char *p = gb_alloc(b, strlen(s) + 1);
    if (p) memcpy(p, s, strlen(s) + 1);
    return p;
}

static char *gb_fmt(gb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *gb_fmt(gb *b, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return gb_strdup(b, buf);
}

/* Grows an array of pointers (*arr, count *n, capacity *cap) by one slot, appending v. */
static void gb_push(gb *b, void ***arr, size_t *n, size_t *cap, void *v) {
    if (b->err || !v) return;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void **na = realloc(*arr, nc * sizeof *na);
        if (!na) {
            b->err = ote_err(OTE_ENOMEM, "export: out of memory");
            return;
        }
        *arr = na, *cap = nc;
    }
    (*arr)[(*n)++] = v;
}

/* An initializer: f32 (data != NULL) or int64 (idata != NULL), little-endian raw_data. */
static const char *gb_init(gb *b, const char *name, int ndim, const int64_t *dims, const float *data,
                           const int64_t *idata) {
    if (b->err) return NULL;
    Onnx__TensorProto *t = gb_alloc(b, sizeof *t);
    if (!t) return NULL;
    onnx__tensor_proto__init(t);
    size_t numel = 1;
    t->dims = gb_alloc(b, (size_t)(ndim ? ndim : 1) * sizeof(int64_t));
    t->n_dims = (size_t)ndim;
    for (int i = 0; i < ndim && t->dims; i++) t->dims[i] = dims[i], numel *= (size_t)dims[i];
    t->has_data_type = 1;
    t->data_type = data ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    size_t bytes = numel * (data ? sizeof(float) : sizeof(int64_t));
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = gb_alloc(b, bytes);
    if (t->raw_data.data && bytes) memcpy(t->raw_data.data, data ? (const void *)data : (const void *)idata, bytes);
    t->name = gb_strdup(b, name);
    if (b->err) {
        onnx__tensor_proto__free_unpacked(t, NULL);
        return NULL;
    }
    gb_push(b, (void ***)&b->g->initializer, &b->g->n_initializer, &b->cap_init, t);
    return t->name;
}

static Onnx__AttributeProto *gb_attr(gb *b, Onnx__NodeProto *n, const char *name) {
    if (b->err || !n) return NULL;
    Onnx__AttributeProto *a = gb_alloc(b, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = gb_strdup(b, name);
    Onnx__AttributeProto **na = realloc(n->attribute, (n->n_attribute + 1) * sizeof *na);
    if (!na) {
        onnx__attribute_proto__free_unpacked(a, NULL);
        b->err = ote_err(OTE_ENOMEM, "export: out of memory");
        return NULL;
    }
    n->attribute = na;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void gb_attr_i(gb *b, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = gb_attr(b, n, name);
    if (!a) return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1, a->i = v;
}

static void gb_attr_f(gb *b, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = gb_attr(b, n, name);
    if (!a) return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1, a->f = v;
}

static void gb_attr_s(gb *b, Onnx__NodeProto *n, const char *name, const char *v) {
    Onnx__AttributeProto *a = gb_attr(b, n, name);
    if (!a) return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = gb_alloc(b, a->s.len);
    if (a->s.data) memcpy(a->s.data, v, a->s.len);
}

static void gb_attr_ints(gb *b, Onnx__NodeProto *n, const char *name, int k, const int64_t *v) {
    Onnx__AttributeProto *a = gb_attr(b, n, name);
    if (!a) return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->ints = gb_alloc(b, (size_t)k * sizeof *a->ints);
    if (!a->ints) return;
    a->n_ints = (size_t)k;
    memcpy(a->ints, v, (size_t)k * sizeof *v);
}

/* A node op(inputs) -> one output named out (NULL: a fresh "t<k>"); returns the node. */
static Onnx__NodeProto *gb_node(gb *b, const char *op, int nin, const char *const *in, const char *out) {
    if (b->err) return NULL;
    for (int i = 0; i < nin; i++)
        if (!in[i]) return NULL; /* an earlier helper failed: err is set */
    Onnx__NodeProto *n = gb_alloc(b, sizeof *n);
    if (!n) return NULL;
    onnx__node_proto__init(n);
    n->op_type = gb_strdup(b, op);
    n->name = gb_fmt(b, "%s_%d", op, b->counter);
    n->input = gb_alloc(b, (size_t)nin * sizeof *n->input);
    n->output = gb_alloc(b, sizeof *n->output);
    if (n->input)
        for (int i = 0; i < nin; i++) n->input[i] = gb_strdup(b, in[i]);
    n->n_input = n->input ? (size_t)nin : 0;
    if (n->output) {
        n->output[0] = out ? gb_strdup(b, out) : gb_fmt(b, "t%d", b->counter);
        n->n_output = 1;
    }
    b->counter++;
    if (b->err) {
        onnx__node_proto__free_unpacked(n, NULL);
        return NULL;
    }
    gb_push(b, (void ***)&b->g->node, &b->g->n_node, &b->cap_node, n);
    return b->err ? NULL : n;
}

static const char *gb_out(const Onnx__NodeProto *n) { return n ? n->output[0] : NULL; }

/* A detector parameter by name, plain PyTorch layout, malloc'ed (*numel elements). */
static float *gb_param(gb *b, const char *name, const det_param_info **info) {
    if (b->err) return NULL;
    int i = det_param_find(b->d, name);
    if (i < 0) {
        b->err = ote_err(OTE_EINVAL, "export: the detector has no parameter %s", name);
        return NULL;
    }
    const det_param_info *pi = det_param(b->d, i);
    size_t numel = 1;
    for (int k = 0; k < pi->ndim; k++) numel *= (size_t)pi->shape[k];
    float *v = gb_alloc(b, numel * sizeof *v);
    if (!v) return NULL;
    int s = det_param_get(b->d, i, v);
    if (s < 0) {
        free(v);
        b->err = s;
        return NULL;
    }
    if (info) *info = pi;
    return v;
}

static int gb_has_param(gb *b, const char *name) { return det_param_find(b->d, name) >= 0; }

/* A Conv node over in[0..nin) (x, weight[, bias]) named out (NULL: generated): k x k kernel,
 * stride, pads {top, left, bottom, right}, group; dilation 1. */
static Onnx__NodeProto *gb_conv_node(gb *b, const char *const *in, int nin, const char *out, int64_t k, int64_t stride,
                                     const int64_t pads[4], int64_t group) {
    Onnx__NodeProto *n = gb_node(b, "Conv", nin, in, out);
    int64_t ks[2] = {k, k}, st[2] = {stride, stride}, dil[2] = {1, 1};
    gb_attr_ints(b, n, "kernel_shape", 2, ks);
    gb_attr_ints(b, n, "strides", 2, st);
    gb_attr_ints(b, n, "pads", 4, pads);
    gb_attr_ints(b, n, "dilations", 2, dil);
    gb_attr_i(b, n, "group", group);
    return n;
}

/* Conv node with weight / bias initializers (bias may be NULL); oc x (ic/group) x k x k. */
static const char *gb_conv(gb *b, const char *x, const char *name, const float *w, const float *bias, int oc,
                           int icg, int k, int stride, int group, int tf_same) {
    int64_t wd[4] = {oc, icg, k, k}, bd[1] = {oc};
    char nm[256];
    snprintf(nm, sizeof nm, "%s.weight", name);
    const char *wn = gb_init(b, nm, 4, wd, w, NULL);
    const char *bn = NULL;
    if (bias) {
        snprintf(nm, sizeof nm, "%s.bias", name);
        bn = gb_init(b, nm, 1, bd, bias, NULL);
    }
    const char *in[3] = {x, wn, bn};
    int64_t p = k / 2, pads[4] = {p, p, p, p};
    if (tf_same && stride == 2 && k == 3) {
        /* TF "SAME" on even inputs: all padding after (models/det.c det_conv_cfg) */
        pads[0] = pads[1] = 0, pads[2] = pads[3] = 1;
    }
    return gb_out(gb_conv_node(b, in, bias ? 3 : 2, NULL, k, stride, pads, group));
}

/* Shared scalar constants of the graph (created once, referenced by name). */
typedef struct gb_consts {
    const char *ones32, *zeros32; /* InstanceNormalization scale / bias (32) */
    const char *scales2;         /* Resize scales (1, 1, 2, 2) */
} gb_consts;

/* ReLU6 as Clip with min/max attributes (opset <= 10; OpenCV 4.6's importer takes only this form
 * and maps it to its ReLU6 layer, which it fuses into the conv). */
static const char *gb_clip6(gb *b, const char *x) {
    Onnx__NodeProto *n = gb_node(b, "Clip", 1, &x, NULL);
    gb_attr_f(b, n, "min", 0.0f);
    gb_attr_f(b, n, "max", 6.0f);
    return gb_out(n);
}

static const char *gb_unary(gb *b, const char *op, const char *x) { return gb_out(gb_node(b, op, 1, &x, NULL)); }

static const char *gb_binary(gb *b, const char *op, const char *x, const char *y, const char *out) {
    const char *in[2] = {x, y};
    return gb_out(gb_node(b, op, 2, in, out));
}

/* Backbone conv + BN (+ ReLU6): BN folded in f64, W' = W g/sqrt(v+eps), b' = beta - mean g/sqrt(v+eps). */
static const char *gb_cbr(gb *b, const char *x, const char *prefix, int stride, int relu6) {
    char nm[256];
    const det_param_info *wi = NULL;
    snprintf(nm, sizeof nm, "%s.conv.weight", prefix);
    float *w = gb_param(b, nm, &wi);
    snprintf(nm, sizeof nm, "%s.bn.weight", prefix);
    float *g = gb_param(b, nm, NULL);
    snprintf(nm, sizeof nm, "%s.bn.bias", prefix);
    float *be = gb_param(b, nm, NULL);
    snprintf(nm, sizeof nm, "%s.bn.running_mean", prefix);
    float *mu = gb_param(b, nm, NULL);
    snprintf(nm, sizeof nm, "%s.bn.running_var", prefix);
    float *var = gb_param(b, nm, NULL);
    const char *y = NULL;
    if (!b->err) {
        int oc = (int)wi->shape[0], icg = (int)wi->shape[1], ks = (int)wi->shape[2];
        size_t per = (size_t)icg * ks * ks;
        float *bias = gb_alloc(b, (size_t)oc * sizeof *bias);
        if (bias) {
            for (int o = 0; o < oc; o++) {
                double inv = 1.0 / sqrt((double)var[o] + 1e-5); /* BatchNorm2d eps (spec §2) */
                double sc = (double)g[o] * inv;
                for (size_t i = 0; i < per; i++) w[o * per + i] = (float)((double)w[o * per + i] * sc);
                bias[o] = (float)((double)be[o] - (double)mu[o] * sc);
            }
            /* depthwise: one input channel per group */
            int group = icg == 1 && oc > 1 ? oc : 1;
            y = gb_conv(b, x, prefix, w, bias, oc, icg, ks, stride, group, b->tf_pad);
            free(bias);
            if (relu6) y = gb_clip6(b, y);
        }
    }
    free(w), free(g), free(be), free(mu), free(var);
    return y;
}

/* A conv with its own bias from the parameters (neck, head outputs) or without (head towers). */
static const char *gb_conv_param(gb *b, const char *x, const char *prefix, int stride, int has_bias) {
    char nm[256];
    const det_param_info *wi = NULL;
    snprintf(nm, sizeof nm, "%s.weight", prefix);
    float *w = gb_param(b, nm, &wi);
    float *bias = NULL;
    if (has_bias) {
        snprintf(nm, sizeof nm, "%s.bias", prefix);
        bias = gb_param(b, nm, NULL);
    }
    const char *y = NULL;
    if (!b->err)
        y = gb_conv(b, x, prefix, w, bias, (int)wi->shape[0], (int)wi->shape[1], (int)wi->shape[2], stride, 1, 0);
    free(w), free(bias);
    return y;
}

/* Shared initializers of one tower layer: the conv weight and the GN affine as (64, 1, 1). */
typedef struct gb_tower_layer {
    const char *w, *gamma, *beta;
} gb_tower_layer;

static void gb_tower_init(gb *b, const char *tower, int i, gb_tower_layer *t) {
    char nm[256];
    const det_param_info *wi = NULL;
    snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.conv.weight", tower, i);
    float *w = gb_param(b, nm, &wi);
    if (w) {
        int64_t wd[4] = {wi->shape[0], wi->shape[1], wi->shape[2], wi->shape[3]};
        t->w = gb_init(b, nm, 4, wd, w, NULL);
    }
    free(w);
    const char *which[2] = {"weight", "bias"};
    for (int k = 0; k < 2; k++) {
        snprintf(nm, sizeof nm, "bbox_head.%s_convs.%d.gn.%s", tower, i, which[k]);
        float *v = gb_param(b, nm, &wi);
        if (v) {
            int64_t d3[3] = {wi->shape[0], 1, 1};
            const char *n = gb_init(b, nm, 3, d3, v, NULL);
            if (k == 0) t->gamma = n;
            else t->beta = n;
        }
        free(v);
    }
}

/* conv3x3 (no bias) -> GroupNorm(32) -> ReLU at one level (h x w, 64 channels). */
static const char *gb_tower_step(gb *b, const gb_consts *k, const char *x, const gb_tower_layer *t,
                                 const char *shape_in, const char *shape_out) {
    const char *in[2] = {x, t->w};
    static const int64_t pads[4] = {1, 1, 1, 1};
    Onnx__NodeProto *n = gb_conv_node(b, in, 2, NULL, 3, 1, pads, 1);
    /* GroupNorm: (1, 64, H, W) -> (1, 32, 2H, W): group g = channels 2g, 2g+1, contiguous */
    const char *r = gb_binary(b, "Reshape", gb_out(n), shape_in, NULL);
    const char *iin[3] = {r, k->ones32, k->zeros32};
    Onnx__NodeProto *inn = gb_node(b, "InstanceNormalization", 3, iin, NULL);
    gb_attr_f(b, inn, "epsilon", 1e-5f); /* GroupNorm eps (spec §4) */
    const char *y = gb_binary(b, "Reshape", gb_out(inn), shape_out, NULL);
    y = gb_binary(b, "Mul", y, t->gamma, NULL);
    y = gb_binary(b, "Add", y, t->beta, NULL);
    return gb_unary(b, "Relu", y);
}

static void gb_value_info(gb *b, Onnx__ValueInfoProto ***arr, size_t *n, size_t *cap, const char *name,
                          const int64_t dims[4]) {
    Onnx__ValueInfoProto *v = gb_alloc(b, sizeof *v);
    Onnx__TypeProto *t = gb_alloc(b, sizeof *t);
    Onnx__TypeProto__Tensor *tt = gb_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = gb_alloc(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = gb_alloc(b, 4 * sizeof *dd);
    for (int i = 0; i < 4 && dd; i++) {
        dd[i] = gb_alloc(b, sizeof **dd);
        if (!dd[i]) break;
        onnx__tensor_shape_proto__dimension__init(dd[i]);
        dd[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dd[i]->dim_value = dims[i];
    }
    if (b->err) {
        /* free what was made, by hand (the pieces are not linked yet) */
        for (int i = 0; dd && i < 4; i++) free(dd[i]);
        free(dd), free(sh), free(tt), free(t), free(v);
        return;
    }
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = 4, sh->dim = dd;
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1, tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tt->shape = sh;
    onnx__type_proto__init(t);
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, t->tensor_type = tt;
    onnx__value_info_proto__init(v);
    v->type = t;
    v->name = gb_strdup(b, name);
    if (b->err) {
        onnx__value_info_proto__free_unpacked(v, NULL);
        return;
    }
    gb_push(b, (void ***)arr, n, cap, v);
}

/* The graph's shared scalar constants as initializers. */
static void gb_make_consts(gb *b, gb_consts *k) {
    float ones[32], zeros[32];
    for (int i = 0; i < 32; i++) ones[i] = 1.0f, zeros[i] = 0.0f;
    int64_t d32[1] = {32}, d4[1] = {4};
    k->ones32 = gb_init(b, "const.ones32", 1, d32, ones, NULL);
    k->zeros32 = gb_init(b, "const.zeros32", 1, d32, zeros, NULL);
    float sc2[4] = {1, 1, 2, 2};
    k->scales2 = gb_init(b, "const.resize_scales2", 1, d4, sc2, NULL);
}

/* Unit backbone.features.stageS.unitU on *x: [conv1 ->] conv2 (depthwise) -> conv3 [+ x]. Returns
 * 0 when the stage has no such unit (an error for unit1) or the unit is incomplete, else 1. */
static int gb_backbone_unit(gb *b, const char **x, int stage, int u) {
    char pre[128], nm[256];
    snprintf(pre, sizeof pre, "backbone.features.stage%d.unit%d", stage, u);
    snprintf(nm, sizeof nm, "%s.conv2.conv.weight", pre);
    if (!gb_has_param(b, nm)) {
        if (u == 1) b->err = ote_err(OTE_EINVAL, "export: the detector has no parameter %s", nm);
        return 0;
    }
    int stride = u == 1 && stage > 1 ? 2 : 1;
    const det_param_info *in_w = NULL, *out_w = NULL;
    snprintf(nm, sizeof nm, "%s.conv3.conv.weight", pre);
    out_w = det_param(b->d, det_param_find(b->d, nm));
    snprintf(nm, sizeof nm, "%s.conv1.conv.weight", pre);
    int has_c1 = gb_has_param(b, nm);
    snprintf(nm, sizeof nm, "%s.%s.conv.weight", pre, has_c1 ? "conv1" : "conv2");
    in_w = det_param(b->d, det_param_find(b->d, nm));
    if (!in_w || !out_w) {
        b->err = ote_err(OTE_EINVAL, "export: %s is incomplete", pre);
        return 0;
    }
    /* conv1's input channels, or the depthwise conv's (its group count) without conv1 */
    long cin = has_c1 ? in_w->shape[1] : in_w->shape[0];
    int residual = cin == out_w->shape[0] && stride == 1;
    const char *y = *x;
    char cn[160];
    if (has_c1) {
        snprintf(cn, sizeof cn, "%s.conv1", pre);
        y = gb_cbr(b, y, cn, 1, 1);
    }
    snprintf(cn, sizeof cn, "%s.conv2", pre);
    y = gb_cbr(b, y, cn, stride, 1);
    snprintf(cn, sizeof cn, "%s.conv3", pre);
    y = gb_cbr(b, y, cn, 1, 0);
    if (residual) y = gb_binary(b, "Add", y, *x, NULL);
    *x = y;
    return 1;
}

/* The backbone: init_block, then stageS.unitU while the names exist; taps get C3, C4, C5 (the
 * ends of stages 3, 4, 5). */
static void gb_backbone(gb *b, const char *taps[3]) {
    const char *x = gb_cbr(b, "image", "backbone.features.init_block", 2, 1);
    for (int stage = 1; stage <= 5 && !b->err; stage++) {
        int u = 1;
        while (gb_backbone_unit(b, &x, stage, u)) u++;
        if (stage >= 3) taps[stage - 3] = x;
    }
}

/* The FPN (spec §3) on C3..C5: P3..P7 into p. */
static void gb_fpn(gb *b, const gb_consts *k, const char *const taps[3], const char *p[ANCHORS_LEVELS]) {
    const char *lat[3];
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "neck.lateral_convs.%d.conv", i);
        lat[i] = gb_conv_param(b, taps[i], nm, 1, 1);
    }
    for (int i = 2; i >= 1; i--) {
        /* Resize-10: nearest, output index d reads floor(d / 2) (exact 2x: sizes are multiples of 32) */
        const char *rin[2] = {lat[i], k->scales2};
        Onnx__NodeProto *r = gb_node(b, "Resize", 2, rin, NULL);
        gb_attr_s(b, r, "mode", "nearest");
        lat[i - 1] = gb_binary(b, "Add", lat[i - 1], gb_out(r), NULL);
    }
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "neck.fpn_convs.%d.conv", i);
        p[i] = gb_conv_param(b, lat[i], nm, 1, 1);
    }
    p[3] = gb_conv_param(b, p[2], "neck.fpn_convs.3.conv", 2, 1);
    p[4] = gb_conv_param(b, gb_unary(b, "Relu", p[3]), "neck.fpn_convs.4.conv", 2, 1);
}

/* The ATSS head's initializers, shared by the levels: the towers and the three output convs. */
typedef struct gb_head_init {
    gb_tower_layer cls_t[4], reg_t[4];
    const char *ow[3], *ob[3]; /* atss_cls, atss_reg, atss_centerness: weight, bias */
} gb_head_init;

/* The head's initializers; och: the output convs' channels (num_classes, 4, 1). */
static void gb_head_weights(gb *b, const int och[3], gb_head_init *hi) {
    memset(hi, 0, sizeof *hi);
    for (int i = 0; i < 4; i++) gb_tower_init(b, "cls", i, &hi->cls_t[i]), gb_tower_init(b, "reg", i, &hi->reg_t[i]);
    const char *outw[3] = {"bbox_head.atss_cls", "bbox_head.atss_reg", "bbox_head.atss_centerness"};
    for (int j = 0; j < 3; j++) {
        char nm[128];
        snprintf(nm, sizeof nm, "%s.weight", outw[j]);
        float *wv = gb_param(b, nm, NULL);
        int64_t wd[4] = {och[j], 64, 3, 3}, bd[1] = {och[j]};
        if (wv) hi->ow[j] = gb_init(b, nm, 4, wd, wv, NULL);
        free(wv);
        snprintf(nm, sizeof nm, "%s.bias", outw[j]);
        float *bv = gb_param(b, nm, NULL);
        if (bv) hi->ob[j] = gb_init(b, nm, 1, bd, bv, NULL);
        free(bv);
    }
}

/* The head at level l (hl x wl) on P(l+3): towers, output convs and the level's Scale, into the
 * graph outputs cls_p*, reg_p*, ctr_p*. */
static void gb_head_level(gb *b, const gb_consts *k, const gb_head_init *hi, int l, int hl, int wl, const char *pl) {
    int64_t sin[4] = {1, 32, 2 * (int64_t)hl, wl}, sout[4] = {1, 64, hl, wl}, d4s[1] = {4};
    char nm[64];
    snprintf(nm, sizeof nm, "shape.gn_in_p%d", l + 3);
    const char *shape_in = gb_init(b, nm, 1, d4s, NULL, sin);
    snprintf(nm, sizeof nm, "shape.gn_out_p%d", l + 3);
    const char *shape_out = gb_init(b, nm, 1, d4s, NULL, sout);
    const char *c = pl, *r = pl;
    for (int i = 0; i < 4; i++) {
        c = gb_tower_step(b, k, c, &hi->cls_t[i], shape_in, shape_out);
        r = gb_tower_step(b, k, r, &hi->reg_t[i], shape_in, shape_out);
    }
    const char *srcs[3] = {c, r, r};
    const char *res[3];
    for (int j = 0; j < 3; j++) {
        const char *in[3] = {srcs[j], hi->ow[j], hi->ob[j]};
        static const int64_t pads[4] = {1, 1, 1, 1};
        Onnx__NodeProto *n =
            gb_conv_node(b, in, 3, j == 1 ? NULL : OUTPUT_NAMES[j * ANCHORS_LEVELS + l], 3, 1, pads, 1);
        res[j] = gb_out(n);
    }
    /* bbox_pred = scale_l * atss_reg (the engine's order: conv, then the scalar multiply) */
    snprintf(nm, sizeof nm, "bbox_head.scales.%d.scale", l);
    float *sv = gb_param(b, nm, NULL);
    const char *sn = sv ? gb_init(b, nm, 0, NULL, sv, NULL) : NULL;
    free(sv);
    gb_binary(b, "Mul", res[1], sn, OUTPUT_NAMES[ANCHORS_LEVELS + l]);
}

/* The graph's input "image" (1, 3, h, w) and its outputs at the grid's level sizes. */
static void gb_graph_io(gb *b, int h, int w, const int och[3], const anchor_grid *grid) {
    int64_t din[4] = {1, 3, h, w};
    size_t cap_in = 0, cap_out = 0;
    gb_value_info(b, &b->g->input, &b->g->n_input, &cap_in, "image", din);
    for (int i = 0; i < EXPORT_N_OUTPUTS && !b->err; i++) {
        int l = i % ANCHORS_LEVELS, kind = i / ANCHORS_LEVELS;
        int64_t dout[4] = {1, och[kind], grid->h[l], grid->w[l]};
        gb_value_info(b, &b->g->output, &b->g->n_output, &cap_out, OUTPUT_NAMES[i], dout);
    }
}

/* The whole network (export.h) into b->g. */
static void gb_network(gb *b, int h, int w, int num_classes) {
    gb_consts k;
    gb_make_consts(b, &k);
    const char *taps[3] = {NULL, NULL, NULL}; /* C3, C4, C5 */
    gb_backbone(b, taps);
    const char *p[ANCHORS_LEVELS];
    gb_fpn(b, &k, taps, p);

    /* ATSS head (spec §4): shared weights, per-level GN reshapes and Scale */
    int och[3] = {num_classes, 4, 1};
    gb_head_init hi;
    gb_head_weights(b, och, &hi);
    anchor_grid grid;
    if (!b->err) {
        int s = anchors_grid_init(&grid, h, w);
        if (s < 0) b->err = s;
    }
    for (int l = 0; l < ANCHORS_LEVELS && !b->err; l++) gb_head_level(b, &k, &hi, l, grid.h[l], grid.w[l], p[l]);
    gb_graph_io(b, h, w, och, &grid);
}

/* ------------------------------------------------------------------------------------------ */
/* Model */

static void gb_meta(gb *b, Onnx__ModelProto *m, size_t *cap, const char *key, const char *value) {
    Onnx__StringStringEntryProto *e = gb_alloc(b, sizeof *e);
    if (!e) return;
    onnx__string_string_entry_proto__init(e);
    e->key = gb_strdup(b, key);
    e->value = gb_strdup(b, value);
    if (b->err) {
        onnx__string_string_entry_proto__free_unpacked(e, NULL);
        return;
    }
    gb_push(b, (void ***)&m->metadata_props, &m->n_metadata_props, cap, e);
}

int export_onnx(detector *d, int h, int w, double confidence_threshold, const char *labels_json, const char *path) {
    if (h < 32 || w < 32 || h % 32 || w % 32)
        return ote_err(OTE_EINVAL, "export: input size %dx%d: width and height must be positive multiples of 32", w,
                       h);
    gb b;
    memset(&b, 0, sizeof b);
    b.d = d;
    b.tf_pad = det_config(d)->tf_padding;
    Onnx__ModelProto *m = gb_alloc(&b, sizeof *m);
    if (!m) return b.err;
    onnx__model_proto__init(m);
    m->has_ir_version = 1, m->ir_version = 5; /* ONNX 1.5, the IR of opset 10 */
    m->producer_name = gb_strdup(&b, "ote-c");
    m->producer_version = gb_strdup(&b, OTE_VERSION);
    m->doc_string = gb_strdup(&b, "MobileNetV2-ATSS (ote-c): BN-folded inference network; outputs are the raw "
                                  "per-level head maps (see README.md beside the model)");
    Onnx__OperatorSetIdProto *op = gb_alloc(&b, sizeof *op);
    m->opset_import = gb_alloc(&b, sizeof *m->opset_import);
    if (op && m->opset_import) {
        onnx__operator_set_id_proto__init(op);
        op->domain = gb_strdup(&b, "");
        op->has_version = 1, op->version = EXPORT_ONNX_OPSET;
        m->opset_import[0] = op, m->n_opset_import = 1;
    } else {
        free(op);
    }
    b.g = gb_alloc(&b, sizeof *b.g);
    if (b.g) {
        onnx__graph_proto__init(b.g);
        b.g->name = gb_strdup(&b, "mobilenetv2_atss");
        m->graph = b.g;
    }
    int C = det_config(d)->num_classes;
    if (!b.err) gb_network(&b, h, w, C);
    size_t cap_meta = 0;
    char v[64];
    gb_meta(&b, m, &cap_meta, "ote-c.format", EXPORT_FORMAT);
    snprintf(v, sizeof v, "%d", C);
    gb_meta(&b, m, &cap_meta, "num_classes", v);
    snprintf(v, sizeof v, "%dx%d", w, h);
    gb_meta(&b, m, &cap_meta, "input_size", v);
    snprintf(v, sizeof v, "%.17g", confidence_threshold);
    gb_meta(&b, m, &cap_meta, "confidence_threshold", v);
    gb_meta(&b, m, &cap_meta, "preprocessing", "RGB, resize to input_size (bilinear, keep_ratio false), x/255, NCHW");
    if (labels_json) gb_meta(&b, m, &cap_meta, "labels", labels_json);
    int s = b.err;
    if (s == 0) {
        size_t n = onnx__model_proto__get_packed_size(m);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf) s = ote_err(OTE_ENOMEM, "export: cannot allocate %zu bytes for %s", n, path);
        else {
            onnx__model_proto__pack(m, buf);
            s = atomic_write(path, buf, n, 0644);
            free(buf);
        }
    }
    onnx__model_proto__free_unpacked(m, NULL);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading back */

static int export_slurp(const char *path, uint8_t **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return ote_err(OTE_EIO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : (1u << 20);
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                free(buf), fclose(f);
                return ote_err(OTE_ENOMEM, "%s: out of memory reading it", path);
            }
            buf = nb, cap = nc;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ote_err(OTE_EIO, "%s: read error", path);
    }
    *out = buf, *n = len;
    return OTE_OK;
}

int export_read_meta(const char *path, export_meta *m) {
    memset(m, 0, sizeof *m);
    uint8_t *buf;
    size_t n;
    CHECK(export_slurp(path, &buf, &n));
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, n, buf);
    free(buf);
    if (!mp || !mp->graph) {
        if (mp) onnx__model_proto__free_unpacked(mp, NULL);
        return ote_err(OTE_EPARSE, "%s: not an ONNX model (protobuf parse failed)", path);
    }
    const char *fmt = NULL, *nc = NULL, *is = NULL, *ct = NULL;
    for (size_t i = 0; i < mp->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *e = mp->metadata_props[i];
        if (!e->key || !e->value) continue;
        if (!strcmp(e->key, "ote-c.format")) fmt = e->value;
        else if (!strcmp(e->key, "num_classes")) nc = e->value;
        else if (!strcmp(e->key, "input_size")) is = e->value;
        else if (!strcmp(e->key, "confidence_threshold")) ct = e->value;
    }
    int s = OTE_OK;
    char tail;
    if (!fmt || strcmp(fmt, EXPORT_FORMAT))
        s = ote_err(OTE_EPARSE, "%s: not an ote-c export (metadata ote-c.format is %s%s%s, expected \"%s\")", path,
                    fmt ? "\"" : "", fmt ? fmt : "absent", fmt ? "\"" : "", EXPORT_FORMAT);
    else if (!nc || sscanf(nc, "%d%c", &m->num_classes, &tail) != 1 || m->num_classes < 1)
        s = ote_err(OTE_EPARSE, "%s: metadata num_classes: '%s'", path, nc ? nc : "(absent)");
    else if (!is || sscanf(is, "%dx%d%c", &m->input_w, &m->input_h, &tail) != 2 || m->input_w < 32 ||
             m->input_h < 32 || m->input_w % 32 || m->input_h % 32)
        s = ote_err(OTE_EPARSE, "%s: metadata input_size: '%s'", path, is ? is : "(absent)");
    else if (!ct || sscanf(ct, "%lf%c", &m->confidence_threshold, &tail) != 1)
        s = ote_err(OTE_EPARSE, "%s: metadata confidence_threshold: '%s'", path, ct ? ct : "(absent)");
    onnx__model_proto__free_unpacked(mp, NULL);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* `ote export` */

static int export_write_text(const char *path, const char *text) { return atomic_write(path, text, strlen(text), 0644); }

/* The weights' label schema text (malloc'ed) or NULL if the file does not exist. */
static int export_read_labels(const char *weights_path, char **out) {
    *out = NULL;
    char lp[4200];
    CHECK(weights_side_path(weights_path, "label_schema.json", lp, sizeof lp));
    struct stat st;
    if (stat(lp, &st) != 0) return OTE_OK;
    uint8_t *buf;
    size_t n;
    CHECK(export_slurp(lp, &buf, &n));
    char *t = realloc(buf, n + 1);
    if (!t) {
        free(buf);
        return ote_err(OTE_ENOMEM, "%s: out of memory", lp);
    }
    t[n] = 0;
    *out = t;
    return OTE_OK;
}

static char *export_generic_labels(int C) {
    size_t cap = 128 + (size_t)C * 64;
    char *t = malloc(cap);
    if (!t) return NULL;
    size_t k = (size_t)snprintf(t, cap, "{\n  \"format\": \"ote-c label schema\",\n  \"version\": 1,\n  \"labels\": [");
    for (int i = 0; i < C; i++)
        k += (size_t)snprintf(t + k, cap - k, "%s\n    {\"id\": %d, \"name\": \"class_%d\", \"coco_category_id\": %d}",
                              i ? "," : "", i, i, i + 1);
    snprintf(t + k, cap - k, "\n  ]\n}\n");
    return t;
}

static char *export_readme(int w, int h, int C, double conf) {
    char *t = malloc(8192);
    if (!t) return NULL;
    snprintf(t, 8192,
             "# ote-c export: MobileNetV2-ATSS as ONNX\n\n"
             "`model.onnx`: ONNX opset %d (IR 5), produced by `ote export` (ote-c %s). The BatchNorm-folded\n"
             "inference network; post-processing (anchors, decoding, NMS) is NOT in the graph.\n\n"
             "## Input\n\n"
             "`image`: float32, shape 1x3x%dx%d (NCHW; batch 1; static shape, export again for another size).\n\n"
             "Pre-processing: decode the image as **RGB** (not OpenCV's BGR), resize to exactly %dx%d (WxH,\n"
             "bilinear, `cv2.INTER_LINEAR`, aspect ratio not kept), convert to float and divide by 255\n"
             "(mean 0, std 255 per channel; no ImageNet mean/std), layout HWC -> CHW.\n\n"
             "## Outputs (raw head maps, per FPN level P3..P7, strides 8, 16, 32, 64, 128)\n\n"
             "- `cls_p3` .. `cls_p7`: 1x%dx(H/s)x(W/s), class logits (apply sigmoid); classes in\n"
             "  `label_schema.json` order (`id`).\n"
             "- `reg_p3` .. `reg_p7`: 1x4x(H/s)x(W/s), box deltas (dx, dy, dw, dh), already multiplied by the\n"
             "  level's learned scale; decode against the level's anchors.\n"
             "- `ctr_p3` .. `ctr_p7`: 1x1x(H/s)x(W/s), centerness logits (apply sigmoid).\n\n"
             "H/s and W/s round up (ceil). Post-processing (mmdetection ATSS, as `ote eval` does it):\n"
             "anchor at level stride s and cell (y, x) is the square [x*s - 4s, y*s - 4s, x*s + 4s, y*s + 4s];\n"
             "score = sigmoid(cls) * sigmoid(ctr); per level keep the top 1000 locations by max score;\n"
             "decode with DeltaXYWH (means 0, stds 0.1, 0.1, 0.2, 0.2; dw, dh clamped to |log(1000/16)|),\n"
             "clip to the input; keep scores > 0.05; class-aware NMS at IoU 0.6; at most 100 boxes; divide the\n"
             "boxes by the resize factors to get original-image pixels. Confidence threshold stored with the\n"
             "model: %.4g (for showing detections; the mAP uses all boxes).\n\n"
             "## Running it\n\n"
             "    ote eval TEMPLATE --load-weights model.onnx --test-ann-files GT.json --test-data-roots DIR\n\n"
             "runs it through OpenCV's dnn module (same post-processing and evaluation as for weights.pth).\n"
             "OpenVINO and onnxruntime read `model.onnx` directly.\n",
             EXPORT_ONNX_OPSET, OTE_VERSION, h, w, w, h, C, conf);
    return t;
}

int export_run(const config_template *cfg, const pth_ckpt *c, const char *weights_path, const char *dir,
               int nthreads, FILE *log) {
    if (cfg->input_w < 32 || cfg->input_h < 32 || cfg->input_w % 32 || cfg->input_h % 32)
        return ote_err(OTE_EINVAL, "model.input_size: %dx%d: width and height must be positive multiples of 32",
                       cfg->input_w, cfg->input_h);
    const pth_tensor *cls = pth_find(c, "bbox_head.atss_cls.bias");
    if (!cls || cls->ndim != 1 || cls->shape[0] < 1)
        return ote_err(OTE_EINVAL, "%s: no bbox_head.atss_cls.bias: not a detector checkpoint", weights_path);
    int C = (int)cls->shape[0];
    char model_path[4200], labels_path[4200], readme_path[4200], made[4200];
    if (snprintf(model_path, sizeof model_path, "%s/model.onnx", dir) >= (int)sizeof model_path ||
        snprintf(labels_path, sizeof labels_path, "%s/label_schema.json", dir) >= (int)sizeof labels_path ||
        snprintf(readme_path, sizeof readme_path, "%s/README.md", dir) >= (int)sizeof readme_path)
        return ote_err(OTE_EINVAL, "--save-model-to %s: path too long", dir);
    char *labels = NULL;
    CHECK(export_read_labels(weights_path, &labels));
    if (!labels) {
        if (log)
            fprintf(log, "warning: %s has no label schema beside it; writing generic names class_0..class_%d\n",
                    weights_path, C - 1);
        labels = export_generic_labels(C);
        if (!labels) return ote_err(OTE_ENOMEM, "export: out of memory");
    }
    eng_ctx e;
    detector *d = NULL;
    int have_e = 0, wrote_labels = 0, wrote_readme = 0;
    char *readme = NULL;
    int s = weights_prepare_dir(model_path, made, sizeof made);
    if (s < 0) {
        free(labels);
        return s;
    }
    s = eng_init(&e, nthreads);
    if (s < 0) goto done;
    have_e = 1;
    det_cfg dc;
    trainer_det_cfg(cfg, C, &dc);
    if ((s = det_create(&d, &e, &dc)) < 0) goto done;
    weights_load_info info;
    if ((s = weights_apply(d, c, weights_path, &info)) < 0) goto done;
    if ((s = export_write_text(labels_path, labels)) < 0) goto done;
    wrote_labels = 1;
    readme = export_readme(cfg->input_w, cfg->input_h, C, cfg->confidence_threshold);
    if (!readme) {
        s = ote_err(OTE_ENOMEM, "export: out of memory");
        goto done;
    }
    if ((s = export_write_text(readme_path, readme)) < 0) goto done;
    wrote_readme = 1;
    s = export_onnx(d, cfg->input_h, cfg->input_w, cfg->confidence_threshold, labels, model_path);
    if (s >= 0 && log)
        fprintf(log, "exported %s (%d classes, input 1x3x%dx%d, opset %d) with %s and %s\n", model_path, C,
                cfg->input_h, cfg->input_w, EXPORT_ONNX_OPSET, labels_path, readme_path);
done:
    if (s < 0) {
        if (wrote_labels) unlink(labels_path);
        if (wrote_readme) unlink(readme_path);
        weights_remove_made_dirs(model_path, made);
    }
    det_free(d);
    if (have_e) eng_free(&e);
    free(labels), free(readme);
    return s;
}
