/* detector.c - the MobileNetV2-ATSS detector (spec-detector.md §2-§4, §7, §8a, §11) on the
 * engine layers: parameters, per-shape plans, training forward + losses, backward, SGD, predict.
 *
 * Ownership. The detector owns the layers (weights in one params arena, gradients in one grads
 * arena with the SAME layout, so a parameter's gradient sits at the same offset), the SGD state,
 * the plan cache and ONE activation block shared by every plan (only one plan runs at a time).
 * A plan owns its oneDNN primitives and a registry of its activation tensors with their offsets
 * in the shared block; it is (re)bound to the block before it runs whenever another plan ran in
 * between or the block grew (binding = re-pointing the tensors' data handles; no allocation).
 *
 * Activation block layout of a plan: [saved | fixed | slot 0 | slot 1 | ... ].
 *   saved: forward activations kept for the backward: every conv output (BN / GN input) and
 *          every BN / GN output (ReLU6 / ReLU run in place on it; residual adds in place too);
 *   fixed: head-output gradients (the loss writes all levels at once) and the FPN gradients;
 *   slots: transient activation gradients of the backbone and head towers, each slot sized to
 *          the largest tensor assigned to any slot. Slot assignment is found by running the
 *          backward code in a "simulate" mode that takes/drops slots in the exact order the real
 *          backward uses them (so the two can never disagree).
 * In place: ReLU6 / ReLU forward on the BN / GN output, their backward and BN / GN backward on
 * the incoming gradient, the Scale backward on the loss gradient, residual add into the BN output.
 *
 * Invariants: after a plan exists, det_forward_train / det_backward / det_sgd_step allocate
 * nothing and create no primitive (a batch with more boxes per image than any before grows the
 * assigner workspace once). BN running statistics live in the params arena but are never
 * registered with SGD. Inference (det_predict) runs the backbone on inference twins of its convs:
 * each eval-mode BN (running statistics) folded into weights + bias, ReLU6 as a post-op and the
 * residual add as an in-place sum post-op (the unit output overwrites its input); the fold is
 * redone (reorders, i.e. planning-time work) on the first predict after any parameter or running
 * statistic changed. FPN and head run their training layers with forward_inference primitives.
 * The post-processing (models/postprocess.c) allocates its own scratch per image.
 */
#include "models/detector.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/add.h"
#include "engine/arena.h"
#include "engine/bn.h"
#include "engine/bnrelu.h"
#include "engine/conv.h"
#include "engine/eltwise.h"
#include "engine/groupnorm.h"
#include "engine/rng.h"
#include "engine/scale.h"
#include "engine/sgd.h"
#include "engine/status.h"
#include "engine/tensor.h"
#include "engine/upsample.h"
#include "models/assigner.h"
#include "models/losses.h"
#include "models/postprocess.h"

#define DET_UNITS 17
#define DET_MAX_SLOTS 6
#define DET_MAX_PARAMS 400
#define DET_FPN_CH 64
#define DET_TOPK 9
#define DET_CLS_BIAS (-4.59511985013459) /* -log((1 - 0.01) / 0.01), mmdet bias_init_with_prob */

/* ------------------------------------------------------------------------------------------ */
/* Layers */

typedef struct det_cbr {  /* conv (no bias) + BN (+ ReLU6) */
    conv_layer conv;
    bn_layer bn;
    conv_layer iconv; /* inference twin: BN folded into weights + bias, ReLU6 / residual sum as
                       * post-ops (iparams arena), refolded before predict when weights changed */
    int relu6;
    int present;
} det_cbr;

typedef struct det_unit { /* LinearBottleneck: c[0] 1x1 expand (maybe absent), c[1] dw, c[2] 1x1 linear */
    det_cbr c[3];
    int cin, mid, cout, stride, residual;
} det_unit;

typedef enum { PK_CONVW, PK_VEC, PK_NBT } det_pkind;

typedef struct det_pentry {
    det_param_info info;
    char name[96];
    det_pkind kind;
    conv_layer *conv; /* PK_CONVW */
    tensor *t, *g;    /* PK_VEC: the param and its gradient (g NULL for running stats) */
} det_pentry;

/* ------------------------------------------------------------------------------------------ */
/* Plans */

enum { REG_SAVED = 0, REG_FIXED = 1, REG_SLOT = 2 };

typedef struct det_treg {
    tensor *t;
    int region, slot;
    size_t off; /* within the region (saved / fixed) */
} det_treg;

typedef struct cbr_plan {
    tensor yc;  /* (N, OC, OH, OW) conv output: BN input (saved); inference: BN + ReLU6 in place */
    tensor yb;  /* (N, OC, OH, OW) BN output, ReLU6 in place (saved, training only) */
    tensor g;   /* (N, OC, OH, OW) gradient of the block output; ReLU6/BN backward in place */
    tensor gb;  /* (N, OC, OH, OW) BN input gradient when BN backward is out of place (residual) */
    const tensor *out;
    conv_plan cp;
    bn_plan bp;      /* cfg.bn_onednn: oneDNN BN, then ReLU6 (ep) in place */
    eltwise_plan ep;
    bnr_plan rp;     /* default: fused BN(+ReLU6) */
    int fused;       /* 1: rp is used instead of bp + ep */
    int gb_used;
} cbr_plan;

typedef struct unit_plan {
    cbr_plan c[3];
    add_plan ap;
    const tensor *in;  /* unit input (previous output) */
    tensor *gin;       /* gradient of the unit input (previous unit's output gradient), NULL for unit 0's image */
} unit_plan;

typedef struct lvl_plan {
    tensor cc[4], cg[4], rc[4], rg[4]; /* tower conv outputs / GN outputs (ReLU in place), saved */
    tensor cls, reg_raw, reg, ctr;     /* head outputs, saved */
    tensor gc[4], gr[4];               /* tower gradients (slots) */
    tensor gr2, gpx;                   /* centerness input gradient, reg-tower input gradient (slots) */
    tensor dcls, dreg, dctr;           /* loss gradients (fixed) */
    conv_plan pcc[4], prc[4], pcls, preg, pctr;
    gn_plan pgc[4], pgr[4];
    eltwise_plan pec[4], per[4];
    scale_plan ps;
} lvl_plan;

typedef struct det_plan {
    int n, h, w, training;
    struct det_plan *next;
    det_treg *regs;
    int n_regs, cap_regs;
    size_t saved_bytes, fixed_bytes, slot_bytes;
    int n_slots;
    size_t total_bytes;
    unsigned long gen; /* block generation the plan is bound to (0 = never) */
    double flops;
    /* backbone */
    tensor x;          /* (N, 3, H, W) plain NCHW input (saved) */
    cbr_plan init;
    unit_plan u[DET_UNITS];
    /* FPN */
    tensor l3, l4, l5, p[5], rp6; /* saved */
    tensor dp[5], t6, t5, dl3, dl4, dl5, dc3, dc4; /* fixed gradients */
    conv_plan plat[3], pfpn[5];
    upsample_plan pu4, pu3;
    eltwise_plan prelu;
    /* head */
    lvl_plan lv[5];
    /* targets */
    anchor_grid grid;
    float *anchors;          /* (total, 4) */
    unsigned char *valid;    /* (N, total) */
    int *assigned, *labels;  /* (N, total) */
} det_plan;

struct detector {
    eng_ctx *e;
    det_cfg cfg;
    arena params, grads;
    arena iparams;   /* folded inference weights of the backbone */
    unsigned long params_gen, folded_gen; /* folded_gen == params_gen: the folded copy is current */
    sgd opt;
    det_cbr init;
    det_unit u[DET_UNITS];
    conv_layer lat[3], fpn[5];
    conv_layer cls_conv[4], reg_conv[4], atss_cls, atss_reg, atss_ctr;
    gn_layer cls_gn[4], reg_gn[4];
    scale_layer scales[5];
    eltwise_layer relu6, relu;
    long nbt; /* num_batches_tracked (shared by every BN: they all step together) */
    det_pentry *pe;
    int n_pe;
    det_plan *plans;
    det_plan *last;  /* plan that ran last */
    char *block;     /* shared activation block */
    size_t block_cap;
    unsigned long block_gen;
    det_plan *bound;
    void *ws;        /* assigner workspace */
    size_t ws_bytes;
    int ws_max_gts;
    detection *dets;
    int dets_cap;
    int have_grads;  /* the last forward_train wrote head gradients */
};

/* ------------------------------------------------------------------------------------------ */
/* Architecture tables (spec §2a): per unit (cin, cout, stride, expand) */

static const int UNIT_COUT[DET_UNITS] = {16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320};
static const int UNIT_STAGE[DET_UNITS] = {1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5};
/* taps: C3 after unit 5, C4 after unit 12, C5 after unit 16 (C2 after unit 2 is unused) */
#define DET_TAP_C3 5
#define DET_TAP_C4 12
#define DET_TAP_C5 16

/* ------------------------------------------------------------------------------------------ */
/* Parameter registry */

/* snprintf that must not truncate (names are short; a longer one is a programming error) */
#define NAMEF(buf, ...) ASSERT(snprintf(buf, sizeof buf, __VA_ARGS__) < (int)sizeof buf)

static det_pentry *pe_add(detector *d, det_pkind kind, const char *name) {
    ASSERT(d->n_pe < DET_MAX_PARAMS);
    det_pentry *p = &d->pe[d->n_pe++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->info.name = p->name;
    p->kind = kind;
    return p;
}

static void pe_conv(detector *d, const char *prefix, conv_layer *l) {
    char nm[256];
    NAMEF(nm, "%s.weight", prefix);
    det_pentry *p = pe_add(d, PK_CONVW, nm);
    p->conv = l;
    int g = l->cfg.groups ? l->cfg.groups : 1;
    p->info.ndim = 4;
    p->info.shape[0] = l->cfg.oc, p->info.shape[1] = l->cfg.ic / g;
    p->info.shape[2] = l->cfg.kh, p->info.shape[3] = l->cfg.kw;
    if (l->cfg.bias) {
        NAMEF(nm, "%s.bias", prefix);
        p = pe_add(d, PK_VEC, nm);
        p->t = &l->b, p->g = &l->db;
        p->info.ndim = 1, p->info.shape[0] = l->cfg.oc;
    }
}

static void pe_vec(detector *d, const char *prefix, const char *suffix, tensor *t, tensor *g, int n, int ndim) {
    char nm[256];
    NAMEF(nm, "%s.%s", prefix, suffix);
    det_pentry *p = pe_add(d, PK_VEC, nm);
    p->t = t, p->g = g;
    p->info.ndim = ndim;
    p->info.shape[0] = n;
    p->info.is_buffer = g == NULL;
}

static void pe_bn(detector *d, const char *prefix, bn_layer *b) {
    pe_vec(d, prefix, "weight", &b->gamma, &b->dgamma, b->cfg.c, 1);
    pe_vec(d, prefix, "bias", &b->beta, &b->dbeta, b->cfg.c, 1);
    pe_vec(d, prefix, "running_mean", &b->run_mean, NULL, b->cfg.c, 1);
    pe_vec(d, prefix, "running_var", &b->run_var, NULL, b->cfg.c, 1);
    char nm[256];
    NAMEF(nm, "%s.num_batches_tracked", prefix);
    det_pentry *p = pe_add(d, PK_NBT, nm);
    p->info.ndim = 0;
    p->info.is_buffer = 1;
    p->info.is_int64 = 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Creation */

static conv_cfg mk_conv(int ic, int oc, int k, int stride, int groups, int bias, int tf_pad) {
    conv_cfg c;
    memset(&c, 0, sizeof c);
    c.ic = ic, c.oc = oc, c.kh = c.kw = k, c.stride_h = c.stride_w = stride, c.groups = groups, c.bias = bias;
    int p = k / 2;
    c.pad_t = c.pad_l = c.pad_b = c.pad_r = p;
    if (tf_pad && stride == 2 && k == 3) {
        /* TF "SAME" on even inputs: all padding after (onednn: t=l=0, b=r=1) */
        c.pad_t = c.pad_l = 0;
        c.pad_b = c.pad_r = 1;
    }
    return c;
}

static int cbr_init(detector *d, det_cbr *b, const char *prefix, int ic, int oc, int k, int stride, int groups,
                    int relu6) {
    conv_cfg c = mk_conv(ic, oc, k, stride, groups, 0, d->cfg.tf_padding);
    if (prefix && strstr(prefix, "init_block")) c.src_nchw = 1;
    CHECK(conv_layer_init(&b->conv, d->e, &c, &d->params, &d->grads));
    bn_cfg bc = bn_cfg_default(oc);
    int s = bn_layer_init(&b->bn, d->e, &bc, &d->params, &d->grads);
    if (s < 0) {
        conv_layer_free(&b->conv);
        return s;
    }
    b->relu6 = relu6;
    b->present = 1;
    return OTE_OK;
}

/* The inference twin of a conv+BN(+ReLU6) block; post_sum: the residual add is fused as a sum. */
static int cbr_init_infer(detector *d, det_cbr *b, int post_sum) {
    conv_cfg c = b->conv.cfg;
    c.bias = 1;
    c.post_eltwise = b->relu6 ? CONV_POST_RELU6 : CONV_POST_NONE;
    c.post_sum = post_sum;
    return conv_layer_init(&b->iconv, d->e, &c, &d->iparams, NULL);
}

static int cbr_names(detector *d, det_cbr *b, const char *prefix) {
    char nm[256];
    NAMEF(nm, "%s.conv", prefix);
    pe_conv(d, nm, &b->conv);
    NAMEF(nm, "%s.bn", prefix);
    pe_bn(d, nm, &b->bn);
    return OTE_OK;
}

static int cbr_init_all(detector *d, det_cbr *b, const char *prefix, int ic, int oc, int k, int stride, int groups,
                        int relu6, int post_sum) {
    CHECK(cbr_init(d, b, prefix, ic, oc, k, stride, groups, relu6));
    CHECK(cbr_names(d, b, prefix));
    return cbr_init_infer(d, b, post_sum);
}

static void fill_conv(conv_layer *l, rng *r, int mode, float *buf) {
    /* mode 0 kaiming-uniform fan_in (pytorchcv), 1 kaiming-normal fan_out (torchvision),
     * 2 xavier-uniform (FPN), 3 N(0, 0.01) (head) */
    const conv_cfg *c = &l->cfg;
    int g = c->groups ? c->groups : 1;
    size_t n = (size_t)c->oc * (c->ic / g) * c->kh * c->kw;
    double fan_in = (double)(c->ic / g) * c->kh * c->kw, fan_out = (double)c->oc * c->kh * c->kw;
    for (size_t i = 0; i < n; i++) {
        double v;
        if (mode == 0) {
            double b = sqrt(6.0 / fan_in);
            v = -b + 2 * b * rng_uniform(r);
        } else if (mode == 1) {
            v = sqrt(2.0 / fan_out) * rng_normal(r);
        } else if (mode == 2) {
            double b = sqrt(6.0 / (fan_in + fan_out));
            v = -b + 2 * b * rng_uniform(r);
        } else {
            v = 0.01 * rng_normal(r);
        }
        buf[i] = (float)v;
    }
}

static int init_params(detector *d) {
    rng r;
    rng_seed(&r, d->cfg.seed);
    float *buf = malloc((size_t)960 * 320 * 9 * sizeof *buf + 64);
    if (!buf) return ote_err(OTE_ENOMEM, "detector: cannot allocate the init buffer");
    int bb = d->cfg.backbone == DET_BACKBONE_TORCHVISION ? 1 : 0;
    int s = OTE_OK;
    det_cbr *all[1 + 3 * DET_UNITS];
    int na = 0;
    all[na++] = &d->init;
    for (int u = 0; u < DET_UNITS; u++)
        for (int k = 0; k < 3; k++)
            if (d->u[u].c[k].present) all[na++] = &d->u[u].c[k];
    for (int i = 0; i < na && s == OTE_OK; i++) {
        fill_conv(&all[i]->conv, &r, bb, buf);
        s = conv_weights_from_oihw(&all[i]->conv, d->e, buf);
        bn_reset_params(&all[i]->bn);
    }
    for (int i = 0; i < 3 && s == OTE_OK; i++) {
        fill_conv(&d->lat[i], &r, 2, buf);
        s = conv_weights_from_oihw(&d->lat[i], d->e, buf);
        memset(d->lat[i].b.data, 0, sizeof(float) * (size_t)d->lat[i].cfg.oc);
    }
    for (int i = 0; i < 5 && s == OTE_OK; i++) {
        fill_conv(&d->fpn[i], &r, 2, buf);
        s = conv_weights_from_oihw(&d->fpn[i], d->e, buf);
        memset(d->fpn[i].b.data, 0, sizeof(float) * (size_t)d->fpn[i].cfg.oc);
    }
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4 && s == OTE_OK; i++) {
            conv_layer *l = t ? &d->reg_conv[i] : &d->cls_conv[i];
            fill_conv(l, &r, 3, buf);
            s = conv_weights_from_oihw(l, d->e, buf);
            gn_layer_reset_params(t ? &d->reg_gn[i] : &d->cls_gn[i]);
        }
    conv_layer *outs[3] = {&d->atss_cls, &d->atss_reg, &d->atss_ctr};
    for (int i = 0; i < 3 && s == OTE_OK; i++) {
        fill_conv(outs[i], &r, 3, buf);
        s = conv_weights_from_oihw(outs[i], d->e, buf);
        for (int c = 0; c < outs[i]->cfg.oc; c++) outs[i]->b.data[c] = i == 0 ? (float)DET_CLS_BIAS : 0.0f;
    }
    for (int i = 0; i < 5; i++) scale_layer_reset_params(&d->scales[i], 1.0f);
    free(buf);
    return s;
}

static int sgd_register(detector *d) {
    for (int i = 0; i < d->n_pe; i++) {
        det_pentry *p = &d->pe[i];
        if (p->kind == PK_CONVW) {
            CHECK(sgd_add(&d->opt, &p->conv->w, &p->conv->dw));
        } else if (p->kind == PK_VEC && p->g) {
            CHECK(sgd_add(&d->opt, p->t, p->g));
        }
    }
    return OTE_OK;
}

static void det_free_layers(detector *d) {
    if (d->init.present) conv_layer_free(&d->init.conv), bn_layer_free(&d->init.bn), conv_layer_free(&d->init.iconv);
    for (int u = 0; u < DET_UNITS; u++)
        for (int k = 0; k < 3; k++)
            if (d->u[u].c[k].present) {
                det_cbr *b = &d->u[u].c[k];
                conv_layer_free(&b->conv), bn_layer_free(&b->bn), conv_layer_free(&b->iconv);
            }
    for (int i = 0; i < 3; i++) conv_layer_free(&d->lat[i]);
    for (int i = 0; i < 5; i++) conv_layer_free(&d->fpn[i]);
    for (int i = 0; i < 4; i++) {
        conv_layer_free(&d->cls_conv[i]), conv_layer_free(&d->reg_conv[i]);
        gn_layer_free(&d->cls_gn[i]), gn_layer_free(&d->reg_gn[i]);
    }
    conv_layer_free(&d->atss_cls), conv_layer_free(&d->atss_reg), conv_layer_free(&d->atss_ctr);
    for (int i = 0; i < 5; i++) scale_layer_free(&d->scales[i]);
}

static int det_build(detector *d) {
    char nm[256];
    CHECK(eltwise_layer_init(&d->relu6, d->e, &(eltwise_cfg){ELTWISE_RELU6}, NULL, NULL));
    CHECK(eltwise_layer_init(&d->relu, d->e, &(eltwise_cfg){ELTWISE_RELU}, NULL, NULL));
    CHECK(cbr_init_all(d, &d->init, "backbone.features.init_block", 3, 32, 3, 2, 1, 1, 0));
    int cin = 32;
    for (int u = 0; u < DET_UNITS; u++) {
        det_unit *U = &d->u[u];
        int stage = UNIT_STAGE[u];
        int idx = 1;
        for (int v = u - 1; v >= 0 && UNIT_STAGE[v] == stage; v--) idx++;
        int stride = (idx == 1 && stage > 1) ? 2 : 1;
        int expand = u != 0;
        U->cin = cin, U->cout = UNIT_COUT[u], U->stride = stride;
        U->mid = expand ? 6 * cin : cin;
        U->residual = cin == U->cout && stride == 1;
        int has_c1 = expand || d->cfg.backbone == DET_BACKBONE_PYTORCHCV;
        char pre[64];
        NAMEF(pre, "backbone.features.stage%d.unit%d", stage, idx);
        if (has_c1) {
            NAMEF(nm, "%s.conv1", pre);
            CHECK(cbr_init_all(d, &U->c[0], nm, cin, U->mid, 1, 1, 1, 1, 0));
        }
        NAMEF(nm, "%s.conv2", pre);
        CHECK(cbr_init_all(d, &U->c[1], nm, U->mid, U->mid, 3, stride, U->mid, 1, 0));
        NAMEF(nm, "%s.conv3", pre);
        CHECK(cbr_init_all(d, &U->c[2], nm, U->mid, U->cout, 1, 1, 1, 0, U->residual));
        cin = U->cout;
    }
    static const int lat_in[3] = {32, 96, 320};
    for (int i = 0; i < 3; i++) {
        conv_cfg c = mk_conv(lat_in[i], DET_FPN_CH, 1, 1, 1, 1, 0);
        CHECK(conv_layer_init(&d->lat[i], d->e, &c, &d->params, &d->grads));
        NAMEF(nm, "neck.lateral_convs.%d.conv", i);
        pe_conv(d, nm, &d->lat[i]);
    }
    for (int i = 0; i < 5; i++) {
        conv_cfg c = mk_conv(DET_FPN_CH, DET_FPN_CH, 3, i >= 3 ? 2 : 1, 1, 1, 0);
        CHECK(conv_layer_init(&d->fpn[i], d->e, &c, &d->params, &d->grads));
        NAMEF(nm, "neck.fpn_convs.%d.conv", i);
        pe_conv(d, nm, &d->fpn[i]);
    }
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4; i++) {
            conv_layer *l = t ? &d->reg_conv[i] : &d->cls_conv[i];
            gn_layer *g = t ? &d->reg_gn[i] : &d->cls_gn[i];
            conv_cfg c = mk_conv(DET_FPN_CH, DET_FPN_CH, 3, 1, 1, 0, 0);
            CHECK(conv_layer_init(l, d->e, &c, &d->params, &d->grads));
            NAMEF(nm, "bbox_head.%s_convs.%d.conv", t ? "reg" : "cls", i);
            pe_conv(d, nm, l);
            gn_cfg gc = {DET_FPN_CH, 32, 1e-5f};
            CHECK(gn_layer_init(g, d->e, &gc, &d->params, &d->grads));
            NAMEF(nm, "bbox_head.%s_convs.%d.gn", t ? "reg" : "cls", i);
            pe_vec(d, nm, "weight", &g->gamma, &g->dgamma, DET_FPN_CH, 1);
            pe_vec(d, nm, "bias", &g->beta, &g->dbeta, DET_FPN_CH, 1);
        }
    conv_cfg cc = mk_conv(DET_FPN_CH, d->cfg.num_classes, 3, 1, 1, 1, 0);
    CHECK(conv_layer_init(&d->atss_cls, d->e, &cc, &d->params, &d->grads));
    pe_conv(d, "bbox_head.atss_cls", &d->atss_cls);
    conv_cfg cr = mk_conv(DET_FPN_CH, 4, 3, 1, 1, 1, 0);
    CHECK(conv_layer_init(&d->atss_reg, d->e, &cr, &d->params, &d->grads));
    pe_conv(d, "bbox_head.atss_reg", &d->atss_reg);
    conv_cfg cz = mk_conv(DET_FPN_CH, 1, 3, 1, 1, 1, 0);
    CHECK(conv_layer_init(&d->atss_ctr, d->e, &cz, &d->params, &d->grads));
    pe_conv(d, "bbox_head.atss_centerness", &d->atss_ctr);
    for (int i = 0; i < 5; i++) {
        CHECK(scale_layer_init(&d->scales[i], d->e, &d->params, &d->grads));
        NAMEF(nm, "bbox_head.scales.%d", i);
        pe_vec(d, nm, "scale", &d->scales[i].s, &d->scales[i].ds, 1, 0);
    }
    CHECK(sgd_register(d));
    CHECK(arena_commit(&d->params));
    CHECK(arena_commit(&d->grads));
    CHECK(arena_commit(&d->iparams));
    CHECK(sgd_commit(&d->opt));
    return init_params(d);
}

int det_create(detector **out, eng_ctx *e, const det_cfg *cfg) {
    *out = NULL;
    if (!cfg || cfg->num_classes < 1)
        return ote_err(OTE_EINVAL, "detector: num_classes: %d (must be >= 1)", cfg ? cfg->num_classes : 0);
    if (cfg->backbone != DET_BACKBONE_PYTORCHCV && cfg->backbone != DET_BACKBONE_TORCHVISION)
        return ote_err(OTE_EINVAL, "detector: backbone: %d (unknown)", (int)cfg->backbone);
    detector *d = calloc(1, sizeof *d);
    if (!d) return ote_err(OTE_ENOMEM, "detector: cannot allocate");
    d->pe = calloc(DET_MAX_PARAMS, sizeof *d->pe);
    if (!d->pe) {
        free(d);
        return ote_err(OTE_ENOMEM, "detector: cannot allocate the parameter table");
    }
    d->e = e;
    d->cfg = *cfg;
    arena_init(&d->params, "params");
    arena_init(&d->grads, "grads");
    arena_init(&d->iparams, "folded inference params");
    /* OTE / mmdet SGD defaults (spec §9); det_set_optimizer changes them */
    sgd_init(&d->opt, 0.9f, 1e-4f, &d->params, &d->grads);
    int s = det_build(d);
    d->params_gen = 1; /* the folded inference weights are derived before the first predict */
    if (s < 0) {
        det_free(d);
        return s;
    }
    *out = d;
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Plan helpers */

static int reg_add(det_plan *p, tensor *t, int region) {
    if (p->n_regs == p->cap_regs) {
        int cap = p->cap_regs ? 2 * p->cap_regs : 256;
        det_treg *r = realloc(p->regs, (size_t)cap * sizeof *r);
        if (!r) return ote_err(OTE_ENOMEM, "detector plan: cannot grow the tensor registry");
        p->regs = r;
        p->cap_regs = cap;
    }
    det_treg *r = &p->regs[p->n_regs++];
    r->t = t, r->region = region, r->slot = -1;
    r->off = 0;
    if (region == REG_SAVED) {
        r->off = p->saved_bytes;
        p->saved_bytes += (t->bytes + 63) / 64 * 64;
    } else if (region == REG_FIXED) {
        r->off = p->fixed_bytes;
        p->fixed_bytes += (t->bytes + 63) / 64 * 64;
    }
    return OTE_OK;
}

static int act(det_plan *p, eng_ctx *e, tensor *t, int n, int c, int h, int w, int region) {
    CHECK(tensor_plan_act(e, t, n, c, h, w, NULL));
    return reg_add(p, t, region);
}

static void add_conv_flops(det_plan *p, const conv_layer *l, const tensor *y, int has_dx) {
    const conv_cfg *c = &l->cfg;
    int g = c->groups ? c->groups : 1;
    double macs = (double)y->n * y->h * y->w * c->oc * (double)(c->ic / g) * c->kh * c->kw;
    p->flops += 2 * macs * (p->training ? (2 + (has_dx ? 1 : 0)) : 1);
}

static int conv_pl(det_plan *p, eng_ctx *e, conv_plan *cp, conv_layer *l, const tensor *x, tensor *y, const tensor *dy,
                   tensor *dx) {
    CHECK(conv_plan_init(cp, e, l, x, y, p->training ? dy : NULL, p->training ? dx : NULL, p->training));
    add_conv_flops(p, l, y, p->training && dx != NULL);
    return OTE_OK;
}

/* Slot simulation: NULL = really run. */
typedef struct slotsim {
    det_plan *p;
    const tensor *owner[DET_MAX_SLOTS];
    int err;
} slotsim;

static det_treg *reg_find(det_plan *p, const tensor *t) {
    for (int i = 0; i < p->n_regs; i++)
        if (p->regs[i].t == t) return &p->regs[i];
    return NULL;
}

static void sl_take(slotsim *s, tensor *t) {
    if (!s) return;
    det_treg *r = reg_find(s->p, t);
    ASSERT(r && r->region == REG_SLOT);
    for (int k = 0; k < DET_MAX_SLOTS; k++)
        if (!s->owner[k]) {
            s->owner[k] = t;
            ASSERT(r->slot < 0 || r->slot == k); /* each tensor is taken once per backward */
            r->slot = k;
            if (k + 1 > s->p->n_slots) s->p->n_slots = k + 1;
            if (t->bytes > s->p->slot_bytes) s->p->slot_bytes = (t->bytes + 63) / 64 * 64;
            return;
        }
    s->err = 1;
}

static void sl_drop(slotsim *s, const tensor *t) {
    if (!s) return;
    for (int k = 0; k < DET_MAX_SLOTS; k++)
        if (s->owner[k] == t) {
            s->owner[k] = NULL;
            return;
        }
    s->err = 1;
}

#define RUN(x)                  \
    do {                        \
        if (!s) CHECK(x);       \
    } while (0)
#define RUNV(x)                 \
    do {                        \
        if (!s) x;              \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Plan building */

/* conv + BN (+ ReLU6) block. gin: gradient tensor of x (NULL: none). gb_out: BN backward out of
 * place into c->gb (residual conv3, whose output gradient also feeds the skip). */
static int cbr_plan_init(det_plan *p, detector *d, cbr_plan *c, det_cbr *b, const tensor *x, tensor *gin,
                         int gb_out, int g_region, tensor *sum_dst) {
    eng_ctx *e = d->e;
    int N = p->n;
    int oh = conv_out_size(x->h, b->conv.cfg.kh, b->conv.cfg.stride_h, b->conv.cfg.pad_t, b->conv.cfg.pad_b);
    int ow = conv_out_size(x->w, b->conv.cfg.kw, b->conv.cfg.stride_w, b->conv.cfg.pad_l, b->conv.cfg.pad_r);
    int oc = b->conv.cfg.oc;
    if (!p->training) {
        /* folded conv: BN in the weights, ReLU6 / residual sum as post-ops (sum_dst holds the
         * unit input, which the unit output overwrites in place) */
        if (sum_dst) {
            CHECK(conv_pl(p, e, &c->cp, &b->iconv, x, sum_dst, NULL, NULL));
            c->out = sum_dst;
        } else {
            CHECK(act(p, e, &c->yc, N, oc, oh, ow, REG_SAVED));
            CHECK(conv_pl(p, e, &c->cp, &b->iconv, x, &c->yc, NULL, NULL));
            c->out = &c->yc;
        }
        return OTE_OK;
    }
    CHECK(act(p, e, &c->yc, N, oc, oh, ow, REG_SAVED));
    CHECK(act(p, e, &c->yb, N, oc, oh, ow, REG_SAVED));
    CHECK(act(p, e, &c->g, N, oc, oh, ow, g_region));
    tensor *gconv = &c->g;
    if (gb_out) {
        CHECK(act(p, e, &c->gb, N, oc, oh, ow, REG_SLOT));
        c->gb_used = 1;
        gconv = &c->gb;
    }
    CHECK(conv_pl(p, e, &c->cp, &b->conv, x, &c->yc, gconv, gin));
    if (!d->cfg.bn_onednn) {
        CHECK(bnr_plan_init(&c->rp, e, &b->bn, &c->yc, &c->yb, &c->g, gconv, b->relu6));
        c->fused = 1;
    } else {
        CHECK(bn_plan_init(&c->bp, e, &b->bn, &c->yc, &c->yb, &c->g, gconv, 1));
        if (b->relu6) CHECK(eltwise_plan_init(&c->ep, e, &d->relu6, &c->yb, &c->yb, &c->g, &c->g, 1));
    }
    c->out = &c->yb;
    return OTE_OK;
}

static void cbr_plan_free(cbr_plan *c, const det_cbr *b) {
    if (!b->present) return;
    conv_plan_free(&c->cp);
    bn_plan_free(&c->bp);
    eltwise_plan_free(&c->ep);
    if (c->fused) bnr_plan_free(&c->rp);
}

static int plan_backbone(det_plan *p, detector *d) {
    eng_ctx *e = d->e;
    CHECK(tensor_plan_plain(e, &p->x, TL_NCHW, p->n, 3, p->h, p->w, NULL));
    CHECK(reg_add(p, &p->x, REG_SAVED));
    CHECK(cbr_plan_init(p, d, &p->init, &d->init, &p->x, NULL, 0, REG_SLOT, NULL));
    const tensor *x = p->init.out;
    tensor *gx = p->training ? &p->init.g : NULL;
    for (int u = 0; u < DET_UNITS; u++) {
        det_unit *U = &d->u[u];
        unit_plan *P = &p->u[u];
        P->in = x, P->gin = gx;
        /* gradients are planned by cbr_plan_init; the conv input gradient of block k is the
         * output gradient of block k-1, so plan in forward order and pass the previous g */
        const tensor *bx = x;
        tensor *bg = gx;
        for (int k = 0; k < 3; k++) {
            if (!U->c[k].present) continue;
            int region = (k == 2 && u == DET_TAP_C5) ? REG_FIXED : REG_SLOT;
            tensor *sum_dst = (!p->training && k == 2 && U->residual) ? (tensor *)x : NULL;
            CHECK(cbr_plan_init(p, d, &P->c[k], &U->c[k], bx, bg, k == 2 && U->residual, region, sum_dst));
            bx = P->c[k].out;
            bg = p->training ? &P->c[k].g : NULL;
        }
        if (U->residual && p->training) {
            tensor *y = (tensor *)P->c[2].out;
            CHECK(add_plan_init(&P->ap, e, y, x, y));
        }
        x = P->c[2].out;
        gx = p->training ? &P->c[2].g : NULL;
    }
    return OTE_OK;
}

static int plan_fpn(det_plan *p, detector *d) {
    eng_ctx *e = d->e;
    int N = p->n, tr = p->training;
    const tensor *c3 = p->u[DET_TAP_C3].c[2].out, *c4 = p->u[DET_TAP_C4].c[2].out, *c5 = p->u[DET_TAP_C5].c[2].out;
    CHECK(act(p, e, &p->l3, N, DET_FPN_CH, c3->h, c3->w, REG_SAVED));
    CHECK(act(p, e, &p->l4, N, DET_FPN_CH, c4->h, c4->w, REG_SAVED));
    CHECK(act(p, e, &p->l5, N, DET_FPN_CH, c5->h, c5->w, REG_SAVED));
    int ph[5], pw[5];
    ph[0] = c3->h, pw[0] = c3->w, ph[1] = c4->h, pw[1] = c4->w, ph[2] = c5->h, pw[2] = c5->w;
    for (int l = 3; l < 5; l++) ph[l] = conv_out_size(ph[l - 1], 3, 2, 1, 1), pw[l] = conv_out_size(pw[l - 1], 3, 2, 1, 1);
    for (int l = 0; l < 5; l++) CHECK(act(p, e, &p->p[l], N, DET_FPN_CH, ph[l], pw[l], REG_SAVED));
    CHECK(act(p, e, &p->rp6, N, DET_FPN_CH, ph[3], pw[3], REG_SAVED));
    if (tr) {
        for (int l = 0; l < 5; l++) CHECK(act(p, e, &p->dp[l], N, DET_FPN_CH, ph[l], pw[l], REG_FIXED));
        CHECK(act(p, e, &p->t6, N, DET_FPN_CH, ph[3], pw[3], REG_FIXED));
        CHECK(act(p, e, &p->t5, N, DET_FPN_CH, ph[2], pw[2], REG_FIXED));
        CHECK(act(p, e, &p->dl3, N, DET_FPN_CH, c3->h, c3->w, REG_FIXED));
        CHECK(act(p, e, &p->dl4, N, DET_FPN_CH, c4->h, c4->w, REG_FIXED));
        CHECK(act(p, e, &p->dl5, N, DET_FPN_CH, c5->h, c5->w, REG_FIXED));
        CHECK(act(p, e, &p->dc3, N, c3->c, c3->h, c3->w, REG_FIXED));
        CHECK(act(p, e, &p->dc4, N, c4->c, c4->h, c4->w, REG_FIXED));
    }
    tensor *dc5 = tr ? &p->u[DET_TAP_C5].c[2].g : NULL;
    CHECK(conv_pl(p, e, &p->plat[0], &d->lat[0], c3, &p->l3, &p->dl3, &p->dc3));
    CHECK(conv_pl(p, e, &p->plat[1], &d->lat[1], c4, &p->l4, &p->dl4, &p->dc4));
    CHECK(conv_pl(p, e, &p->plat[2], &d->lat[2], c5, &p->l5, &p->dl5, dc5));
    CHECK(upsample_plan_init(&p->pu4, e, &p->l5, &p->l4, tr ? &p->dl4 : NULL, tr ? &p->dl5 : NULL, tr));
    CHECK(upsample_plan_init(&p->pu3, e, &p->l4, &p->l3, tr ? &p->dl3 : NULL, tr ? &p->dl4 : NULL, tr));
    CHECK(conv_pl(p, e, &p->pfpn[0], &d->fpn[0], &p->l3, &p->p[0], &p->dp[0], &p->dl3));
    CHECK(conv_pl(p, e, &p->pfpn[1], &d->fpn[1], &p->l4, &p->p[1], &p->dp[1], &p->dl4));
    CHECK(conv_pl(p, e, &p->pfpn[2], &d->fpn[2], &p->l5, &p->p[2], &p->dp[2], &p->dl5));
    CHECK(conv_pl(p, e, &p->pfpn[3], &d->fpn[3], &p->p[2], &p->p[3], &p->dp[3], &p->t5));
    CHECK(eltwise_plan_init(&p->prelu, e, &d->relu, &p->p[3], &p->rp6, tr ? &p->t6 : NULL, tr ? &p->t6 : NULL, tr));
    CHECK(conv_pl(p, e, &p->pfpn[4], &d->fpn[4], &p->rp6, &p->p[4], &p->dp[4], &p->t6));
    return OTE_OK;
}

static int plan_head(det_plan *p, detector *d) {
    eng_ctx *e = d->e;
    int N = p->n, tr = p->training, C = d->cfg.num_classes;
    for (int l = 0; l < 5; l++) {
        lvl_plan *L = &p->lv[l];
        const tensor *P = &p->p[l];
        int h = P->h, w = P->w;
        for (int k = 0; k < 4; k++) {
            CHECK(act(p, e, &L->cc[k], N, DET_FPN_CH, h, w, REG_SAVED));
            CHECK(act(p, e, &L->cg[k], N, DET_FPN_CH, h, w, REG_SAVED));
            CHECK(act(p, e, &L->rc[k], N, DET_FPN_CH, h, w, REG_SAVED));
            CHECK(act(p, e, &L->rg[k], N, DET_FPN_CH, h, w, REG_SAVED));
            if (tr) {
                CHECK(act(p, e, &L->gc[k], N, DET_FPN_CH, h, w, REG_SLOT));
                CHECK(act(p, e, &L->gr[k], N, DET_FPN_CH, h, w, REG_SLOT));
            }
        }
        CHECK(act(p, e, &L->cls, N, C, h, w, REG_SAVED));
        CHECK(act(p, e, &L->reg_raw, N, 4, h, w, REG_SAVED));
        CHECK(act(p, e, &L->reg, N, 4, h, w, REG_SAVED));
        CHECK(act(p, e, &L->ctr, N, 1, h, w, REG_SAVED));
        if (tr) {
            CHECK(act(p, e, &L->gr2, N, DET_FPN_CH, h, w, REG_SLOT));
            CHECK(act(p, e, &L->gpx, N, DET_FPN_CH, h, w, REG_SLOT));
            CHECK(act(p, e, &L->dcls, N, C, h, w, REG_FIXED));
            CHECK(act(p, e, &L->dreg, N, 4, h, w, REG_FIXED));
            CHECK(act(p, e, &L->dctr, N, 1, h, w, REG_FIXED));
        }
        for (int t = 0; t < 2; t++) {
            const tensor *x = P;
            tensor *gx = tr ? (t ? &L->gpx : &p->dp[l]) : NULL;
            for (int k = 0; k < 4; k++) {
                tensor *yc = t ? &L->rc[k] : &L->cc[k], *yg = t ? &L->rg[k] : &L->cg[k];
                tensor *g = tr ? (t ? &L->gr[k] : &L->gc[k]) : NULL;
                CHECK(conv_pl(p, e, t ? &L->prc[k] : &L->pcc[k], t ? &d->reg_conv[k] : &d->cls_conv[k], x, yc, g, gx));
                CHECK(gn_plan_init(t ? &L->pgr[k] : &L->pgc[k], e, t ? &d->reg_gn[k] : &d->cls_gn[k], yc, yg, g, g, tr));
                /* ReLU forward fused into the GN apply; the eltwise plan serves only the training
                 * backward (inference plans need none) */
                gn_plan_fuse_relu(t ? &L->pgr[k] : &L->pgc[k], 1);
                if (tr) CHECK(eltwise_plan_init(t ? &L->per[k] : &L->pec[k], e, &d->relu, yg, yg, g, g, tr));
                x = yg;
                gx = g;
            }
        }
        CHECK(conv_pl(p, e, &L->pcls, &d->atss_cls, &L->cg[3], &L->cls, &L->dcls, &L->gc[3]));
        CHECK(conv_pl(p, e, &L->preg, &d->atss_reg, &L->rg[3], &L->reg_raw, &L->dreg, &L->gr[3]));
        CHECK(conv_pl(p, e, &L->pctr, &d->atss_ctr, &L->rg[3], &L->ctr, &L->dctr, &L->gr2));
        CHECK(scale_plan_init(&L->ps, e, &d->scales[l], &L->reg_raw, &L->reg, tr ? &L->dreg : NULL, tr ? &L->dreg : NULL,
                              tr));
    }
    return OTE_OK;
}

static void plan_free(detector *d, det_plan *p) {
    if (!p) return;
    /* Sub-plans: free whatever was initialised (zeroed structs are safe to free for every layer). */
    cbr_plan_free(&p->init, &d->init);
    for (int u = 0; u < DET_UNITS; u++) {
        for (int k = 0; k < 3; k++) cbr_plan_free(&p->u[u].c[k], &d->u[u].c[k]);
        add_plan_free(&p->u[u].ap);
    }
    for (int i = 0; i < 3; i++) conv_plan_free(&p->plat[i]);
    for (int i = 0; i < 5; i++) conv_plan_free(&p->pfpn[i]);
    upsample_plan_free(&p->pu4), upsample_plan_free(&p->pu3);
    eltwise_plan_free(&p->prelu);
    for (int l = 0; l < 5; l++) {
        lvl_plan *L = &p->lv[l];
        for (int k = 0; k < 4; k++) {
            conv_plan_free(&L->pcc[k]), conv_plan_free(&L->prc[k]);
            gn_plan_free(&L->pgc[k]), gn_plan_free(&L->pgr[k]);
            eltwise_plan_free(&L->pec[k]), eltwise_plan_free(&L->per[k]);
        }
        conv_plan_free(&L->pcls), conv_plan_free(&L->preg), conv_plan_free(&L->pctr);
        scale_plan_free(&L->ps);
    }
    for (int i = 0; i < p->n_regs; i++) tensor_free(p->regs[i].t);
    free(p->regs);
    free(p->anchors), free(p->valid), free(p->assigned), free(p->labels);
    free(p);
}

static int bwd_head(detector *d, det_plan *p, slotsim *s);
static int bwd_fpn(detector *d, det_plan *p, slotsim *s);
static int bwd_backbone(detector *d, det_plan *p, slotsim *s);

static int grow_block(detector *d, size_t bytes) {
    if (bytes <= d->block_cap) return OTE_OK;
    void *b = NULL;
    if (posix_memalign(&b, 64, bytes) != 0)
        return ote_err(OTE_ENOMEM, "detector: cannot allocate %zu MB of activations", bytes >> 20);
    /* zero once: every tensor's blocked padding must start at zero (primitives keep it so) */
    memset(b, 0, bytes);
    free(d->block);
    d->block = b;
    d->block_cap = bytes;
    d->block_gen++;
    d->bound = NULL;
    return OTE_OK;
}

static int plan_bind(detector *d, det_plan *p) {
    if (d->bound == p && p->gen == d->block_gen) return OTE_OK;
    char *base = d->block;
    size_t fixed0 = p->saved_bytes, slot0 = p->saved_bytes + p->fixed_bytes;
    for (int i = 0; i < p->n_regs; i++) {
        det_treg *r = &p->regs[i];
        size_t off = r->region == REG_SAVED ? r->off
                     : r->region == REG_FIXED ? fixed0 + r->off
                                              : slot0 + (size_t)r->slot * p->slot_bytes;
        ASSERT(off + r->t->bytes <= d->block_cap);
        r->t->data = (float *)(base + off);
        CHECK(eng_check(dnnl_memory_set_data_handle(r->t->mem, r->t->data), "detector: bind tensor"));
    }
    p->gen = d->block_gen;
    d->bound = p;
    return OTE_OK;
}

static det_plan *plan_find(const detector *d, int n, int h, int w, int training) {
    for (det_plan *p = d->plans; p; p = p->next)
        if (p->n == n && p->h == h && p->w == w && p->training == training) return p;
    return NULL;
}

static int plan_get(detector *d, int n, int h, int w, int training, det_plan **out) {
    det_plan *p = plan_find(d, n, h, w, training);
    if (p) {
        *out = p;
        return OTE_OK;
    }
    if (n < 1 || h < 32 || w < 32 || h % 32 || w % 32)
        return ote_err(OTE_EINVAL, "detector: plan shape N=%d H=%d W=%d (N >= 1, H and W positive multiples of 32)", n,
                       h, w);
    p = calloc(1, sizeof *p);
    if (!p) return ote_err(OTE_ENOMEM, "detector: cannot allocate a plan");
    p->n = n, p->h = h, p->w = w, p->training = training;
    int s = plan_backbone(p, d);
    if (s == OTE_OK) s = plan_fpn(p, d);
    if (s == OTE_OK) s = plan_head(p, d);
    if (s == OTE_OK) s = anchors_grid_init(&p->grid, h, w);
    if (s == OTE_OK) {
        size_t tot = (size_t)p->grid.total;
        p->anchors = malloc(tot * 4 * sizeof(float));
        p->valid = malloc(tot * (size_t)n);
        p->assigned = malloc(tot * (size_t)n * sizeof(int));
        p->labels = malloc(tot * (size_t)n * sizeof(int));
        if (!p->anchors || !p->valid || !p->assigned || !p->labels)
            s = ote_err(OTE_ENOMEM, "detector: cannot allocate the anchor tables");
        else
            anchors_fill(&p->grid, p->anchors);
    }
    if (s == OTE_OK && training) {
        slotsim sim;
        memset(&sim, 0, sizeof sim);
        sim.p = p;
        s = bwd_head(d, p, &sim);
        if (s == OTE_OK) s = bwd_fpn(d, p, &sim);
        if (s == OTE_OK) s = bwd_backbone(d, p, &sim);
        for (int k = 0; k < DET_MAX_SLOTS; k++)
            if (sim.owner[k]) sim.err = 1;
        for (int i = 0; i < p->n_regs; i++)
            if (p->regs[i].region == REG_SLOT && p->regs[i].slot < 0) sim.err = 1;
        if (s == OTE_OK && sim.err) s = ote_err(OTE_EINVAL, "detector plan: gradient slot assignment inconsistent");
        if (s == OTE_OK && training) {
            size_t ws = assigner_ws_bytes(&p->grid, d->ws_max_gts > 64 ? d->ws_max_gts : 64, DET_TOPK);
            if (ws > d->ws_bytes) {
                void *nw = realloc(d->ws, ws);
                if (!nw)
                    s = ote_err(OTE_ENOMEM, "detector: cannot allocate the assigner workspace");
                else
                    d->ws = nw, d->ws_bytes = ws, d->ws_max_gts = d->ws_max_gts > 64 ? d->ws_max_gts : 64;
            }
        }
    }
    p->total_bytes = p->saved_bytes + p->fixed_bytes + (size_t)p->n_slots * p->slot_bytes;
    if (s == OTE_OK) s = grow_block(d, p->total_bytes);
    if (s < 0) {
        plan_free(d, p);
        return s;
    }
    p->next = d->plans;
    d->plans = p;
    *out = p;
    return OTE_OK;
}

int det_plan_train(detector *d, int n, int h, int w) {
    det_plan *p;
    return plan_get(d, n, h, w, 1, &p);
}

int det_plan_infer(detector *d, int n, int h, int w) {
    det_plan *p;
    return plan_get(d, n, h, w, 0, &p);
}

/* ------------------------------------------------------------------------------------------ */
/* Forward */

static int cbr_fwd(eng_ctx *e, cbr_plan *c, const det_cbr *b, int training) {
    CHECK(conv_forward(&c->cp, e));
    if (!training) return OTE_OK; /* folded: BN, ReLU6 and the residual sum are in the conv */
    if (c->fused) return bnr_forward(&c->rp, e); /* batch statistics, running statistics, ReLU6 */
    CHECK(bn_forward(&c->bp, e)); /* batch statistics + running-statistics update */
    if (b->relu6) CHECK(eltwise_forward(&c->ep, e));
    return OTE_OK;
}

static int fwd_all(detector *d, det_plan *p) {
    eng_ctx *e = d->e;
    int tr = p->training;
    CHECK(cbr_fwd(e, &p->init, &d->init, tr));
    for (int u = 0; u < DET_UNITS; u++) {
        for (int k = 0; k < 3; k++)
            if (d->u[u].c[k].present) CHECK(cbr_fwd(e, &p->u[u].c[k], &d->u[u].c[k], tr));
        if (d->u[u].residual && tr) CHECK(add_forward(&p->u[u].ap, e));
    }
    CHECK(conv_forward(&p->plat[2], e));
    CHECK(conv_forward(&p->plat[1], e));
    CHECK(upsample_forward_add(&p->pu4, e));
    CHECK(conv_forward(&p->plat[0], e));
    CHECK(upsample_forward_add(&p->pu3, e));
    for (int l = 0; l < 4; l++) CHECK(conv_forward(&p->pfpn[l], e));
    CHECK(eltwise_forward(&p->prelu, e));
    CHECK(conv_forward(&p->pfpn[4], e));
    for (int l = 0; l < 5; l++) {
        lvl_plan *L = &p->lv[l];
        for (int k = 0; k < 4; k++) {
            CHECK(conv_forward(&L->pcc[k], e));
            CHECK(gn_forward(&L->pgc[k], e)); /* + ReLU (fused) */
        }
        CHECK(conv_forward(&L->pcls, e));
        for (int k = 0; k < 4; k++) {
            CHECK(conv_forward(&L->prc[k], e));
            CHECK(gn_forward(&L->pgr[k], e)); /* + ReLU (fused) */
        }
        CHECK(conv_forward(&L->preg, e));
        CHECK(scale_forward(&L->ps, e));
        CHECK(conv_forward(&L->pctr, e));
    }
    return OTE_OK;
}

static void head_views(det_plan *p, head_out out[ANCHORS_LEVELS], head_grad grad[ANCHORS_LEVELS]) {
    for (int l = 0; l < 5; l++) {
        out[l].cls = p->lv[l].cls.data, out[l].reg = p->lv[l].reg.data, out[l].ctr = p->lv[l].ctr.data;
        out[l].blk = p->lv[l].cls.blk;
        if (grad) {
            grad[l].blk = p->lv[l].cls.blk;
            grad[l].cls = p->training ? p->lv[l].dcls.data : NULL;
            grad[l].reg = p->training ? p->lv[l].dreg.data : NULL;
            grad[l].ctr = p->training ? p->lv[l].dctr.data : NULL;
        }
    }
}

int det_forward_train(detector *d, const det_batch *b, det_losses *out) {
    det_plan *p;
    d->have_grads = 0;
    CHECK(plan_get(d, b->n, b->h, b->w, 1, &p));
    int maxg = 0;
    for (int i = 0; i < b->n; i++) {
        int m = b->first_box[i + 1] - b->first_box[i];
        if (m < 0) return ote_err(OTE_EINVAL, "detector: batch: first_box[%d] > first_box[%d]", i, i + 1);
        if (m > maxg) maxg = m;
        if (b->img_h[i] < 1 || b->img_h[i] > b->h || b->img_w[i] < 1 || b->img_w[i] > b->w)
            return ote_err(OTE_EINVAL, "detector: batch: image %d size %dx%d outside the padded %dx%d", i, b->img_h[i],
                           b->img_w[i], b->h, b->w);
    }
    if (maxg > d->ws_max_gts) {
        /* rare: more boxes in one image than any batch before; grows once */
        size_t ws = 0;
        for (det_plan *q = d->plans; q; q = q->next)
            if (q->training) {
                size_t x = assigner_ws_bytes(&q->grid, maxg, DET_TOPK);
                if (x > ws) ws = x;
            }
        void *nw = realloc(d->ws, ws);
        if (!nw) return ote_err(OTE_ENOMEM, "detector: cannot grow the assigner workspace to %d boxes", maxg);
        d->ws = nw, d->ws_bytes = ws, d->ws_max_gts = maxg;
    }
    CHECK(plan_bind(d, p));
    d->last = p;
    memcpy(p->x.data, b->images, (size_t)b->n * 3 * b->h * b->w * sizeof(float));
    CHECK(fwd_all(d, p));
    d->nbt++;
    d->params_gen++; /* running statistics changed */
    /* targets (spec §5-§6) */
    int T = p->grid.total;
    for (int i = 0; i < b->n; i++) {
        int f = b->first_box[i], m = b->first_box[i + 1] - f;
        anchors_valid(&p->grid, b->img_h[i], b->img_w[i], p->valid + (size_t)i * T);
        CHECK(assigner_atss(&p->grid, p->anchors, p->valid + (size_t)i * T, b->boxes + 4 * (size_t)f, b->labels + f, m,
                            d->cfg.num_classes, DET_TOPK, d->ws, d->ws_bytes, p->assigned + (size_t)i * T,
                            p->labels + (size_t)i * T));
    }
    head_out ho[ANCHORS_LEVELS];
    head_grad hg[ANCHORS_LEVELS];
    head_views(p, ho, hg);
    loss_parts lp;
    CHECK(losses_batch(&p->grid, p->anchors, b->n, d->cfg.num_classes, p->assigned, p->labels, b->boxes, b->first_box,
                       ho, hg, &lp));
    d->have_grads = 1;
    if (out) {
        memset(out, 0, sizeof *out);
        out->cls = lp.cls_sum, out->box = lp.box_sum, out->ctr = lp.ctr_sum, out->total = lp.total;
        for (int l = 0; l < 5; l++) {
            out->level_cls[l] = lp.cls[l], out->level_box[l] = lp.box[l], out->level_ctr[l] = lp.ctr[l];
            out->npos += lp.npos_level[l];
        }
    }
    if (!isfinite(lp.total)) return ote_err(OTE_ENAN, "detector: loss is not finite (%g)", lp.total);
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Backward (s != NULL: slot simulation at plan time, nothing runs) */

static int bwd_head(detector *d, det_plan *p, slotsim *s) {
    eng_ctx *e = d->e;
    for (int l = 0; l < 5; l++) {
        lvl_plan *L = &p->lv[l];
        int acc = l > 0; /* shared tower / output weights: level 0 writes, the others add */
        /* cls tower: atss_cls -> gc[3] -> ... -> dp[l] */
        sl_take(s, &L->gc[3]);
        RUN(conv_backward(&L->pcls, e, acc));
        for (int k = 3; k >= 0; k--) {
            RUN(eltwise_backward(&L->pec[k], e, 0));
            RUN(gn_backward(&L->pgc[k], e, acc));
            if (k > 0) sl_take(s, &L->gc[k - 1]);
            RUN(conv_backward(&L->pcc[k], e, acc));
            sl_drop(s, &L->gc[k]);
        }
        /* reg tower: Scale (in place on dreg), atss_reg -> gr[3], atss_centerness -> gr2, sum */
        RUN(scale_backward(&L->ps, e, 0));
        sl_take(s, &L->gr[3]);
        RUN(conv_backward(&L->preg, e, acc));
        sl_take(s, &L->gr2);
        RUN(conv_backward(&L->pctr, e, acc));
        RUNV(add_accumulate(&L->gr[3], &L->gr2));
        sl_drop(s, &L->gr2);
        for (int k = 3; k >= 0; k--) {
            RUN(eltwise_backward(&L->per[k], e, 0));
            RUN(gn_backward(&L->pgr[k], e, acc));
            sl_take(s, k > 0 ? &L->gr[k - 1] : &L->gpx);
            RUN(conv_backward(&L->prc[k], e, acc));
            sl_drop(s, &L->gr[k]);
        }
        RUNV(add_accumulate(&p->dp[l], &L->gpx));
        sl_drop(s, &L->gpx);
    }
    return OTE_OK;
}

static int bwd_fpn(detector *d, det_plan *p, slotsim *s) {
    eng_ctx *e = d->e;
    if (s) return OTE_OK; /* FPN gradients live in the fixed region */
    CHECK(conv_backward(&p->pfpn[4], e, 0));     /* dP7 -> t6 = d relu(P6) */
    CHECK(eltwise_backward(&p->prelu, e, 0));    /* t6 masked by P6 > 0, in place */
    add_accumulate(&p->dp[3], &p->t6);
    CHECK(conv_backward(&p->pfpn[3], e, 0));     /* dP6 -> t5 */
    add_accumulate(&p->dp[2], &p->t5);
    CHECK(conv_backward(&p->pfpn[2], e, 0));     /* dP5 -> dL5 */
    CHECK(conv_backward(&p->pfpn[1], e, 0));     /* dP4 -> dL4 */
    CHECK(conv_backward(&p->pfpn[0], e, 0));     /* dP3 -> dL3 */
    CHECK(upsample_backward(&p->pu3, e, 1));     /* dL4 += sum2x2(dL3) */
    CHECK(conv_backward(&p->plat[0], e, 0));     /* dL3 -> dC3 */
    CHECK(upsample_backward(&p->pu4, e, 1));     /* dL5 += sum2x2(dL4) */
    CHECK(conv_backward(&p->plat[1], e, 0));     /* dL4 -> dC4 */
    CHECK(conv_backward(&p->plat[2], e, 0));     /* dL5 -> dC5 (= stage5 output gradient) */
    return OTE_OK;
}

static int cbr_bwd(eng_ctx *e, cbr_plan *c, const det_cbr *b, slotsim *s, tensor *gin) {
    if (!c->fused && b->relu6) RUN(eltwise_backward(&c->ep, e, 0));
    if (c->gb_used) sl_take(s, &c->gb);
    RUN(c->fused ? bnr_backward(&c->rp, e, 0) : bn_backward(&c->bp, e, 0));
    if (gin) sl_take(s, gin);
    RUN(conv_backward(&c->cp, e, 0));
    if (c->gb_used)
        sl_drop(s, &c->gb);
    return OTE_OK;
}

static int bwd_backbone(detector *d, det_plan *p, slotsim *s) {
    eng_ctx *e = d->e;
    /* unit 16's output gradient (dC5) is in the fixed region; every other block gradient is a slot */
    for (int u = DET_UNITS - 1; u >= 0; u--) {
        det_unit *U = &d->u[u];
        unit_plan *P = &p->u[u];
        if (u == DET_TAP_C4) {
            RUNV(add_accumulate(&P->c[2].g, &p->dc4));
        } else if (u == DET_TAP_C3) {
            RUNV(add_accumulate(&P->c[2].g, &p->dc3));
        }
        int first = U->c[0].present ? 0 : 1;
        for (int k = 2; k >= first; k--) {
            tensor *gin = k > first ? &P->c[k - 1].g : P->gin;
            CHECK(cbr_bwd(e, &P->c[k], &U->c[k], s, gin));
            /* the block output gradient is consumed, unless it is the unit output gradient that
             * the residual still needs */
            if (!(k == 2 && U->residual) && !(k == 2 && u == DET_TAP_C5)) sl_drop(s, &P->c[k].g);
        }
        if (U->residual) {
            RUNV(add_accumulate(P->gin, &P->c[2].g));
            sl_drop(s, &P->c[2].g);
        }
    }
    /* init block: no input gradient (the image) */
    if (!p->init.fused && d->init.relu6) RUN(eltwise_backward(&p->init.ep, e, 0));
    RUN(p->init.fused ? bnr_backward(&p->init.rp, e, 0) : bn_backward(&p->init.bp, e, 0));
    RUN(conv_backward(&p->init.cp, e, 0));
    sl_drop(s, &p->init.g);
    return OTE_OK;
}

int det_backward(detector *d) {
    det_plan *p = d->last;
    if (!p || !p->training || !d->have_grads)
        return ote_err(OTE_EINVAL, "detector: det_backward without a preceding det_forward_train");
    CHECK(plan_bind(d, p));
    CHECK(bwd_head(d, p, NULL));
    CHECK(bwd_fpn(d, p, NULL));
    CHECK(bwd_backbone(d, p, NULL));
    d->have_grads = 0;
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Optimiser */

static int refresh_all(detector *d) {
    for (int i = 0; i < d->n_pe; i++)
        if (d->pe[i].kind == PK_CONVW) CHECK(conv_refresh_weights(d->pe[i].conv, d->e));
    return OTE_OK;
}

int det_sgd_step(detector *d, double lr) {
    sgd_step(&d->opt, lr);
    d->params_gen++;
    return refresh_all(d);
}

void det_set_optimizer(detector *d, double momentum, double weight_decay) {
    d->opt.momentum = (float)momentum;
    d->opt.weight_decay = (float)weight_decay;
}

/* ------------------------------------------------------------------------------------------ */
/* Inference */

/* Refolds every backbone BN (running statistics, eval mode) into its conv's inference twin:
 * W' = W * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps). Runs only when a
 * parameter or running statistic changed since the last fold (once per validation in training);
 * it converts the weights through reorders like a checkpoint load does. */
static int det_fold(detector *d) {
    det_cbr *all[1 + 3 * DET_UNITS];
    int na = 0;
    all[na++] = &d->init;
    for (int u = 0; u < DET_UNITS; u++)
        for (int k = 0; k < 3; k++)
            if (d->u[u].c[k].present) all[na++] = &d->u[u].c[k];
    for (int i = 0; i < na; i++) {
        bn_layer *bn = &all[i]->bn;
        CHECK(conv_fold_bn(&all[i]->iconv, d->e, &all[i]->conv, bn->gamma.data, bn->beta.data, bn->run_mean.data,
                           bn->run_var.data, bn->cfg.eps));
    }
    d->folded_gen = d->params_gen;
    return OTE_OK;
}

int det_predict(detector *d, int n, int h, int w, const float *images, const int *img_h, const int *img_w,
                const float *scale_factor, det_box *const *out, int *n_out, int max_per_img) {
    det_plan *p;
    if (max_per_img < 0) return ote_err(OTE_EINVAL, "detector: max_per_img: %d", max_per_img);
    CHECK(plan_get(d, n, h, w, 0, &p));
    if (max_per_img > d->dets_cap) {
        detection *nd = realloc(d->dets, (size_t)max_per_img * sizeof *nd);
        if (!nd) return ote_err(OTE_ENOMEM, "detector: cannot allocate %d detections", max_per_img);
        d->dets = nd, d->dets_cap = max_per_img;
    }
    if (d->folded_gen != d->params_gen) CHECK(det_fold(d));
    CHECK(plan_bind(d, p));
    d->last = p;
    d->have_grads = 0;
    memcpy(p->x.data, images, (size_t)n * 3 * h * w * sizeof(float));
    CHECK(fwd_all(d, p));
    head_out ho[ANCHORS_LEVELS];
    head_views(p, ho, NULL);
    postprocess_cfg pc = postprocess_default_cfg();
    pc.max_per_img = max_per_img;
    for (int i = 0; i < n; i++) {
        int nd = 0;
        if (max_per_img > 0)
            CHECK(postprocess_image(&p->grid, p->anchors, d->cfg.num_classes, n, i, ho, img_h[i], img_w[i],
                                    scale_factor + 4 * (size_t)i, &pc, d->dets, &nd));
        for (int k = 0; k < nd; k++) {
            det_box *o = &out[i][k];
            o->x1 = d->dets[k].box[0], o->y1 = d->dets[k].box[1], o->x2 = d->dets[k].box[2], o->y2 = d->dets[k].box[3];
            o->score = d->dets[k].score;
            o->label = d->dets[k].label;
        }
        n_out[i] = nd;
    }
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Parameters */

int det_calibrate_bn(detector *d) {
    if (d->cfg.bn_onednn) return ote_err(OTE_EINVAL, "detector: BN calibration needs the fused BN layer (bn_onednn is set)");
    d->init.bn.calibrate = 1;
    for (int u = 0; u < DET_UNITS; u++)
        for (int k = 0; k < 3; k++)
            if (d->u[u].c[k].present) d->u[u].c[k].bn.calibrate = 1;
    d->params_gen++; /* gamma/beta change at the next training forward */
    return OTE_OK;
}

const det_cfg *det_config(const detector *d) { return &d->cfg; }
int det_n_params(const detector *d) { return d->n_pe; }

const det_param_info *det_param(const detector *d, int i) {
    if (i < 0 || i >= d->n_pe) return NULL;
    return &d->pe[i].info;
}

int det_param_find(const detector *d, const char *name) {
    for (int i = 0; i < d->n_pe; i++)
        if (strcmp(d->pe[i].name, name) == 0) return i;
    return -1;
}

static int pe_check(const detector *d, int i) {
    if (i < 0 || i >= d->n_pe) return ote_err(OTE_EINVAL, "detector: parameter index %d out of range", i);
    return OTE_OK;
}

int det_param_get(detector *d, int i, float *dst) {
    CHECK(pe_check(d, i));
    det_pentry *p = &d->pe[i];
    if (p->kind == PK_CONVW) return conv_weights_to_oihw(p->conv, d->e, dst);
    if (p->kind == PK_NBT) {
        dst[0] = (float)d->nbt;
        return OTE_OK;
    }
    memcpy(dst, p->t->data, (size_t)(p->info.ndim ? p->info.shape[0] : 1) * sizeof(float));
    return OTE_OK;
}

int det_param_set(detector *d, int i, const float *src) {
    CHECK(pe_check(d, i));
    det_pentry *p = &d->pe[i];
    d->params_gen++;
    if (p->kind == PK_CONVW) return conv_weights_from_oihw(p->conv, d->e, src);
    if (p->kind == PK_NBT) {
        if (!(src[0] >= 0)) return ote_err(OTE_EINVAL, "detector: %s: value %g", p->name, src[0]);
        d->nbt = (long)src[0];
        return OTE_OK;
    }
    memcpy(p->t->data, src, (size_t)(p->info.ndim ? p->info.shape[0] : 1) * sizeof(float));
    return OTE_OK;
}

int det_grad_get(detector *d, int i, float *dst) {
    CHECK(pe_check(d, i));
    det_pentry *p = &d->pe[i];
    if (p->kind == PK_CONVW) return conv_grad_to_oihw(p->conv, d->e, dst);
    if (p->kind == PK_NBT || !p->g) return ote_err(OTE_EINVAL, "detector: %s has no gradient", p->name);
    memcpy(dst, p->g->data, (size_t)(p->info.ndim ? p->info.shape[0] : 1) * sizeof(float));
    return OTE_OK;
}

int det_reinit_cls(detector *d) {
    /* a fresh stream derived from the seed: N(0, 0.01) weights, prior-probability bias */
    rng r;
    rng_seed(&r, d->cfg.seed ^ 0x5eedc1a55ULL);
    conv_layer *l = &d->atss_cls;
    d->params_gen++;
    size_t n = (size_t)l->cfg.oc * l->cfg.ic * 9;
    float *buf = malloc(n * sizeof *buf);
    if (!buf) return ote_err(OTE_ENOMEM, "detector: cannot allocate the init buffer");
    fill_conv(l, &r, 3, buf);
    int s = conv_weights_from_oihw(l, d->e, buf);
    free(buf);
    for (int c = 0; c < l->cfg.oc; c++) l->b.data[c] = (float)DET_CLS_BIAS;
    return s;
}

double det_flops_train(const detector *d, int n, int h, int w) {
    det_plan *p = plan_find(d, n, h, w, 1);
    return p ? p->flops : -1;
}

double det_flops_infer(const detector *d, int n, int h, int w) {
    det_plan *p = plan_find(d, n, h, w, 0);
    return p ? p->flops : -1;
}

void det_memory(const detector *d, size_t *params, size_t *grads, size_t *optim, size_t *activations) {
    if (params) *params = d->params.used;
    if (grads) *grads = d->grads.used;
    if (optim) *optim = d->opt.mom.used;
    if (activations) *activations = d->block_cap;
}

int det_last_head(const detector *d, anchor_grid *g, head_out out[ANCHORS_LEVELS], head_grad grad[ANCHORS_LEVELS]) {
    if (!d->last || d->bound != d->last) return ote_err(OTE_EINVAL, "detector: no plan has run");
    if (g) *g = d->last->grid;
    head_views(d->last, out, grad);
    return OTE_OK;
}

void det_free(detector *d) {
    if (!d) return;
    while (d->plans) {
        det_plan *p = d->plans;
        d->plans = p->next;
        plan_free(d, p);
    }
    det_free_layers(d);
    eltwise_layer_free(&d->relu6), eltwise_layer_free(&d->relu);
    sgd_free(&d->opt);
    arena_free(&d->params), arena_free(&d->grads), arena_free(&d->iparams);
    free(d->block), free(d->ws), free(d->dets), free(d->pe);
    free(d);
}
