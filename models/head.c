/* head.c - the ATSS head (see head.h): layers, init, and per tower and per level its plan,
 * forward and backward side by side.
 */
#include "models/head.h"

#include <stdlib.h>

#include "engine/add.h"

#define HEAD_CLS_BIAS (-4.59511985013459) /* -log((1 - 0.01) / 0.01), mmdet bias_init_with_prob(0.01) */

/* ------------------------------------------------------------------------------------------ */
/* Layers */

static int head_tower_init(head_tower *t, eng_ctx *e, params_table *tab, const char *name) {
    char nm[256];
    for (int i = 0; i < HEAD_TOWER_DEPTH; i++) {
        conv_cfg c = det_conv_cfg(DET_FPN_CH, DET_FPN_CH, 3, 1, 1, 0, 0);
        CHECK(conv_layer_init(&t->conv[i], e, &c, &tab->values, &tab->grads));
        PARAMS_NAME(nm, "bbox_head.%s_convs.%d.conv", name, i);
        params_add_conv(tab, nm, &t->conv[i]);
        gn_cfg gc = {DET_FPN_CH, 32, 1e-5f};
        CHECK(gn_layer_init(&t->gn[i], e, &gc, &tab->values, &tab->grads));
        PARAMS_NAME(nm, "bbox_head.%s_convs.%d.gn", name, i);
        params_add_vec(tab, nm, "weight", &t->gn[i].gamma, &t->gn[i].dgamma, DET_FPN_CH, 1);
        params_add_vec(tab, nm, "bias", &t->gn[i].beta, &t->gn[i].dbeta, DET_FPN_CH, 1);
    }
    return OTE_OK;
}

int head_init(head *h, eng_ctx *e, params_table *tab, int num_classes) {
    h->num_classes = num_classes;
    CHECK(eltwise_layer_init(&h->relu, e, &(eltwise_cfg){ELTWISE_RELU}, NULL, NULL));
    CHECK(head_tower_init(&h->cls_tower, e, tab, "cls"));
    CHECK(head_tower_init(&h->reg_tower, e, tab, "reg"));
    conv_cfg cc = det_conv_cfg(DET_FPN_CH, num_classes, 3, 1, 1, 1, 0);
    CHECK(conv_layer_init(&h->atss_cls, e, &cc, &tab->values, &tab->grads));
    params_add_conv(tab, "bbox_head.atss_cls", &h->atss_cls);
    conv_cfg cr = det_conv_cfg(DET_FPN_CH, 4, 3, 1, 1, 1, 0);
    CHECK(conv_layer_init(&h->atss_reg, e, &cr, &tab->values, &tab->grads));
    params_add_conv(tab, "bbox_head.atss_reg", &h->atss_reg);
    conv_cfg cz = det_conv_cfg(DET_FPN_CH, 1, 3, 1, 1, 1, 0);
    CHECK(conv_layer_init(&h->atss_ctr, e, &cz, &tab->values, &tab->grads));
    params_add_conv(tab, "bbox_head.atss_centerness", &h->atss_ctr);
    char nm[256];
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        CHECK(scale_layer_init(&h->scales[l], e, &tab->values, &tab->grads));
        PARAMS_NAME(nm, "bbox_head.scales.%d", l);
        params_add_vec(tab, nm, "scale", &h->scales[l].s, &h->scales[l].ds, 1, 0);
    }
    return OTE_OK;
}

int head_init_params(head *h, eng_ctx *e, rng *r, float *buf) {
    head_tower *towers[2] = {&h->cls_tower, &h->reg_tower};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < HEAD_TOWER_DEPTH; i++) {
            CHECK(params_init_conv(&towers[t]->conv[i], e, r, PARAMS_NORMAL_001, buf));
            gn_layer_reset_params(&towers[t]->gn[i]);
        }
    conv_layer *outs[3] = {&h->atss_cls, &h->atss_reg, &h->atss_ctr};
    for (int i = 0; i < 3; i++) {
        CHECK(params_init_conv(outs[i], e, r, PARAMS_NORMAL_001, buf));
        for (int c = 0; c < outs[i]->cfg.oc; c++) outs[i]->b.data[c] = i == 0 ? (float)HEAD_CLS_BIAS : 0.0f;
    }
    for (int l = 0; l < ANCHORS_LEVELS; l++) scale_layer_reset_params(&h->scales[l], 1.0f);
    return OTE_OK;
}

int head_reinit_cls(head *h, eng_ctx *e, uint64_t seed) {
    /* a fresh stream derived from the seed: N(0, 0.01) weights, prior-probability bias */
    rng r;
    rng_seed(&r, seed ^ 0x5eedc1a55ULL);
    conv_layer *l = &h->atss_cls;
    size_t n = (size_t)l->cfg.oc * l->cfg.ic * 9;
    float *buf = malloc(n * sizeof *buf);
    if (!buf) return ote_err(OTE_ENOMEM, "detector: cannot allocate the init buffer");
    int s = params_init_conv(l, e, &r, PARAMS_NORMAL_001, buf);
    free(buf);
    for (int c = 0; c < l->cfg.oc; c++) l->b.data[c] = (float)HEAD_CLS_BIAS;
    return s;
}

void head_free(head *h) {
    for (int i = 0; i < HEAD_TOWER_DEPTH; i++) {
        conv_layer_free(&h->cls_tower.conv[i]), conv_layer_free(&h->reg_tower.conv[i]);
        gn_layer_free(&h->cls_tower.gn[i]), gn_layer_free(&h->reg_tower.gn[i]);
    }
    conv_layer_free(&h->atss_cls), conv_layer_free(&h->atss_reg), conv_layer_free(&h->atss_ctr);
    for (int l = 0; l < ANCHORS_LEVELS; l++) scale_layer_free(&h->scales[l]);
    eltwise_layer_free(&h->relu);
}

/* ------------------------------------------------------------------------------------------ */
/* One tower at one level: plan, forward, backward */

/* Plans x -> out[3] through the tower's 4 blocks (tensors already registered); training: the
 * backward writes d_x (dP_l for the cls tower, d_reg_in for the reg tower). */
static int head_tower_plan_init(head_tower_plan *T, head_tower *layers, eltwise_layer *relu, det_planner *pl,
                                const tensor *x, tensor *d_x) {
    int tr = pl->training;
    for (int k = 0; k < HEAD_TOWER_DEPTH; k++) {
        tensor *d = tr ? &T->d_out[k] : NULL;
        /* x -> conv_out[k]; backward d_out[k] -> d_x */
        CHECK(det_plan_conv(pl, &T->pl_conv[k], &layers->conv[k], x, &T->conv_out[k], d, d_x));
        /* conv_out[k] -> out[k]; backward d_out[k] in place */
        CHECK(gn_plan_init(&T->pl_gn[k], pl->e, &layers->gn[k], &T->conv_out[k], &T->out[k], d, d, tr));
        /* ReLU forward fused into the GN apply; the eltwise plan serves only the training
         * backward (inference plans need none) */
        gn_plan_fuse_relu(&T->pl_gn[k], 1);
        if (tr) CHECK(eltwise_plan_init(&T->pl_relu[k], pl->e, relu, &T->out[k], &T->out[k], d, d, tr));
        x = &T->out[k];
        d_x = d;
    }
    return OTE_OK;
}

static void head_tower_plan_free(head_tower_plan *T) {
    for (int k = 0; k < HEAD_TOWER_DEPTH; k++) {
        conv_plan_free(&T->pl_conv[k]);
        gn_plan_free(&T->pl_gn[k]);
        eltwise_plan_free(&T->pl_relu[k]);
    }
}

/* x -> out[3] */
static int head_tower_forward(head_tower_plan *T, eng_ctx *e) {
    for (int k = 0; k < HEAD_TOWER_DEPTH; k++) {
        CHECK(conv_forward(&T->pl_conv[k], e)); /* out[k-1] (or P_l) -> conv_out[k] */
        CHECK(gn_forward(&T->pl_gn[k], e));     /* conv_out[k] -> out[k], + ReLU (fused) */
    }
    return OTE_OK;
}

/* d_out[3] (taken by the caller) -> the tower's input gradient; d_in_slot: that gradient when it
 * is a slot tensor (taken here), NULL when it lives outside the slots. acc: add to the shared
 * weight gradients instead of writing them. */
static int head_tower_backward(head_tower_plan *T, eng_ctx *e, memplan_sim *s, int acc, tensor *d_in_slot) {
    for (int k = HEAD_TOWER_DEPTH - 1; k >= 0; k--) {
        MEMPLAN_RUN(s, eltwise_backward(&T->pl_relu[k], e, 0)); /* d_out[k] masked by out[k] > 0 */
        MEMPLAN_RUN(s, gn_backward(&T->pl_gn[k], e, acc));      /* d_out[k] -> GN input gradient, in place */
        if (k > 0)
            memplan_take(s, &T->d_out[k - 1]);
        else if (d_in_slot)
            memplan_take(s, d_in_slot);
        MEMPLAN_RUN(s, conv_backward(&T->pl_conv[k], e, acc)); /* -> d_out[k-1] (or the tower input) */
        memplan_drop(s, &T->d_out[k]);
    }
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The head at every level: plan, forward, backward */

/* Registers one level's tensors (this order fixes their offsets in the block). */
static int head_level_tensors(head_level_plan *L, det_planner *pl, int C, int h, int w) {
    int tr = pl->training;
    head_tower_plan *ct = &L->cls_tower, *rt = &L->reg_tower;
    for (int k = 0; k < HEAD_TOWER_DEPTH; k++) {
        CHECK(det_plan_act(pl, &ct->conv_out[k], DET_FPN_CH, h, w, MEMPLAN_SAVED));
        CHECK(det_plan_act(pl, &ct->out[k], DET_FPN_CH, h, w, MEMPLAN_SAVED));
        CHECK(det_plan_act(pl, &rt->conv_out[k], DET_FPN_CH, h, w, MEMPLAN_SAVED));
        CHECK(det_plan_act(pl, &rt->out[k], DET_FPN_CH, h, w, MEMPLAN_SAVED));
        if (tr) {
            CHECK(det_plan_act(pl, &ct->d_out[k], DET_FPN_CH, h, w, MEMPLAN_SLOT));
            CHECK(det_plan_act(pl, &rt->d_out[k], DET_FPN_CH, h, w, MEMPLAN_SLOT));
        }
    }
    CHECK(det_plan_act(pl, &L->cls, C, h, w, MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &L->reg_unscaled, 4, h, w, MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &L->reg, 4, h, w, MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &L->ctr, 1, h, w, MEMPLAN_SAVED));
    if (tr) {
        CHECK(det_plan_act(pl, &L->d_ctr_in, DET_FPN_CH, h, w, MEMPLAN_SLOT));
        CHECK(det_plan_act(pl, &L->d_reg_in, DET_FPN_CH, h, w, MEMPLAN_SLOT));
        CHECK(det_plan_act(pl, &L->d_cls, C, h, w, MEMPLAN_FIXED));
        CHECK(det_plan_act(pl, &L->d_reg, 4, h, w, MEMPLAN_FIXED));
        CHECK(det_plan_act(pl, &L->d_ctr, 1, h, w, MEMPLAN_FIXED));
    }
    return OTE_OK;
}

int head_plan_init(head_plan *p, head *h, det_planner *pl, const tensor p_in[ANCHORS_LEVELS],
                   tensor d_p[ANCHORS_LEVELS]) {
    int tr = pl->training;
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        head_level_plan *L = &p->lv[l];
        const tensor *P = &p_in[l];
        CHECK(head_level_tensors(L, pl, h->num_classes, P->h, P->w));
        /* P_l -> cls_tower.out[3]; backward -> dP_l (written) */
        CHECK(head_tower_plan_init(&L->cls_tower, &h->cls_tower, &h->relu, pl, P, tr ? &d_p[l] : NULL));
        /* P_l -> reg_tower.out[3]; backward -> d_reg_in */
        CHECK(head_tower_plan_init(&L->reg_tower, &h->reg_tower, &h->relu, pl, P, tr ? &L->d_reg_in : NULL));
        const int top = HEAD_TOWER_DEPTH - 1; /* the towers' last block */
        tensor *cls_top = &L->cls_tower.out[top], *reg_top = &L->reg_tower.out[top];
        /* cls_top -> cls; backward d_cls -> cls_tower.d_out[3] */
        CHECK(det_plan_conv(pl, &L->pl_cls, &h->atss_cls, cls_top, &L->cls, &L->d_cls, &L->cls_tower.d_out[top]));
        /* reg_top -> reg_unscaled; backward d_reg -> reg_tower.d_out[3] */
        CHECK(det_plan_conv(pl, &L->pl_reg, &h->atss_reg, reg_top, &L->reg_unscaled, &L->d_reg,
                            &L->reg_tower.d_out[top]));
        /* reg_top -> ctr; backward d_ctr -> d_ctr_in */
        CHECK(det_plan_conv(pl, &L->pl_ctr, &h->atss_ctr, reg_top, &L->ctr, &L->d_ctr, &L->d_ctr_in));
        /* reg_unscaled -> reg; backward d_reg in place */
        CHECK(scale_plan_init(&L->pl_scale, pl->e, &h->scales[l], &L->reg_unscaled, &L->reg, tr ? &L->d_reg : NULL,
                              tr ? &L->d_reg : NULL, tr));
    }
    return OTE_OK;
}

void head_plan_free(head_plan *p) {
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        head_level_plan *L = &p->lv[l];
        head_tower_plan_free(&L->cls_tower), head_tower_plan_free(&L->reg_tower);
        conv_plan_free(&L->pl_cls), conv_plan_free(&L->pl_reg), conv_plan_free(&L->pl_ctr);
        scale_plan_free(&L->pl_scale);
    }
}

int head_forward(head_plan *p, eng_ctx *e) {
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        head_level_plan *L = &p->lv[l];
        CHECK(head_tower_forward(&L->cls_tower, e)); /* P_l -> cls_tower.out[3] */
        CHECK(conv_forward(&L->pl_cls, e));          /* cls_tower.out[3] -> cls */
        CHECK(head_tower_forward(&L->reg_tower, e)); /* P_l -> reg_tower.out[3] */
        CHECK(conv_forward(&L->pl_reg, e));          /* reg_tower.out[3] -> reg_unscaled */
        CHECK(scale_forward(&L->pl_scale, e));       /* reg_unscaled -> reg */
        CHECK(conv_forward(&L->pl_ctr, e));          /* reg_tower.out[3] -> ctr */
    }
    return OTE_OK;
}

int head_backward(head_plan *p, eng_ctx *e, memplan_sim *s, tensor d_p[ANCHORS_LEVELS]) {
    const int top = HEAD_TOWER_DEPTH - 1; /* the towers' last block */
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        head_level_plan *L = &p->lv[l];
        int acc = l > 0; /* shared tower / output weights: level 0 writes, the others add */
        /* cls: d_cls -> cls_tower.d_out[3] -> ... -> dP_l (written) */
        memplan_take(s, &L->cls_tower.d_out[top]);
        MEMPLAN_RUN(s, conv_backward(&L->pl_cls, e, acc));
        CHECK(head_tower_backward(&L->cls_tower, e, s, acc, NULL));
        /* reg: d_reg (Scale backward in place) -> reg_tower.d_out[3]; d_ctr -> d_ctr_in, summed */
        MEMPLAN_RUN(s, scale_backward(&L->pl_scale, e, 0));
        memplan_take(s, &L->reg_tower.d_out[top]);
        MEMPLAN_RUN(s, conv_backward(&L->pl_reg, e, acc));
        memplan_take(s, &L->d_ctr_in);
        MEMPLAN_RUN(s, conv_backward(&L->pl_ctr, e, acc));
        MEMPLAN_RUNV(s, add_accumulate(&L->reg_tower.d_out[top], &L->d_ctr_in));
        memplan_drop(s, &L->d_ctr_in);
        /* reg_tower.d_out[3] -> ... -> d_reg_in, then dP_l += d_reg_in */
        CHECK(head_tower_backward(&L->reg_tower, e, s, acc, &L->d_reg_in));
        MEMPLAN_RUNV(s, add_accumulate(&d_p[l], &L->d_reg_in));
        memplan_drop(s, &L->d_reg_in);
    }
    return OTE_OK;
}

void head_plan_views(const head_plan *p, int training, head_out out[ANCHORS_LEVELS], head_grad grad[ANCHORS_LEVELS]) {
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        const head_level_plan *L = &p->lv[l];
        out[l].cls = L->cls.data, out[l].reg = L->reg.data, out[l].ctr = L->ctr.data;
        out[l].blk = L->cls.blk;
        if (grad) {
            grad[l].blk = L->cls.blk;
            grad[l].cls = training ? L->d_cls.data : NULL;
            grad[l].reg = training ? L->d_reg.data : NULL;
            grad[l].ctr = training ? L->d_ctr.data : NULL;
        }
    }
}
