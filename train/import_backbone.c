/* import_backbone.c - TFLite MobileNetV2 graph -> torchvision-variant backbone parameters.
 *
 * The walk follows the data flow, not just operator order: every conv must consume the tensor the
 * previous layer produced, and every residual ADD must combine the unit's input with its
 * projection output. Shapes, strides, padding, dilation and fused activations are checked against
 * the fixed MobileNetV2 1.0 table below, so any other network fails with a message naming the
 * first operator that differs. See import_backbone.h for names, layouts and the BatchNorm choice.
 */
#include "train/import_backbone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

/* torchvision's inverted-residual settings expanded to the 17 units: (in, expansion, out,
 * stride, stage, unit). Stage/unit follow pytorchcv's grouping (spec-detector.md §2a). */
static const struct {
    int cin, t, cout, stride, stage, unit;
} mbv2_units[17] = {
    {32, 1, 16, 1, 1, 1},  {16, 6, 24, 2, 2, 1},  {24, 6, 24, 1, 2, 2},  {24, 6, 32, 2, 3, 1},
    {32, 6, 32, 1, 3, 2},  {32, 6, 32, 1, 3, 3},  {32, 6, 64, 2, 4, 1},  {64, 6, 64, 1, 4, 2},
    {64, 6, 64, 1, 4, 3},  {64, 6, 64, 1, 4, 4},  {64, 6, 96, 1, 4, 5},  {96, 6, 96, 1, 4, 6},
    {96, 6, 96, 1, 4, 7},  {96, 6, 160, 2, 5, 1}, {160, 6, 160, 1, 5, 2}, {160, 6, 160, 1, 5, 3},
    {160, 6, 320, 1, 5, 4},
};

enum { MBV2_N_CONV = 35, MBV2_N_DW = 17, MBV2_N_ADD = 10, MBV2_FINAL_CH = 1280 };

void import_backbone_free(import_backbone_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) free(r->p[i].data);
    free(r->p);
    memset(r, 0, sizeof *r);
}

const import_backbone_param *import_backbone_find(const import_backbone_result *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->p[i].name, name)) return &r->p[i];
    return NULL;
}

/* Takes ownership of `data` (freed on failure too). */
static int add_param(import_backbone_result *r, const char *name, int ndim, const int64_t *shape, float *data) {
    if (r->n == r->cap) {
        int nc = r->cap ? 2 * r->cap : 64;
        import_backbone_param *np = realloc(r->p, (size_t)nc * sizeof *np);
        if (!np) {
            free(data);
            return ote_err(OTE_ENOMEM, "import-backbone: cannot allocate the parameter list");
        }
        r->p = np;
        r->cap = nc;
    }
    import_backbone_param *p = &r->p[r->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->data = data;
    return 0;
}

static float *alloc_f(int64_t n) { return malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

/* BN that is identity + bias in eval mode (see import_backbone.h). Takes ownership of bias. */
static int add_bn(import_backbone_result *r, const char *prefix, int c, float *bias) {
    char name[128];
    int64_t shape[1] = {c};
    float *g = alloc_f(c), *mu = alloc_f(c), *var = alloc_f(c);
    if (!g || !mu || !var) {
        free(g), free(mu), free(var), free(bias);
        return ote_err(OTE_ENOMEM, "import-backbone: cannot allocate BatchNorm parameters");
    }
    for (int i = 0; i < c; i++) g[i] = 1.0f, mu[i] = 0.0f, var[i] = 1.0f - IMPORT_BACKBONE_BN_EPS;
    int s = 0;
    snprintf(name, sizeof name, "%s.bn.weight", prefix);
    if (s == 0) s = add_param(r, name, 1, shape, g); else free(g);
    snprintf(name, sizeof name, "%s.bn.bias", prefix);
    if (s == 0) s = add_param(r, name, 1, shape, bias); else free(bias);
    snprintf(name, sizeof name, "%s.bn.running_mean", prefix);
    if (s == 0) s = add_param(r, name, 1, shape, mu); else free(mu);
    snprintf(name, sizeof name, "%s.bn.running_var", prefix);
    if (s == 0) s = add_param(r, name, 1, shape, var); else free(var);
    return s;
}

typedef struct walk {
    const tfl_model *m;
    int op; /* next operator to look at */
    import_backbone_result *r;
} walk;

static const char *opname(int code) {
    static _Thread_local char buf[24];
    return tfl_op_name(code, buf, sizeof buf);
}

/* The next CONV_2D / DEPTHWISE_CONV_2D / ADD at or after w->op (other operators such as the
 * QUANTIZE of int8 models are not part of the backbone). -1 if none. */
static int next_op(walk *w) {
    for (; w->op < w->m->n_ops; w->op++) {
        int c = w->m->ops[w->op].opcode;
        if (c == TFL_OP_CONV_2D || c == TFL_OP_DEPTHWISE_CONV_2D || c == TFL_OP_ADD) return w->op++;
    }
    return -1;
}

static int shape_is(const tfl_tensor *t, int ndim, const int *want) {
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != want[i]) return 0;
    return 1;
}

static void shape_str(const tfl_tensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? "," : "", t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static const char *act_name(int a) {
    switch (a) {
    case TFL_ACT_NONE: return "NONE";
    case TFL_ACT_RELU: return "RELU";
    case TFL_ACT_RELU6: return "RELU6";
    default: return "other";
    }
}

/* Validates the next conv-like operator and imports it as `prefix`.conv.weight + BN.
 * kind: TFL_OP_CONV_2D or TFL_OP_DEPTHWISE_CONV_2D. Returns its output tensor via *out_t. */
static int take_conv(walk *w, int kind, int k, int stride, int cin, int cout, int act, int in_t, const char *prefix,
                     const char *role, int *out_t) {
    const tfl_model *m = w->m;
    int oi = next_op(w);
    if (oi < 0)
        return ote_err(OTE_EPARSE, "%s: graph ends before %s (%s) of the expected MobileNetV2 structure", m->path, role,
                       opname(kind));
    const tfl_op *op = &m->ops[oi];
    if (op->opcode != kind)
        return ote_err(OTE_EPARSE, "%s: operators[%d]: found %s where MobileNetV2 has %s (%s)", m->path, oi,
                       opname(op->opcode), opname(kind), role);
    if (op->n_in < 2 || op->n_out < 1)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): %d inputs / %d outputs", m->path, oi, opname(kind), role,
                       op->n_in, op->n_out);
    if (op->inputs[0] < 0)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): the data input is omitted (-1)", m->path, oi,
                       opname(kind), role);
    if (in_t >= 0 && op->inputs[0] != in_t)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): consumes tensor %d, expected %d (the previous layer's output)",
                       m->path, oi, opname(kind), role, op->inputs[0], in_t);
    if (op->stride_w != stride || op->stride_h != stride || op->dilation_w != 1 || op->dilation_h != 1)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): stride %dx%d dilation %dx%d, expected stride %d, dilation 1",
                       m->path, oi, opname(kind), role, op->stride_w, op->stride_h, op->dilation_w, op->dilation_h, stride);
    if (k > 1 && op->padding != TFL_PAD_SAME)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): padding VALID, expected SAME", m->path, oi, opname(kind), role);
    if (op->activation != act)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): fused activation %s, expected %s", m->path, oi,
                       opname(kind), role, act_name(op->activation), act_name(act));
    if (kind == TFL_OP_DEPTHWISE_CONV_2D && op->depth_multiplier != 1)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): depth_multiplier %d, expected 1", m->path, oi,
                       opname(kind), role, op->depth_multiplier);
    const tfl_tensor *x = &m->tensors[op->inputs[0]];
    if (x->ndim == 4 && x->shape[3] != cin)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): input '%s' has %d channels, expected %d", m->path, oi,
                       opname(kind), role, x->name, x->shape[3], cin);
    int wt = op->inputs[1], bt = op->n_in > 2 ? op->inputs[2] : -1;
    if (wt < 0) return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): no weight tensor", m->path, oi, opname(kind), role);
    int want_conv[4] = {cout, k, k, cin}, want_dw[4] = {1, k, k, cout};
    const tfl_tensor *W = &m->tensors[wt];
    if (!shape_is(W, 4, kind == TFL_OP_CONV_2D ? want_conv : want_dw)) {
        char have[64];
        shape_str(W, have, sizeof have);
        const int *e = kind == TFL_OP_CONV_2D ? want_conv : want_dw;
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): weight '%s' has shape %s, expected [%d,%d,%d,%d]", m->path,
                       oi, opname(kind), role, W->name, have, e[0], e[1], e[2], e[3]);
    }
    if (bt >= 0 && !shape_is(&m->tensors[bt], 1, &cout)) {
        char have[64];
        shape_str(&m->tensors[bt], have, sizeof have);
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, %s): bias '%s' has shape %s, expected [%d]", m->path, oi,
                       opname(kind), role, m->tensors[bt].name, have, cout);
    }

    int64_t nw = tfl_tensor_numel(W);
    float *src = alloc_f(nw), *dst = alloc_f(nw), *bias = alloc_f(cout);
    if (!src || !dst || !bias) {
        free(src), free(dst), free(bias);
        return ote_err(OTE_ENOMEM, "import-backbone: cannot allocate %lld weights", (long long)nw);
    }
    int s = tfl_dequantize(m, wt, src, nw);
    if (s == 0 && bt >= 0) s = tfl_dequantize_bias(m, bt, op->inputs[0], wt, bias, cout);
    else if (s == 0) memset(bias, 0, (size_t)cout * sizeof *bias);
    if (s < 0) {
        free(src), free(dst), free(bias);
        return ote_err_context(s, "operators[%d] (%s, %s)", oi, opname(kind), role);
    }
    int64_t shape[4];
    if (kind == TFL_OP_CONV_2D) { /* [O, KH, KW, I] -> [O, I, KH, KW] */
        for (int o = 0; o < cout; o++)
            for (int i = 0; i < cin; i++)
                for (int h = 0; h < k; h++)
                    for (int q = 0; q < k; q++)
                        dst[((o * cin + i) * k + h) * k + q] = src[((o * k + h) * k + q) * cin + i];
        shape[0] = cout, shape[1] = cin, shape[2] = k, shape[3] = k;
    } else { /* [1, KH, KW, C] -> [C, 1, KH, KW] */
        for (int c = 0; c < cout; c++)
            for (int h = 0; h < k; h++)
                for (int q = 0; q < k; q++) dst[(c * k + h) * k + q] = src[(h * k + q) * cout + c];
        shape[0] = cout, shape[1] = 1, shape[2] = k, shape[3] = k;
    }
    free(src);
    char name[128];
    snprintf(name, sizeof name, "%s.conv.weight", prefix);
    s = add_param(w->r, name, 4, shape, dst);
    if (s < 0) {
        free(bias);
        return s;
    }
    CHECK(add_bn(w->r, prefix, cout, bias));
    w->r->n_convs++;
    *out_t = op->outputs[0];
    return 0;
}

/* The operator (after `from`) whose first input is tensor t, or -1. */
static int consumer(const tfl_model *m, int from, int t) {
    for (int i = from; i < m->n_ops; i++)
        if (m->ops[i].n_in > 0 && m->ops[i].inputs[0] == t) return i;
    return -1;
}

static int take_classifier(walk *w, int feat_t) {
    const tfl_model *m = w->m;
    int pi = consumer(m, w->op, feat_t);
    if (pi < 0 || (m->ops[pi].opcode != TFL_OP_AVERAGE_POOL_2D && m->ops[pi].opcode != TFL_OP_MEAN))
        return ote_err(OTE_EPARSE, "%s: --keep-classifier: no AVERAGE_POOL_2D or MEAN consumes the final 1280-channel features",
                       m->path);
    int t = m->ops[pi].outputs[0];
    int ci = consumer(m, pi + 1, t);
    while (ci >= 0 && (m->ops[ci].opcode == TFL_OP_RESHAPE || m->ops[ci].opcode == TFL_OP_SQUEEZE)) {
        t = m->ops[ci].outputs[0];
        ci = consumer(m, ci + 1, t);
    }
    if (ci < 0 || (m->ops[ci].opcode != TFL_OP_CONV_2D && m->ops[ci].opcode != TFL_OP_FULLY_CONNECTED) ||
        m->ops[ci].n_in < 2 || m->ops[ci].inputs[1] < 0)
        return ote_err(OTE_EPARSE, "%s: --keep-classifier: no CONV_2D or FULLY_CONNECTED classifier after the pooling operator %d",
                       m->path, pi);
    const tfl_op *op = &m->ops[ci];
    int wt = op->inputs[1], bt = op->n_in > 2 ? op->inputs[2] : -1;
    const tfl_tensor *W = &m->tensors[wt];
    int K = W->ndim > 0 ? W->shape[0] : 0;
    int want_conv[4] = {K, 1, 1, MBV2_FINAL_CH}, want_fc[2] = {K, MBV2_FINAL_CH};
    int ok = op->opcode == TFL_OP_CONV_2D ? shape_is(W, 4, want_conv) : shape_is(W, 2, want_fc);
    if (!ok || K <= 0 || (bt >= 0 && !shape_is(&m->tensors[bt], 1, &K))) {
        char have[64];
        shape_str(W, have, sizeof have);
        return ote_err(OTE_EPARSE, "%s: operators[%d] (%s, classifier): weight '%s' has shape %s, expected [K,1,1,1280] or [K,1280] with a [K] bias",
                       m->path, ci, opname(op->opcode), W->name, have);
    }
    if (op->activation != TFL_ACT_NONE)
        return ote_err(OTE_EPARSE, "%s: operators[%d] (classifier): fused activation %s, expected NONE", m->path, ci,
                       act_name(op->activation));
    int64_t n = (int64_t)K * MBV2_FINAL_CH;
    float *wd = alloc_f(n), *bd = alloc_f(K);
    if (!wd || !bd) {
        free(wd), free(bd);
        return ote_err(OTE_ENOMEM, "import-backbone: cannot allocate the classifier");
    }
    /* [K,1,1,C] and [K,C] are both row-major (K, C): no permutation needed. */
    int s = tfl_dequantize(m, wt, wd, n);
    if (s == 0 && bt >= 0) s = tfl_dequantize_bias(m, bt, op->inputs[0], wt, bd, K);
    else if (s == 0) memset(bd, 0, (size_t)K * sizeof *bd);
    if (s < 0) {
        free(wd), free(bd);
        return ote_err_context(s, "operators[%d] (classifier)", ci);
    }
    int64_t sw[2] = {K, MBV2_FINAL_CH}, sb[1] = {K};
    s = add_param(w->r, "backbone.output.weight", 2, sw, wd);
    if (s < 0) {
        free(bd);
        return s;
    }
    CHECK(add_param(w->r, "backbone.output.bias", 1, sb, bd));
    w->r->n_classes = K;
    return 0;
}

static int import_all(const tfl_model *m, int keep_classifier, import_backbone_result *r) {
    int nconv = tfl_count_ops(m, TFL_OP_CONV_2D), ndw = tfl_count_ops(m, TFL_OP_DEPTHWISE_CONV_2D),
        nadd = tfl_count_ops(m, TFL_OP_ADD);
    int nfc = tfl_count_ops(m, TFL_OP_FULLY_CONNECTED);
    /* 35 backbone convs, plus one when the classifier is a 1x1 conv rather than an FC. */
    if ((nconv != MBV2_N_CONV && nconv != MBV2_N_CONV + 1) || ndw != MBV2_N_DW || nadd != MBV2_N_ADD || nconv + nfc > MBV2_N_CONV + 1)
        return ote_err(OTE_EPARSE,
                       "%s: not a MobileNetV2 1.0 graph: %d CONV_2D, %d DEPTHWISE_CONV_2D, %d ADD, %d FULLY_CONNECTED "
                       "(expected 35 or 36, 17, 10, and at most one classifier)",
                       m->path, nconv, ndw, nadd, nfc);
    walk w = {m, 0, r};
    int cur = -1, t;
    char prefix[96], role[64];
    CHECK(take_conv(&w, TFL_OP_CONV_2D, 3, 2, 3, 32, TFL_ACT_RELU6, -1, "backbone.features.init_block", "init_block", &cur));
    for (int u = 0; u < 17; u++) {
        int cin = mbv2_units[u].cin, mid = cin * mbv2_units[u].t, cout = mbv2_units[u].cout;
        int S = mbv2_units[u].stage, U = mbv2_units[u].unit;
        int unit_in = cur;
        if (mbv2_units[u].t != 1) {
            snprintf(prefix, sizeof prefix, "backbone.features.stage%d.unit%d.conv1", S, U);
            snprintf(role, sizeof role, "stage%d.unit%d.conv1 expansion", S, U);
            CHECK(take_conv(&w, TFL_OP_CONV_2D, 1, 1, cin, mid, TFL_ACT_RELU6, cur, prefix, role, &cur));
        }
        snprintf(prefix, sizeof prefix, "backbone.features.stage%d.unit%d.conv2", S, U);
        snprintf(role, sizeof role, "stage%d.unit%d.conv2 depthwise", S, U);
        CHECK(take_conv(&w, TFL_OP_DEPTHWISE_CONV_2D, 3, mbv2_units[u].stride, mid, mid, TFL_ACT_RELU6, cur, prefix, role, &cur));
        snprintf(prefix, sizeof prefix, "backbone.features.stage%d.unit%d.conv3", S, U);
        snprintf(role, sizeof role, "stage%d.unit%d.conv3 projection", S, U);
        CHECK(take_conv(&w, TFL_OP_CONV_2D, 1, 1, mid, cout, TFL_ACT_NONE, cur, prefix, role, &cur));
        if (cin == cout && mbv2_units[u].stride == 1) {
            int ai = next_op(&w);
            if (ai < 0 || m->ops[ai].opcode != TFL_OP_ADD)
                return ote_err(OTE_EPARSE, "%s: operators[%d]: found %s where MobileNetV2 has the residual ADD of stage%d.unit%d",
                               m->path, ai, ai < 0 ? "the end of the graph" : opname(m->ops[ai].opcode), S, U);
            const tfl_op *a = &m->ops[ai];
            int ok = a->n_in == 2 && ((a->inputs[0] == unit_in && a->inputs[1] == cur) ||
                                      (a->inputs[0] == cur && a->inputs[1] == unit_in));
            if (!ok)
                return ote_err(OTE_EPARSE, "%s: operators[%d] (ADD, stage%d.unit%d residual): does not add the unit input %d to the projection %d",
                               m->path, ai, S, U, unit_in, cur);
            if (a->activation != TFL_ACT_NONE)
                return ote_err(OTE_EPARSE, "%s: operators[%d] (ADD, stage%d.unit%d residual): fused activation %s, expected NONE",
                               m->path, ai, S, U, act_name(a->activation));
            cur = a->outputs[0];
        }
    }
    /* The final 1x1 320->1280 conv belongs to the classifier part (pytorchcv's final_block, which
     * the detector drops); it is validated in any case, imported only with keep_classifier. */
    import_backbone_result scratch = {0};
    walk w2 = w;
    if (!keep_classifier) w2.r = &scratch;
    int s = take_conv(&w2, TFL_OP_CONV_2D, 1, 1, 320, MBV2_FINAL_CH, TFL_ACT_RELU6, cur, "backbone.features.final_block",
                      "final_block", &t);
    if (!keep_classifier) {
        import_backbone_free(&scratch);
        CHECK(s);
        return 0;
    }
    CHECK(s);
    return take_classifier(&w2, t);
}

int import_backbone_fold_unit_input(import_backbone_result *r) {
    import_backbone_param *w = NULL, *b = NULL;
    for (int i = 0; i < r->n; i++) {
        if (!strcmp(r->p[i].name, "backbone.features.init_block.conv.weight")) w = &r->p[i];
        if (!strcmp(r->p[i].name, "backbone.features.init_block.bn.bias")) b = &r->p[i];
    }
    if (!w || !b || w->ndim != 4 || b->numel != w->shape[0])
        return ote_err(OTE_EINVAL, "import-backbone: fold input: init_block conv/bn parameters missing");
    int64_t per = w->numel / w->shape[0];
    for (int64_t o = 0; o < w->shape[0]; o++) {
        double sum = 0;
        for (int64_t k = 0; k < per; k++) {
            float *v = &w->data[o * per + k];
            sum += (double)*v;
            *v *= 2.0f; /* exact in binary floating point */
        }
        b->data[o] = (float)((double)b->data[o] - sum);
    }
    return 0;
}

int import_backbone_tflite(const tfl_model *m, int keep_classifier, import_backbone_result *out) {
    memset(out, 0, sizeof *out);
    int s = import_all(m, keep_classifier, out);
    if (s < 0) import_backbone_free(out);
    return s;
}

int import_backbone_to_ckpt(const import_backbone_result *r, const char *source, int unit_input, pth_ckpt *out) {
    pth_init(out);
    int s = 0;
    for (int i = 0; s == 0 && i < r->n; i++) {
        const import_backbone_param *p = &r->p[i];
        s = pth_add_f32(out, p->name, p->ndim, p->shape, p->data);
        /* torch's BatchNorm2d state dict ends each BN with num_batches_tracked (int64 scalar) */
        size_t L = strlen(p->name), k = strlen("running_var");
        if (s == 0 && L > k && !strcmp(p->name + L - k, "running_var")) {
            char nm[128];
            snprintf(nm, sizeof nm, "%.*snum_batches_tracked", (int)(L - k), p->name);
            int64_t zero = 0;
            s = pth_add_i64(out, nm, 0, NULL, &zero);
        }
    }
    if (s == 0) s = pth_config_set(out, "import.source", source);
    if (s == 0) s = pth_config_set(out, "import.variant", "torchvision");
    if (s == 0) s = pth_config_set(out, "import.padding", "tf_same");
    if (s == 0) s = pth_config_set(out, "import.input", unit_input ? "rgb_0_to_1" : "rgb_minus1_to_1");
    if (s == 0) s = pth_config_set(out, "import.bn", "identity_plus_bias");
    if (s < 0) pth_free(out);
    return s;
}
