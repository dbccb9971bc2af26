/* neck.h - the FPN neck (spec-detector.md §3): C3, C4, C5 -> P3..P7, 64 channels each.
 *
 *   lat_c5 = lateral_convs.2(C5)                      (N, 64, H/32, W/32)
 *   lat_c4 = lateral_convs.1(C4) + up2x(lat_c5)       (N, 64, H/16, W/16)
 *   lat_c3 = lateral_convs.0(C3) + up2x(lat_c4)       (N, 64, H/8,  W/8)
 *   P3, P4, P5 = fpn_convs.0/1/2(lat_c3 / lat_c4 / lat_c5)   (3x3, stride 1)
 *   P6 = fpn_convs.3(P5)                              (N, 64, H/64,  W/64)   stride 2 (mmdet
 *   P7 = fpn_convs.4(relu(P6))                        (N, 64, H/128, W/128)  add_extra_convs='on_output')
 * (H/64 and H/128 round up: ceil, as the stride-2 convs produce.) up2x is nearest-neighbour.
 *
 * Ownership: the neck owns its layers (weights in the detector's params_table arenas); a neck_plan
 * owns its primitives, its tensors are registered with the plan's memplan. Every neck gradient is in
 * the fixed region (the head writes d_out for all levels before the neck backward runs), so the
 * neck takes no part in the slot simulation.
 */
#ifndef OTE_NECK_H
#define OTE_NECK_H

#include "engine/conv.h"
#include "engine/eltwise.h"
#include "engine/upsample.h"
#include "models/anchors.h"
#include "models/det_impl.h"
#include "models/params.h"

#define NECK_TAPS 3 /* backbone inputs C3, C4, C5 */

/* Index of each output level in neck_plan.out / d_out (and of fpn_convs). */
enum { NECK_P3 = 0, NECK_P4, NECK_P5, NECK_P6, NECK_P7 };

typedef struct neck {
    conv_layer lateral[NECK_TAPS];             /* 1x1 C3 (32) / C4 (96) / C5 (320) -> 64, with bias */
    conv_layer fpn[ANCHORS_LEVELS];    /* 3x3 64 -> 64, with bias; 3 and 4 have stride 2 */
    eltwise_layer relu;                /* relu(P6) before fpn_convs.4 */
} neck;

typedef struct neck_plan {
    /* forward (saved) */
    tensor lat_c3;                     /* (N, 64, H/8,  W/8)  nChw<B>c lateral(C3) + up2x(lat_c4) */
    tensor lat_c4;                     /* (N, 64, H/16, W/16) nChw<B>c lateral(C4) + up2x(lat_c5) */
    tensor lat_c5;                     /* (N, 64, H/32, W/32) nChw<B>c lateral(C5) */
    tensor out[ANCHORS_LEVELS];        /* (N, 64, H/s, W/s) nChw<B>c P3..P7, s = 8..128 */
    tensor p6_relu;                    /* (N, 64, H/64, W/64) nChw<B>c relu(P6), fpn_convs.4's input */
    /* backward (fixed; training only) */
    tensor d_out[ANCHORS_LEVELS];      /* (N, 64, H/s, W/s) nChw<B>c dL/dP3..P7, written by the head */
    tensor d_p6_relu;                  /* (N, 64, H/64, W/64) nChw<B>c dL/d relu(P6); ReLU backward in
                                        * place turns it into P7's share of dL/dP6 */
    tensor d_p5_via_p6;                /* (N, 64, H/32, W/32) nChw<B>c P6's share of dL/dP5 */
    tensor d_lat_c3;                   /* (N, 64, H/8,  W/8)  nChw<B>c dL/d lat_c3 */
    tensor d_lat_c4;                   /* (N, 64, H/16, W/16) nChw<B>c dL/d lat_c4 (+ top-down share) */
    tensor d_lat_c5;                   /* (N, 64, H/32, W/32) nChw<B>c dL/d lat_c5 (+ top-down share) */
    tensor d_c3;                       /* (N, 32, H/8,  W/8)  nChw<B>c dL/dC3, added by the backbone */
    tensor d_c4;                       /* (N, 96, H/16, W/16) nChw<B>c dL/dC4, added by the backbone */
    conv_plan pl_lateral[NECK_TAPS], pl_fpn[ANCHORS_LEVELS];
    upsample_plan pl_top_down4;        /* lat_c4 += up2x(lat_c5) */
    upsample_plan pl_top_down3;        /* lat_c3 += up2x(lat_c4) */
    eltwise_plan pl_p6_relu;           /* P6 -> p6_relu */
} neck_plan;

/* Creates the layers and registers neck.lateral_convs.i.conv / neck.fpn_convs.i.conv. */
int neck_init(neck *n, eng_ctx *e, params_table *tab);
/* mmdet FPN init: xavier-uniform weights, zero bias. */
int neck_init_params(neck *n, eng_ctx *e, rng *r, float *buf);
void neck_free(neck *n);

/* Plans C3, C4, C5 -> P3..P7 (training: d_c5 is the backbone's C5 gradient, written by
 * lateral_convs.2's backward; d_c3 / d_c4 are the plan's own). */
int neck_plan_init(neck_plan *p, neck *n, det_planner *pl, const tensor *c3, const tensor *c4, const tensor *c5,
                   tensor *d_c5);
void neck_plan_free(neck_plan *p);
/* C3, C4, C5 -> out[] (P3..P7) */
int neck_forward(neck_plan *p, eng_ctx *e);
/* d_out[] -> d_c3, d_c4, d_c5 and the neck's parameter gradients */
int neck_backward(neck_plan *p, eng_ctx *e);

#endif
