/* conv.h - 2-D convolution layer (dense, grouped, depthwise) on oneDNN: forward (training and
 * inference), backward-data and backward-weights (+bias).
 *
 * Split per the engine layer pattern:
 *   conv_layer  configuration + parameters (weights, bias) in the caller's params arena and their
 *               gradients in the grads arena (same sizes, same order, so SGD is element-wise).
 *   conv_plan   everything for one input shape: primitives, argument lists, per-plan buffers.
 *
 * Weights layout: ONE blocked layout, chosen at layer init by asking oneDNN (format_tag_any) for a
 * reference nChw16c shape, is used by forward and backward-weights for every plan (so the params
 * and grads blocks never change layout). Backward-data prefers another layout (OIhw16o16i for
 * dense convs; forcing the forward layout makes oneDNN fall back to `ref:`, onednn-notes §2.3.5),
 * so the layer also owns a small second copy of the weights in that layout, refreshed by one
 * reorder in conv_refresh_weights() (call it after every optimiser step). When both layouts are
 * the same (depthwise: Goihw16g) the copy aliases the parameters and the refresh is a no-op.
 *
 * Inference layers (cfg.post_eltwise / cfg.post_sum set) fuse ReLU/ReLU6 (clip_v2) and a residual
 * sum into the primitive with dnnl_forward_inference; their plans cannot train.
 *
 * Invariants: activations are whatever mds the caller planned (blocked nChw8c / nChw16c f32 in practice, engine/tensor.h); every
 * primitive is created through eng_create_primitive/eng_create_reorder (no `ref:`), and every
 * execute argument's md is checked against the md the primitive expects when the plan is built.
 * conv_forward/conv_backward only execute primitives and run one add loop: no allocation.
 */
#ifndef OTE_CONV_H
#define OTE_CONV_H

#include <oneapi/dnnl/dnnl.h>

#include "engine/arena.h"
#include "engine/eng.h"
#include "engine/tensor.h"

typedef enum conv_post {
    CONV_POST_NONE = 0,
    CONV_POST_RELU,  /* max(x, 0) */
    CONV_POST_RELU6, /* clip_v2(x, 0, 6): torch ReLU6 */
} conv_post;

typedef struct conv_cfg {
    int ic, oc;           /* input / output channels */
    int kh, kw;           /* kernel size */
    int stride_h, stride_w;
    int pad_t, pad_l, pad_b, pad_r; /* TF "SAME" stride-2 3x3 is t=l=0, b=r=1 */
    int groups;           /* 1 dense, ic = oc = groups depthwise; 0 is read as 1 */
    int bias;             /* 1: learnable bias (OC) */
    int src_nchw;         /* 1: the input is plain NCHW f32 (the image into the first conv). oneDNN
                           * 2.6 has no JIT kernel for IC < 16 with an nChw16c src except 1x1
                           * stride 1 (measured: 3x3 and strided convs fall back to ref:any), but
                           * has one for a plain src with IC = 3. Such a layer gives no input
                           * gradient (backward-data with a plain diff_src is ref:any): dx = NULL. */
    conv_post post_eltwise; /* inference only: fused activation after the (sum and) bias */
    int post_sum;         /* inference only: dst = conv(x) + dst (residual), before post_eltwise */
} conv_cfg;

typedef struct conv_layer {
    conv_cfg cfg;
    tensor w;       /* (OC, IC/G, KH, KW) groups=G, opaque fwd/bwd-weights layout, params arena */
    tensor b;       /* (OC) TL_X, params arena; unused (no reservation) when cfg.bias = 0 */
    tensor dw;      /* same md as w, grads arena */
    tensor db;      /* (OC) TL_X, grads arena */
    dnnl_memory_desc_t w_md;    /* the forward / backward-weights weights layout */
    dnnl_memory_desc_t wbd_md;  /* the backward-data weights layout */
    int wbd_alias;              /* 1: wbd_md == w_md, backward-data reads w directly */
    float *wbd_data;            /* owned copy in wbd_md (NULL when aliased or inference) */
    dnnl_memory_t wbd_mem;      /* view of the backward-data weights (w's data when aliased) */
    dnnl_primitive_desc_t wbd_pd; /* reorder w -> wbd (NULL when aliased) */
    dnnl_primitive_t wbd_reorder;
    dnnl_memory_t wbd_scratch;
    dnnl_primitive_attr_t attr; /* e->attr + post-ops for inference layers (NULL otherwise) */
    int inference;              /* 1: post-ops set, forward_inference only */
} conv_layer;

typedef struct conv_plan {
    conv_layer *l;
    int training;
    int has_dx;
    dnnl_primitive_desc_t fwd_pd, bwd_data_pd, bwd_w_pd;
    dnnl_primitive_t fwd, bwd_data, bwd_w;
    dnnl_exec_arg_t fwd_args[8], bd_args[8], bw_args[8], bw_acc_args[8];
    int n_fwd_args, n_bd_args, n_bw_args;
    /* accumulate = 1: backward-weights writes here, then the sum is added into the layer grads
     * (onednn-notes §2.10 12b: oneDNN overwrites diff weights). Owned, same md as dw / db. */
    float *acc_dw, *acc_db;
    dnnl_memory_t acc_dw_mem, acc_db_mem;
    /* Backward-weights on maps smaller than the kernel (P6/P7 of small inputs): oneDNN 2.6's AVX2
     * JIT refuses ih < kh (only ref:any is left, ~45 ms for 4x64x2x3 -> 64x64x3x3), so such
     * plans compute dW in plain OIHW with a direct OpenMP loop over the blocked x and dy, then
     * reorder it into the layer's weights layout. bww_naive = 1 selects that path. */
    int bww_naive;
    const tensor *bww_x, *bww_dy;   /* (N, IC, H, W) / (N, OC, OH, OW) blocked, borrowed */
    float *bww_oihw;                /* (OC, IC/G, KH, KW) plain, owned */
    dnnl_memory_t bww_oihw_mem;
    dnnl_primitive_desc_t bww_reorder_pd; /* plain OIHW -> w_md */
    dnnl_primitive_t bww_reorder;
    dnnl_exec_arg_t bww_args[3], bww_acc_args[3];
    int n_bww_args;
} conv_plan;

/* Reserves weights (+bias) in `params` and their gradients in `grads`, and fixes the weights
 * layouts. The tensors become usable after the arenas are committed; call conv_weights_from_oihw
 * (or conv_init_kaiming-like code in models/) to set values. grads may be NULL for an
 * inference-only layer. On failure the layer holds nothing (no conv_layer_free needed). */
int conv_layer_init(conv_layer *l, eng_ctx *e, const conv_cfg *cfg, arena *params, arena *grads);
void conv_layer_free(conv_layer *l);

/* Output size of the convolution along one axis (floor division, like PyTorch). */
int conv_out_size(int in, int k, int stride, int pad_before, int pad_after);

/* Builds the primitives for one input shape. x: (N, IC, H, W); y: (N, OC, OH, OW); dy like y;
 * dx like x or NULL (no input gradient). training = 0 builds forward_inference only (dy, dx
 * ignored). The caller plans the activation tensors; their mds are used as given (a plain-layout
 * dst on a blocked src makes oneDNN pick `ref:`, which is refused with OTE_EDNNL). */
int conv_plan_init(conv_plan *p, eng_ctx *e, conv_layer *l, const tensor *x, tensor *y,
                   const tensor *dy, tensor *dx, int training);
int conv_forward(conv_plan *p, eng_ctx *e);
/* dx (if planned) and dW/db. accumulate = 1 adds dW/db into the layer grads instead of writing. */
int conv_backward(conv_plan *p, eng_ctx *e, int accumulate);
void conv_plan_free(conv_plan *p);

/* Re-derives the backward-data copy of the weights; call after every change of l->w. */
int conv_refresh_weights(conv_layer *l, eng_ctx *e);
/* Plain PyTorch layout [O][I/G][KH][KW] in and out (initialisation, checkpoints). Planning-time
 * helpers: each creates (and destroys) one reorder primitive. from_oihw also refreshes. */
int conv_weights_from_oihw(conv_layer *l, eng_ctx *e, const float *oihw);
int conv_weights_to_oihw(const conv_layer *l, eng_ctx *e, float *oihw);
/* A buffer laid out exactly like the layer's weights (its SGD momentum, say: same bytes as w)
 * to / from plain OIHW (GOIHW for grouped convs), with the same reorders as the weights. */
int conv_like_weights_to_oihw(const conv_layer *l, eng_ctx *e, const float *like_w, float *oihw);
int conv_like_weights_from_oihw(const conv_layer *l, eng_ctx *e, const float *oihw, float *like_w);
/* Same for the gradient dW. */
int conv_grad_to_oihw(const conv_layer *l, eng_ctx *e, float *oihw);

/* Folds an eval-mode BatchNorm (per-output-channel gamma, beta, running mean/var, eps) into the
 * weights and bias of `dst`, an (inference) layer with the same geometry as `src` and cfg.bias = 1:
 *   s = gamma / sqrt(var + eps);  W' = W * s;  b' = (b - mean) * s + beta   (b = 0 without bias).
 * Computed in double, stored in f32. Both layers must be committed. */
int conv_fold_bn(conv_layer *dst, eng_ctx *e, const conv_layer *src, const float *gamma,
                 const float *beta, const float *mean, const float *var, float eps);

#endif
