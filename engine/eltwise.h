/* eltwise.h - ReLU6 and ReLU activation layers on oneDNN, forward and backward.
 *
 * Both backward passes use the "use_dst_for_bwd" algorithms, so they need only the layer's output:
 *   ReLU6: backward dnnl_eltwise_clip_v2_use_dst_for_bwd (alpha 0, beta 6). Its gradient passes
 *          only for 0 < y < 6, exactly as torch's ReLU6/hardtanh (zero at x = 0 and x = 6; the
 *          older `clip` and `bounded_relu` pass it at 6, onednn-notes §2.2 / §2.10.5).
 *          The FORWARD uses plain dnnl_eltwise_clip_v2 (same values): measured on oneDNN 2.6.3,
 *          the clip_v2_use_dst_for_bwd forward on nChw16c falls back to ref:any whenever C is not
 *          a multiple of 16 (C = 24: ref, C = 64: jit), while clip_v2 forward is jit for every C,
 *          and the use_dst backward accepts the clip_v2 forward pd as its hint (jit).
 *   ReLU:  dnnl_eltwise_relu_use_dst_for_bwd (alpha 0) both ways (jit for every C): gradient
 *          dy * [y > 0] (torch's threshold_backward on the result).
 * In place is legal in both directions: forward with y == x (ReLU6 on BN's output) and backward
 * with dx == dy. The out-of-place variant (y != x) is the same primitive on separate tensors (the
 * FPN's ReLU(P6) while P6 is still needed).
 *
 * The layer has no parameters; the init/plan/forward/backward/free split follows the engine layer
 * pattern so model code treats every layer the same way. Forward/backward only execute.
 */
#ifndef OTE_ELTWISE_H
#define OTE_ELTWISE_H

#include <oneapi/dnnl/dnnl.h>

#include "engine/arena.h"
#include "engine/eng.h"
#include "engine/tensor.h"

typedef enum eltwise_kind {
    ELTWISE_RELU6 = 1,
    ELTWISE_RELU = 2,
} eltwise_kind;

typedef struct eltwise_cfg {
    eltwise_kind kind;
} eltwise_cfg;

typedef struct eltwise_layer {
    eltwise_cfg cfg;
    dnnl_alg_kind_t fwd_alg; /* forward algorithm (same values as bwd_alg's forward) */
    dnnl_alg_kind_t alg;     /* backward: a use_dst_for_bwd algorithm */
    float alpha, beta;
} eltwise_layer;

typedef struct eltwise_plan {
    eltwise_layer *l;
    int training;
    int has_bwd;
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    dnnl_primitive_t fwd, bwd;
    dnnl_exec_arg_t fwd_args[3], bwd_args[4];
    int n_fwd_args, n_bwd_args;
} eltwise_plan;

/* params / grads are unused (no parameters) and may be NULL. */
int eltwise_layer_init(eltwise_layer *l, eng_ctx *e, const eltwise_cfg *cfg, arena *params, arena *grads);
void eltwise_layer_free(eltwise_layer *l);

/* x, y: same shape and layout; y may be x (in place). dy like y; dx like x, may be dy (in place),
 * or NULL (no input gradient: no backward primitive). training = 0: forward_inference only. */
int eltwise_plan_init(eltwise_plan *p, eng_ctx *e, eltwise_layer *l, const tensor *x, tensor *y, const tensor *dy,
                      tensor *dx, int training);
int eltwise_forward(eltwise_plan *p, eng_ctx *e);
/* dx from y and dy. `accumulate` is accepted for uniformity with the other layers and ignored:
 * there are no parameter gradients. */
int eltwise_backward(eltwise_plan *p, eng_ctx *e, int accumulate);
void eltwise_plan_free(eltwise_plan *p);

#endif
