/* backbone.c - the MobileNetV2 backbone (see backbone.h): layer creation under pytorchcv names,
 * initialisation, BN folding, and per block its plan, forward and backward side by side.
 *
 * Memory (models/memplan.h): every conv output and BN output is saved; block output gradients
 * are slots, except C5's, which is fixed because the neck writes it before the backbone backward
 * starts. In place: ReLU6 forward on the BN output, ReLU6 and BN backward on the incoming
 * gradient, the residual add into the BN output of conv3 (training) or as the folded conv's sum
 * post-op into the unit input (inference).
 */
#include "models/backbone.h"

#include <string.h>

/* Per unit: output channels and stage (spec §2a). */
static const int UNIT_COUT[BACKBONE_UNITS] = {16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320};
static const int UNIT_STAGE[BACKBONE_UNITS] = {1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5};

/* ------------------------------------------------------------------------------------------ */
/* Layers */

/* A conv + BN (+ ReLU6) block named prefix.conv / prefix.bn, and its inference twin (post_sum:
 * the residual add is fused as a sum post-op). */
static int backbone_cbr_init(backbone *b, eng_ctx *e, params_table *tab, backbone_cbr *blk, const char *prefix,
                             int ic, int oc, int k, int stride, int groups, int relu6, int post_sum) {
    conv_cfg c = det_conv_cfg(ic, oc, k, stride, groups, 0, b->tf_padding);
    if (blk == &b->init) c.src_nchw = 1; /* the image comes in plain NCHW */
    CHECK(conv_layer_init(&blk->conv, e, &c, &tab->values, &tab->grads));
    bn_cfg bc = bn_cfg_default(oc);
    int s = bn_layer_init(&blk->bn, e, &bc, &tab->values, &tab->grads);
    if (s < 0) {
        conv_layer_free(&blk->conv);
        return s;
    }
    blk->bn.frozen = b->bn_frozen;
    blk->relu6 = relu6;
    blk->present = 1;
    char nm[256];
    PARAMS_NAME(nm, "%s.conv", prefix);
    params_add_conv(tab, nm, &blk->conv);
    PARAMS_NAME(nm, "%s.bn", prefix);
    params_add_bn(tab, nm, &blk->bn);
    conv_cfg ci = blk->conv.cfg;
    ci.bias = 1;
    ci.post_eltwise = relu6 ? CONV_POST_RELU6 : CONV_POST_NONE;
    ci.post_sum = post_sum;
    return conv_layer_init(&blk->iconv, e, &ci, &b->iparams, NULL);
}

int backbone_init(backbone *b, eng_ctx *e, const det_cfg *cfg, params_table *tab) {
    b->kind = cfg->backbone, b->tf_padding = cfg->tf_padding, b->bn_onednn = cfg->bn_onednn;
    b->bn_frozen = cfg->bn_frozen;
    arena_init(&b->iparams, "folded inference params");
    CHECK(eltwise_layer_init(&b->relu6, e, &(eltwise_cfg){ELTWISE_RELU6}, NULL, NULL));
    CHECK(backbone_cbr_init(b, e, tab, &b->init, "backbone.features.init_block", 3, 32, 3, 2, 1, 1, 0));
    int cin = 32;
    char pre[64], nm[256];
    for (int u = 0; u < BACKBONE_UNITS; u++) {
        backbone_unit *U = &b->u[u];
        int stage = UNIT_STAGE[u];
        int idx = 1; /* unit index within the stage, 1-based as in the names */
        for (int v = u - 1; v >= 0 && UNIT_STAGE[v] == stage; v--) idx++;
        int stride = (idx == 1 && stage > 1) ? 2 : 1;
        int expand = u != 0;
        U->cin = cin, U->cout = UNIT_COUT[u], U->stride = stride;
        U->mid = expand ? 6 * cin : cin;
        U->residual = cin == U->cout && stride == 1;
        int has_c1 = expand || b->kind == DET_BACKBONE_PYTORCHCV;
        PARAMS_NAME(pre, "backbone.features.stage%d.unit%d", stage, idx);
        if (has_c1) {
            PARAMS_NAME(nm, "%s.conv1", pre);
            CHECK(backbone_cbr_init(b, e, tab, &U->c[0], nm, cin, U->mid, 1, 1, 1, 1, 0));
        }
        PARAMS_NAME(nm, "%s.conv2", pre);
        CHECK(backbone_cbr_init(b, e, tab, &U->c[1], nm, U->mid, U->mid, 3, stride, U->mid, 1, 0));
        PARAMS_NAME(nm, "%s.conv3", pre);
        CHECK(backbone_cbr_init(b, e, tab, &U->c[2], nm, U->mid, U->cout, 1, 1, 1, 0, U->residual));
        cin = U->cout;
    }
    return OTE_OK;
}

int backbone_commit(backbone *b) { return arena_commit(&b->iparams); }

/* Every present block, init block first, in registration (= random-stream) order. */
static int backbone_blocks(backbone *b, backbone_cbr *all[1 + 3 * BACKBONE_UNITS]) {
    int na = 0;
    all[na++] = &b->init;
    for (int u = 0; u < BACKBONE_UNITS; u++)
        for (int k = 0; k < 3; k++)
            if (b->u[u].c[k].present) all[na++] = &b->u[u].c[k];
    return na;
}

int backbone_init_params(backbone *b, eng_ctx *e, rng *r, float *buf) {
    params_init mode = b->kind == DET_BACKBONE_TORCHVISION ? PARAMS_KAIMING_NORMAL : PARAMS_KAIMING_UNIFORM;
    backbone_cbr *all[1 + 3 * BACKBONE_UNITS];
    int na = backbone_blocks(b, all);
    for (int i = 0; i < na; i++) {
        CHECK(params_init_conv(&all[i]->conv, e, r, mode, buf));
        bn_reset_params(&all[i]->bn);
    }
    return OTE_OK;
}

void backbone_calibrate_bn(backbone *b) {
    backbone_cbr *all[1 + 3 * BACKBONE_UNITS];
    int na = backbone_blocks(b, all);
    for (int i = 0; i < na; i++) all[i]->bn.calibrate = 1;
}

/* Refolds every BN (running statistics, eval mode) into its conv's inference twin:
 * W' = W * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps). It converts the
 * weights through reorders like a checkpoint load does (planning-time work, not a step's). */
int backbone_fold(backbone *b, eng_ctx *e) {
    backbone_cbr *all[1 + 3 * BACKBONE_UNITS];
    int na = backbone_blocks(b, all);
    for (int i = 0; i < na; i++) {
        bn_layer *bn = &all[i]->bn;
        CHECK(conv_fold_bn(&all[i]->iconv, e, &all[i]->conv, bn->gamma.data, bn->beta.data, bn->run_mean.data,
                           bn->run_var.data, bn->cfg.eps));
    }
    return OTE_OK;
}

static void backbone_cbr_free(backbone_cbr *blk) {
    if (!blk->present) return;
    conv_layer_free(&blk->conv), bn_layer_free(&blk->bn), conv_layer_free(&blk->iconv);
}

void backbone_free(backbone *b) {
    backbone_cbr_free(&b->init);
    for (int u = 0; u < BACKBONE_UNITS; u++)
        for (int k = 0; k < 3; k++) backbone_cbr_free(&b->u[u].c[k]);
    eltwise_layer_free(&b->relu6);
    arena_free(&b->iparams);
}

/* ------------------------------------------------------------------------------------------ */
/* One conv + BN (+ ReLU6) block: plan, forward, backward */

/* Plans blk on input x (training: d_x receives the input gradient, NULL for the image).
 * bn_out_of_place: BN backward writes d_conv_out instead of d_out (residual conv3, whose output
 * gradient also feeds the skip). d_region: where d_out lives. sum_dst (inference, residual conv3):
 * the unit input, which the folded conv's sum post-op overwrites with the unit output. */
static int backbone_cbr_plan_init(backbone_cbr_plan *c, backbone *b, backbone_cbr *blk, det_planner *pl,
                                  const tensor *x, tensor *d_x, int bn_out_of_place, memplan_region d_region,
                                  tensor *sum_dst) {
    eng_ctx *e = pl->e;
    const conv_cfg *cc = &blk->conv.cfg;
    int oh = conv_out_size(x->h, cc->kh, cc->stride_h, cc->pad_t, cc->pad_b);
    int ow = conv_out_size(x->w, cc->kw, cc->stride_w, cc->pad_l, cc->pad_r);
    int oc = cc->oc;
    if (!pl->training) {
        /* folded conv: BN in the weights, ReLU6 / residual sum as post-ops */
        if (sum_dst) {
            CHECK(det_plan_conv(pl, &c->pl_conv, &blk->iconv, x, sum_dst, NULL, NULL)); /* x (+ sum_dst) -> sum_dst */
            c->out = sum_dst;
        } else {
            CHECK(det_plan_act(pl, &c->conv_out, oc, oh, ow, MEMPLAN_SAVED));
            CHECK(det_plan_conv(pl, &c->pl_conv, &blk->iconv, x, &c->conv_out, NULL, NULL)); /* x -> conv_out */
            c->out = &c->conv_out;
        }
        return OTE_OK;
    }
    CHECK(det_plan_act(pl, &c->conv_out, oc, oh, ow, MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &c->bn_out, oc, oh, ow, MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &c->d_out, oc, oh, ow, d_region));
    tensor *d_conv = &c->d_out;
    if (bn_out_of_place) {
        CHECK(det_plan_act(pl, &c->d_conv_out, oc, oh, ow, MEMPLAN_SLOT));
        c->d_conv_out_used = 1;
        d_conv = &c->d_conv_out;
    }
    /* x -> conv_out; backward d_conv -> d_x */
    CHECK(det_plan_conv(pl, &c->pl_conv, &blk->conv, x, &c->conv_out, d_conv, d_x));
    if (!b->bn_onednn) {
        /* conv_out -> bn_out (+ ReLU6); backward d_out -> d_conv */
        CHECK(bnr_plan_init(&c->pl_bnrelu, e, &blk->bn, &c->conv_out, &c->bn_out, &c->d_out, d_conv, blk->relu6));
        c->fused = 1;
    } else {
        CHECK(bn_plan_init(&c->pl_bn, e, &blk->bn, &c->conv_out, &c->bn_out, &c->d_out, d_conv, 1));
        if (blk->relu6) /* bn_out -> bn_out; backward d_out -> d_out */
            CHECK(eltwise_plan_init(&c->pl_relu6, e, &b->relu6, &c->bn_out, &c->bn_out, &c->d_out, &c->d_out, 1));
    }
    c->out = &c->bn_out;
    return OTE_OK;
}

static void backbone_cbr_plan_free(backbone_cbr_plan *c, const backbone_cbr *blk) {
    if (!blk->present) return;
    conv_plan_free(&c->pl_conv);
    bn_plan_free(&c->pl_bn);
    eltwise_plan_free(&c->pl_relu6);
    if (c->fused) bnr_plan_free(&c->pl_bnrelu);
}

/* x -> c->out */
static int backbone_cbr_forward(backbone_cbr_plan *c, const backbone_cbr *blk, eng_ctx *e, int training) {
    CHECK(conv_forward(&c->pl_conv, e));
    if (!training) return OTE_OK; /* folded: BN, ReLU6 and the residual sum are in the conv */
    if (c->fused) return bnr_forward(&c->pl_bnrelu, e); /* batch statistics, running statistics, ReLU6 */
    CHECK(bn_forward(&c->pl_bn, e)); /* batch statistics + running-statistics update */
    if (blk->relu6) CHECK(eltwise_forward(&c->pl_relu6, e));
    return OTE_OK;
}

/* d_out -> d_x (taken as a slot here when d_x is not NULL) and the block's weight gradients */
static int backbone_cbr_backward(backbone_cbr_plan *c, const backbone_cbr *blk, eng_ctx *e, memplan_sim *s,
                                 tensor *d_x) {
    if (!c->fused && blk->relu6) MEMPLAN_RUN(s, eltwise_backward(&c->pl_relu6, e, 0));
    if (c->d_conv_out_used) memplan_take(s, &c->d_conv_out);
    MEMPLAN_RUN(s, c->fused ? bnr_backward(&c->pl_bnrelu, e, 0) : bn_backward(&c->pl_bn, e, 0));
    if (d_x) memplan_take(s, d_x);
    MEMPLAN_RUN(s, conv_backward(&c->pl_conv, e, 0));
    if (c->d_conv_out_used) memplan_drop(s, &c->d_conv_out);
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The whole backbone: plan, forward, backward */

int backbone_plan_init(backbone_plan *p, backbone *b, det_planner *pl, int h, int w) {
    int tr = pl->training;
    CHECK(tensor_plan_plain(pl->e, &p->image, TL_NCHW, pl->n, 3, h, w, NULL));
    CHECK(memplan_add(pl->mem, &p->image, MEMPLAN_SAVED));
    /* image -> init.out (N, 32, H/2, W/2); no image gradient */
    CHECK(backbone_cbr_plan_init(&p->init, b, &b->init, pl, &p->image, NULL, 0, MEMPLAN_SLOT, NULL));
    tensor *x = p->init.out; /* written: a residual unit's sum post-op adds into it */
    tensor *d_x = tr ? &p->init.d_out : NULL;
    for (int u = 0; u < BACKBONE_UNITS; u++) {
        backbone_unit *U = &b->u[u];
        backbone_unit_plan *P = &p->u[u];
        P->in = x, P->d_in = d_x;
        /* in forward order: block k's input gradient is block k-1's output gradient */
        const tensor *bx = x;
        tensor *bd = d_x;
        for (int k = 0; k < 3; k++) {
            if (!U->c[k].present) continue;
            memplan_region region = (k == 2 && u == BACKBONE_TAP_C5) ? MEMPLAN_FIXED : MEMPLAN_SLOT;
            tensor *sum_dst = (!tr && k == 2 && U->residual) ? x : NULL;
            CHECK(backbone_cbr_plan_init(&P->c[k], b, &U->c[k], pl, bx, bd, k == 2 && U->residual, region, sum_dst));
            bx = P->c[k].out;
            bd = tr ? &P->c[k].d_out : NULL;
        }
        if (U->residual && tr) {
            tensor *y = P->c[2].out;
            CHECK(add_plan_init(&P->pl_residual, pl->e, y, x, y)); /* c[2].bn_out += unit input */
        }
        x = P->c[2].out;
        d_x = tr ? &P->c[2].d_out : NULL;
    }
    p->c3 = p->u[BACKBONE_TAP_C3].c[2].out;
    p->c4 = p->u[BACKBONE_TAP_C4].c[2].out;
    p->c5 = p->u[BACKBONE_TAP_C5].c[2].out;
    p->d_c5 = tr ? &p->u[BACKBONE_TAP_C5].c[2].d_out : NULL;
    return OTE_OK;
}

void backbone_plan_free(backbone_plan *p, const backbone *b) {
    backbone_cbr_plan_free(&p->init, &b->init);
    for (int u = 0; u < BACKBONE_UNITS; u++) {
        for (int k = 0; k < 3; k++) backbone_cbr_plan_free(&p->u[u].c[k], &b->u[u].c[k]);
        add_plan_free(&p->u[u].pl_residual);
    }
}

int backbone_forward(backbone_plan *p, const backbone *b, eng_ctx *e, int training) {
    CHECK(backbone_cbr_forward(&p->init, &b->init, e, training)); /* image -> init.out */
    for (int u = 0; u < BACKBONE_UNITS; u++) {
        /* u[u].in -> c[0] -> c[1] -> c[2] (+ u[u].in) = u[u].c[2].out */
        for (int k = 0; k < 3; k++)
            if (b->u[u].c[k].present) CHECK(backbone_cbr_forward(&p->u[u].c[k], &b->u[u].c[k], e, training));
        if (b->u[u].residual && training) CHECK(add_forward(&p->u[u].pl_residual, e));
    }
    return OTE_OK;
}

int backbone_backward(backbone_plan *p, const backbone *b, eng_ctx *e, memplan_sim *s, const tensor *d_c3,
                      const tensor *d_c4) {
    /* unit 16's output gradient (d_c5) is in the fixed region; every other block gradient is a slot */
    for (int u = BACKBONE_UNITS - 1; u >= 0; u--) {
        const backbone_unit *U = &b->u[u];
        backbone_unit_plan *P = &p->u[u];
        if (u == BACKBONE_TAP_C4) {
            MEMPLAN_RUNV(s, add_accumulate(&P->c[2].d_out, d_c4)); /* C4's gradient via the neck */
        } else if (u == BACKBONE_TAP_C3) {
            MEMPLAN_RUNV(s, add_accumulate(&P->c[2].d_out, d_c3)); /* C3's gradient via the neck */
        }
        int first = U->c[0].present ? 0 : 1;
        for (int k = 2; k >= first; k--) {
            tensor *d_x = k > first ? &P->c[k - 1].d_out : P->d_in;
            CHECK(backbone_cbr_backward(&P->c[k], &U->c[k], e, s, d_x)); /* c[k].d_out -> d_x */
            /* the block output gradient is consumed, unless it is the unit output gradient that
             * the residual still needs */
            if (!(k == 2 && U->residual) && !(k == 2 && u == BACKBONE_TAP_C5)) memplan_drop(s, &P->c[k].d_out);
        }
        if (U->residual) {
            MEMPLAN_RUNV(s, add_accumulate(P->d_in, &P->c[2].d_out)); /* skip: unit output grad -> d_in */
            memplan_drop(s, &P->c[2].d_out);
        }
    }
    /* init block: init.d_out -> weight gradients only (no image gradient) */
    CHECK(backbone_cbr_backward(&p->init, &b->init, e, s, NULL));
    memplan_drop(s, &p->init.d_out);
    return OTE_OK;
}
