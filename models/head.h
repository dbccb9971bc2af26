/* head.h - the ATSS head (spec-detector.md §4): per FPN level P_l (N, 64, H_l, W_l), with weights
 * shared across the levels,
 *   cls tower: 4 x (3x3 conv 64 -> 64, GroupNorm(32), ReLU) -> atss_cls        -> cls (N, C, H_l, W_l)
 *   reg tower: 4 x (3x3 conv 64 -> 64, GroupNorm(32), ReLU) -> atss_reg, Scale_l -> reg (N, 4, H_l, W_l)
 *                                                          -> atss_centerness  -> ctr (N, 1, H_l, W_l)
 * (H_l, W_l) = ceil(H / s, W / s) for s = 8, 16, 32, 64, 128 (P3..P7).
 *
 * Ownership: the head owns its layers (weights in the detector's params_table arenas); a
 * head_plan owns its primitives, its tensors are registered with the plan's memplan.
 *
 * Invariants: level 0's backward writes the shared weight gradients, the other levels add to
 * them. The tower conv outputs and GN outputs are saved (ReLU forward is fused into the GN
 * apply, in place); tower gradients are slots, the loss gradients d_cls / d_reg / d_ctr are fixed
 * (the loss writes every level before the backward starts). The Scale backward runs in place on
 * d_reg.
 */
#ifndef OTE_HEAD_H
#define OTE_HEAD_H

#include <stdint.h>

#include "engine/conv.h"
#include "engine/eltwise.h"
#include "engine/gn.h"
#include "engine/scale.h"
#include "models/anchors.h"
#include "models/det_impl.h"
#include "models/head_io.h"
#include "models/params.h"

#define HEAD_TOWER_DEPTH 4

/* The stacked convs of one tower (bbox_head.cls_convs / reg_convs). */
typedef struct head_tower {
    conv_layer conv[HEAD_TOWER_DEPTH]; /* 3x3 64 -> 64, no bias */
    gn_layer gn[HEAD_TOWER_DEPTH];     /* GroupNorm(32 groups, 64 channels) */
} head_tower;

typedef struct head {
    int num_classes;
    head_tower cls_tower, reg_tower;
    conv_layer atss_cls, atss_reg, atss_ctr;  /* 3x3 64 -> C / 4 / 1, with bias */
    scale_layer scales[ANCHORS_LEVELS];       /* one learnable scalar per level on atss_reg */
    eltwise_layer relu;                       /* the towers' ReLU (backward only: forward is fused) */
} head;

/* One tower at one level; every tensor is (N, 64, H_l, W_l) nChw<B>c. */
typedef struct head_tower_plan {
    tensor conv_out[HEAD_TOWER_DEPTH]; /* conv k output = GN k input (saved) */
    tensor out[HEAD_TOWER_DEPTH];      /* GN k output, ReLU in place = block k output (saved) */
    tensor d_out[HEAD_TOWER_DEPTH];    /* gradient of block k's output; ReLU and GN backward in place
                                        * (slot; training only) */
    conv_plan pl_conv[HEAD_TOWER_DEPTH];
    gn_plan pl_gn[HEAD_TOWER_DEPTH];
    eltwise_plan pl_relu[HEAD_TOWER_DEPTH]; /* training only */
} head_tower_plan;

typedef struct head_level_plan {
    head_tower_plan cls_tower, reg_tower;
    /* outputs (saved) */
    tensor cls;          /* (N, C, H_l, W_l) nChw<B>c class logits */
    tensor reg_unscaled; /* (N, 4, H_l, W_l) nChw<B>c atss_reg output, before Scale_l */
    tensor reg;          /* (N, 4, H_l, W_l) nChw<B>c Scale_l * reg_unscaled (bbox_pred) */
    tensor ctr;          /* (N, 1, H_l, W_l) nChw<B>c centerness logits */
    /* gradients (training only) */
    tensor d_ctr_in;     /* (N, 64, H_l, W_l) nChw<B>c atss_centerness's input gradient, added into
                          * the reg tower's last d_out (slot) */
    tensor d_reg_in;     /* (N, 64, H_l, W_l) nChw<B>c the reg tower's input gradient, added into dP_l
                          * (slot; the cls tower writes dP_l directly) */
    tensor d_cls;        /* (N, C, H_l, W_l) nChw<B>c dL/dcls from the loss (fixed) */
    tensor d_reg;        /* (N, 4, H_l, W_l) nChw<B>c dL/dreg from the loss; Scale backward turns it
                          * into dL/dreg_unscaled in place (fixed) */
    tensor d_ctr;        /* (N, 1, H_l, W_l) nChw<B>c dL/dctr from the loss (fixed) */
    conv_plan pl_cls, pl_reg, pl_ctr;
    scale_plan pl_scale;
} head_level_plan;

typedef struct head_plan {
    head_level_plan lv[ANCHORS_LEVELS]; /* P3..P7 */
} head_plan;

/* Creates the layers and registers bbox_head.{cls,reg}_convs.i.{conv,gn}, atss_cls, atss_reg,
 * atss_centerness and scales.l. */
int head_init(head *h, eng_ctx *e, params_table *tab, int num_classes);
/* mmdet ATSS init: N(0, 0.01) convs, zero biases except the classifier's prior-probability bias,
 * GN affine reset, scales 1. */
int head_init_params(head *h, eng_ctx *e, rng *r, float *buf);
/* Re-draws atss_cls as at creation, from a stream derived from seed (class-count change). */
int head_reinit_cls(head *h, eng_ctx *e, uint64_t seed);
void head_free(head *h);

/* Plans P[l] -> cls, reg, ctr for every level (training: d_p[l] receives dL/dP_l). */
int head_plan_init(head_plan *p, head *h, det_planner *pl, const tensor p_in[ANCHORS_LEVELS],
                   tensor d_p[ANCHORS_LEVELS]);
void head_plan_free(head_plan *p);
/* P3..P7 -> cls, reg, ctr of every level */
int head_forward(head_plan *p, eng_ctx *e);
/* d_cls, d_reg, d_ctr of every level -> d_p[l] (written) and the head's parameter gradients;
 * s != NULL: slot simulation only. */
int head_backward(head_plan *p, eng_ctx *e, memplan_sim *s, tensor d_p[ANCHORS_LEVELS]);
/* Borrowed views of the outputs (and, for a training plan, of the loss gradients; grad may be NULL). */
void head_plan_views(const head_plan *p, int training, head_out out[ANCHORS_LEVELS], head_grad grad[ANCHORS_LEVELS]);

#endif
