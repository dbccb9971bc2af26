/* bn.h - BatchNorm2d on oneDNN (use_scale | use_shift), with PyTorch's running statistics.
 *
 * Split per the engine layer pattern:
 *   bn_layer  gamma, beta, running_mean, running_var (all (C) TL_X) in the caller's params arena,
 *             and dgamma, dbeta plus two always-zero placeholders in the grads arena, reserved in
 *             the same order with the same sizes, so params and grads blocks have identical
 *             layouts. The running statistics are checkpointed parameters that receive no
 *             gradient: an optimiser must skip them (weight decay would shrink them);
 *             bn_stats_span() gives their byte range in the params block.
 *   bn_plan   primitives for one input shape, plus the batch mean/variance saved by the training
 *             forward for the backward.
 *
 * Training forward (out of place: the backward needs src) normalises with the biased batch
 * variance and then updates the running statistics exactly as torch.nn.BatchNorm2d does:
 *   run_mean = (1 - m) * run_mean + m * mean,  run_var = (1 - m) * run_var + m * var * n / (n - 1)
 * (momentum m = 0.1, n = N*H*W, computed in double as PyTorch's CPU kernel does). Eval forward
 * uses the running statistics (use_global_stats) and may run in place. The backward (dnnl_backward)
 * gives dx, dgamma, dbeta; dx may alias dy (in place). oneDNN needs SHIFT in the backward when
 * use_shift is set (onednn-notes §2.2).
 */
#ifndef OTE_BN_H
#define OTE_BN_H

#include <oneapi/dnnl/dnnl.h>

#include "engine/arena.h"
#include "engine/eng.h"
#include "engine/tensor.h"

typedef struct bn_cfg {
    int c;          /* channels */
    float eps;      /* PyTorch default 1e-5 */
    float momentum; /* PyTorch default 0.1 */
} bn_cfg;

typedef struct bn_layer {
    bn_cfg cfg;
    tensor gamma, beta;          /* (C) TL_X, params */
    tensor run_mean, run_var;    /* (C) TL_X, params (no gradient; consecutive) */
    tensor dgamma, dbeta;        /* (C) TL_X, grads */
    tensor drun_mean, drun_var;  /* (C) TL_X, grads: placeholders that stay zero (layout parity) */
    /* 1: the next fused training forward (engine/bnr.h) first sets gamma = sqrt(batch var + eps)
     * and beta = batch mean + beta, so it outputs x + old beta on that batch, then clears the flag.
     * For BN-folded pretrained weights imported as "identity + bias" (train/import_backbone.h):
     * training-mode BN would otherwise renormalise every channel to unit variance and discard the
     * pretrained per-channel scales; this data-dependent init keeps the pretrained function at the
     * first step and trains BN normally afterwards. The oneDNN path (bn_forward) refuses it. */
    int calibrate;
    /* 1: training with frozen statistics (mmdetection's norm_eval=True, BN in eval mode while the
     * rest trains): the fused training layer (engine/bnr.h) normalises with the running
     * statistics, leaves them unchanged, and its backward is the affine map's (dx = gamma*rstd*dy');
     * gamma and beta still get their gradients. Every sample is then independent of the others in
     * the batch (the data-parallel equivalence test relies on it). The oneDNN path refuses it. */
    int frozen;
} bn_layer;

typedef struct bn_plan {
    bn_layer *l;
    int training;
    long n_per_channel;          /* N*H*W */
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    dnnl_primitive_t fwd, bwd;
    dnnl_exec_arg_t fwd_args[8], bwd_args[12], bwd_acc_args[12];
    int n_fwd_args, n_bwd_args;
    float *mean, *var;           /* (C) batch statistics of the last training forward (owned) */
    dnnl_memory_t mean_mem, var_mem;
    float *acc_dgamma, *acc_dbeta; /* (C) accumulate-mode outputs (owned) */
    dnnl_memory_t acc_dgamma_mem, acc_dbeta_mem;
} bn_plan;

/* cfg with PyTorch's defaults (eps 1e-5, momentum 0.1). */
bn_cfg bn_cfg_default(int c);
/* grads may be NULL (inference-only layer). */
int bn_layer_init(bn_layer *l, eng_ctx *e, const bn_cfg *cfg, arena *params, arena *grads);
void bn_layer_free(bn_layer *l);
/* PyTorch's initial values: gamma 1, beta 0, running_mean 0, running_var 1 (after commit). */
void bn_reset_params(bn_layer *l);
/* Byte range [*offset, *offset + *bytes) of running_mean and running_var in the params arena. */
void bn_stats_span(const bn_layer *l, size_t *offset, size_t *bytes);

/* x, y: (N, C, H, W) activations (y may be x for training = 0); dy like y; dx like x, may be dy
 * (in place), or NULL, in which case the (unused) input gradient is written over dy.
 * training = 0: eval forward with running statistics, no backward. */
int bn_plan_init(bn_plan *p, eng_ctx *e, bn_layer *l, const tensor *x, tensor *y, tensor *dy, tensor *dx,
                 int training);
/* Training: normalise with batch statistics and update the running statistics. */
int bn_forward(bn_plan *p, eng_ctx *e);
/* dx (or in place over dy), and dgamma/dbeta written (accumulate = 0) or added (accumulate = 1). */
int bn_backward(bn_plan *p, eng_ctx *e, int accumulate);
void bn_plan_free(bn_plan *p);

#endif
