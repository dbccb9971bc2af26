/* neck.c - the FPN neck (see neck.h): layers, init, and its plan, forward and backward side by
 * side. The top-down adds run in place (upsample_forward_add into the lateral output), so the
 * merged levels cost no extra tensors; the backward mirrors them with accumulating upsample
 * backwards into the coarser lateral gradient.
 */
#include "models/neck.h"

#include <string.h>

#include "engine/add.h"

/* Channels of the backbone taps C3, C4, C5 (MobileNetV2 units 5, 12, 16). */
static const int NECK_IN_CH[NECK_TAPS] = {32, 96, 320};

int neck_init(neck *n, eng_ctx *e, params_table *tab) {
    char nm[256];
    CHECK(eltwise_layer_init(&n->relu, e, &(eltwise_cfg){ELTWISE_RELU}, NULL, NULL));
    for (int i = 0; i < NECK_TAPS; i++) {
        conv_cfg c = det_conv_cfg(NECK_IN_CH[i], DET_FPN_CH, 1, 1, 1, 1, 0);
        CHECK(conv_layer_init(&n->lateral[i], e, &c, &tab->values, &tab->grads));
        PARAMS_NAME(nm, "neck.lateral_convs.%d.conv", i);
        params_add_conv(tab, nm, &n->lateral[i]);
    }
    for (int i = 0; i < ANCHORS_LEVELS; i++) {
        conv_cfg c = det_conv_cfg(DET_FPN_CH, DET_FPN_CH, 3, i >= NECK_P6 ? 2 : 1, 1, 1, 0);
        CHECK(conv_layer_init(&n->fpn[i], e, &c, &tab->values, &tab->grads));
        PARAMS_NAME(nm, "neck.fpn_convs.%d.conv", i);
        params_add_conv(tab, nm, &n->fpn[i]);
    }
    return OTE_OK;
}

int neck_init_params(neck *n, eng_ctx *e, rng *r, float *buf) {
    for (int i = 0; i < NECK_TAPS; i++) {
        CHECK(params_init_conv(&n->lateral[i], e, r, PARAMS_XAVIER_UNIFORM, buf));
        memset(n->lateral[i].b.data, 0, sizeof(float) * (size_t)n->lateral[i].cfg.oc);
    }
    for (int i = 0; i < ANCHORS_LEVELS; i++) {
        CHECK(params_init_conv(&n->fpn[i], e, r, PARAMS_XAVIER_UNIFORM, buf));
        memset(n->fpn[i].b.data, 0, sizeof(float) * (size_t)n->fpn[i].cfg.oc);
    }
    return OTE_OK;
}

void neck_free(neck *n) {
    for (int i = 0; i < NECK_TAPS; i++) conv_layer_free(&n->lateral[i]);
    for (int i = 0; i < ANCHORS_LEVELS; i++) conv_layer_free(&n->fpn[i]);
    eltwise_layer_free(&n->relu);
}

/* Registers every neck tensor (this order fixes their offsets in the block). */
static int neck_plan_tensors(neck_plan *p, det_planner *pl, const tensor *c3, const tensor *c4, const tensor *c5) {
    CHECK(det_plan_act(pl, &p->lat_c3, DET_FPN_CH, c3->h, c3->w, MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &p->lat_c4, DET_FPN_CH, c4->h, c4->w, MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &p->lat_c5, DET_FPN_CH, c5->h, c5->w, MEMPLAN_SAVED));
    int ph[ANCHORS_LEVELS], pw[ANCHORS_LEVELS];
    ph[NECK_P3] = c3->h, pw[NECK_P3] = c3->w, ph[NECK_P4] = c4->h, pw[NECK_P4] = c4->w;
    ph[NECK_P5] = c5->h, pw[NECK_P5] = c5->w;
    for (int l = NECK_P6; l < ANCHORS_LEVELS; l++) /* P6, P7: the stride-2 3x3 convs' output size */
        ph[l] = conv_out_size(ph[l - 1], 3, 2, 1, 1), pw[l] = conv_out_size(pw[l - 1], 3, 2, 1, 1);
    for (int l = 0; l < ANCHORS_LEVELS; l++)
        CHECK(det_plan_act(pl, &p->out[l], DET_FPN_CH, ph[l], pw[l], MEMPLAN_SAVED));
    CHECK(det_plan_act(pl, &p->p6_relu, DET_FPN_CH, ph[NECK_P6], pw[NECK_P6], MEMPLAN_SAVED));
    if (!pl->training) return OTE_OK;
    for (int l = 0; l < ANCHORS_LEVELS; l++)
        CHECK(det_plan_act(pl, &p->d_out[l], DET_FPN_CH, ph[l], pw[l], MEMPLAN_FIXED));
    CHECK(det_plan_act(pl, &p->d_p6_relu, DET_FPN_CH, ph[NECK_P6], pw[NECK_P6], MEMPLAN_FIXED));
    CHECK(det_plan_act(pl, &p->d_p5_via_p6, DET_FPN_CH, ph[NECK_P5], pw[NECK_P5], MEMPLAN_FIXED));
    CHECK(det_plan_act(pl, &p->d_lat_c3, DET_FPN_CH, c3->h, c3->w, MEMPLAN_FIXED));
    CHECK(det_plan_act(pl, &p->d_lat_c4, DET_FPN_CH, c4->h, c4->w, MEMPLAN_FIXED));
    CHECK(det_plan_act(pl, &p->d_lat_c5, DET_FPN_CH, c5->h, c5->w, MEMPLAN_FIXED));
    CHECK(det_plan_act(pl, &p->d_c3, c3->c, c3->h, c3->w, MEMPLAN_FIXED));
    CHECK(det_plan_act(pl, &p->d_c4, c4->c, c4->h, c4->w, MEMPLAN_FIXED));
    return OTE_OK;
}

int neck_plan_init(neck_plan *p, neck *n, det_planner *pl, const tensor *c3, const tensor *c4, const tensor *c5,
                   tensor *d_c5) {
    eng_ctx *e = pl->e;
    int tr = pl->training;
    CHECK(neck_plan_tensors(p, pl, c3, c4, c5));
    tensor *P3 = &p->out[NECK_P3], *P4 = &p->out[NECK_P4], *P5 = &p->out[NECK_P5], *P6 = &p->out[NECK_P6],
           *P7 = &p->out[NECK_P7];
    tensor *dP3 = &p->d_out[NECK_P3], *dP4 = &p->d_out[NECK_P4], *dP5 = &p->d_out[NECK_P5],
           *dP6 = &p->d_out[NECK_P6], *dP7 = &p->d_out[NECK_P7];
    /* conv plans: x -> y; backward dy -> dx */
    CHECK(det_plan_conv(pl, &p->pl_lateral[0], &n->lateral[0], c3, &p->lat_c3, &p->d_lat_c3, &p->d_c3));
    CHECK(det_plan_conv(pl, &p->pl_lateral[1], &n->lateral[1], c4, &p->lat_c4, &p->d_lat_c4, &p->d_c4));
    CHECK(det_plan_conv(pl, &p->pl_lateral[2], &n->lateral[2], c5, &p->lat_c5, &p->d_lat_c5, tr ? d_c5 : NULL));
    /* lat_c4 += up2x(lat_c5); backward d_lat_c5 += sum2x2(d_lat_c4) */
    CHECK(upsample_plan_init(&p->pl_top_down4, e, &p->lat_c5, &p->lat_c4, tr ? &p->d_lat_c4 : NULL,
                             tr ? &p->d_lat_c5 : NULL, tr));
    /* lat_c3 += up2x(lat_c4); backward d_lat_c4 += sum2x2(d_lat_c3) */
    CHECK(upsample_plan_init(&p->pl_top_down3, e, &p->lat_c4, &p->lat_c3, tr ? &p->d_lat_c3 : NULL,
                             tr ? &p->d_lat_c4 : NULL, tr));
    CHECK(det_plan_conv(pl, &p->pl_fpn[NECK_P3], &n->fpn[NECK_P3], &p->lat_c3, P3, dP3, &p->d_lat_c3));
    CHECK(det_plan_conv(pl, &p->pl_fpn[NECK_P4], &n->fpn[NECK_P4], &p->lat_c4, P4, dP4, &p->d_lat_c4));
    CHECK(det_plan_conv(pl, &p->pl_fpn[NECK_P5], &n->fpn[NECK_P5], &p->lat_c5, P5, dP5, &p->d_lat_c5));
    CHECK(det_plan_conv(pl, &p->pl_fpn[NECK_P6], &n->fpn[NECK_P6], P5, P6, dP6, &p->d_p5_via_p6));
    /* P6 -> p6_relu; backward d_p6_relu masked in place */
    CHECK(eltwise_plan_init(&p->pl_p6_relu, e, &n->relu, P6, &p->p6_relu, tr ? &p->d_p6_relu : NULL,
                            tr ? &p->d_p6_relu : NULL, tr));
    CHECK(det_plan_conv(pl, &p->pl_fpn[NECK_P7], &n->fpn[NECK_P7], &p->p6_relu, P7, dP7, &p->d_p6_relu));
    return OTE_OK;
}

void neck_plan_free(neck_plan *p) {
    for (int i = 0; i < NECK_TAPS; i++) conv_plan_free(&p->pl_lateral[i]);
    for (int i = 0; i < ANCHORS_LEVELS; i++) conv_plan_free(&p->pl_fpn[i]);
    upsample_plan_free(&p->pl_top_down4), upsample_plan_free(&p->pl_top_down3);
    eltwise_plan_free(&p->pl_p6_relu);
}

int neck_forward(neck_plan *p, eng_ctx *e) {
    CHECK(conv_forward(&p->pl_lateral[2], e));             /* C5 -> lat_c5 */
    CHECK(conv_forward(&p->pl_lateral[1], e));             /* C4 -> lat_c4 */
    CHECK(upsample_forward_add(&p->pl_top_down4, e));      /* lat_c4 += up2x(lat_c5) */
    CHECK(conv_forward(&p->pl_lateral[0], e));             /* C3 -> lat_c3 */
    CHECK(upsample_forward_add(&p->pl_top_down3, e));      /* lat_c3 += up2x(lat_c4) */
    CHECK(conv_forward(&p->pl_fpn[NECK_P3], e));           /* lat_c3 -> P3 */
    CHECK(conv_forward(&p->pl_fpn[NECK_P4], e));           /* lat_c4 -> P4 */
    CHECK(conv_forward(&p->pl_fpn[NECK_P5], e));           /* lat_c5 -> P5 */
    CHECK(conv_forward(&p->pl_fpn[NECK_P6], e));           /* P5 -> P6 */
    CHECK(eltwise_forward(&p->pl_p6_relu, e));             /* P6 -> p6_relu */
    CHECK(conv_forward(&p->pl_fpn[NECK_P7], e));           /* p6_relu -> P7 */
    return OTE_OK;
}

int neck_backward(neck_plan *p, eng_ctx *e) {
    CHECK(conv_backward(&p->pl_fpn[NECK_P7], e, 0));       /* dP7 -> d_p6_relu */
    CHECK(eltwise_backward(&p->pl_p6_relu, e, 0));         /* d_p6_relu masked by P6 > 0, in place */
    add_accumulate(&p->d_out[NECK_P6], &p->d_p6_relu);     /* dP6 += P7's share */
    CHECK(conv_backward(&p->pl_fpn[NECK_P6], e, 0));       /* dP6 -> d_p5_via_p6 */
    add_accumulate(&p->d_out[NECK_P5], &p->d_p5_via_p6);   /* dP5 += P6's share */
    CHECK(conv_backward(&p->pl_fpn[NECK_P5], e, 0));       /* dP5 -> d_lat_c5 */
    CHECK(conv_backward(&p->pl_fpn[NECK_P4], e, 0));       /* dP4 -> d_lat_c4 */
    CHECK(conv_backward(&p->pl_fpn[NECK_P3], e, 0));       /* dP3 -> d_lat_c3 */
    CHECK(upsample_backward(&p->pl_top_down3, e, 1));      /* d_lat_c4 += sum2x2(d_lat_c3) */
    CHECK(conv_backward(&p->pl_lateral[0], e, 0));         /* d_lat_c3 -> d_c3 */
    CHECK(upsample_backward(&p->pl_top_down4, e, 1));      /* d_lat_c5 += sum2x2(d_lat_c4) */
    CHECK(conv_backward(&p->pl_lateral[1], e, 0));         /* d_lat_c4 -> d_c4 */
    CHECK(conv_backward(&p->pl_lateral[2], e, 0));         /* d_lat_c5 -> d_c5 (the backbone's C5 gradient) */
    return OTE_OK;
}
