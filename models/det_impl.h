/* det_impl.h - what the detector's component files (backbone.c, neck.c, head.c) share with
 * det.c; private to models/, not API.
 *
 * det_planner is the context of one plan being built: the batch shape and mode, the memory planner
 * that places each tensor (models/memplan.h) and the FLOP counter. Components plan their tensors and
 * primitives through it in forward order; det.c owns it for the duration of the build.
 *
 * Shape comments in the component headers write activation layouts as nChw<B>c: f32 blocked by
 * B channels, B = the engine context's channel block (eng_ctx.blk: 16 on AVX-512, 8 on AVX2;
 * engine/tensor.h).
 */
#ifndef OTE_DET_IMPL_H
#define OTE_DET_IMPL_H

#include "engine/conv.h"
#include "engine/eng.h"
#include "models/memplan.h"

#define DET_FPN_CH 64 /* channels of every FPN level and of the head towers (spec §3-§4) */

typedef struct det_planner {
    eng_ctx *e;
    memplan *mem;
    int n;         /* batch size */
    int training;  /* 1: training plan (backward primitives, gradients); 0: inference */
    double flops;  /* dense + depthwise conv FLOPs of one step, counted as convs are planned */
} det_planner;

/* A conv config: k x k, symmetric padding k/2, or with tf_pad TF "SAME" on stride-2 3x3 convs. */
conv_cfg det_conv_cfg(int ic, int oc, int k, int stride, int groups, int bias, int tf_pad);

/* Plans conv l: x -> y, and in a training plan the backward dy -> dx (dx NULL: no data gradient,
 * e.g. the first conv) and the weight gradient; counts its FLOPs. */
int det_plan_conv(det_planner *pl, conv_plan *cp, conv_layer *l, const tensor *x, tensor *y, const tensor *dy,
                  tensor *dx);

/* Plans an (N, c, h, w) nChw<B>c activation of the plan's batch in the given region. */
static inline int det_plan_act(det_planner *pl, tensor *t, int c, int h, int w, memplan_region region) {
    return memplan_act(pl->mem, pl->e, t, pl->n, c, h, w, region);
}

#endif
