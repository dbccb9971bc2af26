/* gn.h - GroupNorm (forward and backward) as a hand-written OpenMP kernel on blocked (nChw8c / nChw16c) f32.
 *
 * oneDNN 2.6 has no group normalisation (onednn-notes §2.9), so this works directly on the blocked
 * activations. Statistics are per sample n and group g over M = (C/G)*H*W elements with the biased
 * variance and eps (1e-5, as torch.nn.GroupNorm); the affine is per channel:
 *   y = gamma_c * (x - mean_ng) * rstd_ng + beta_c,   rstd = 1/sqrt(var + eps).
 * Backward (spec-detector §11): dbeta_c = sum dy, dgamma_c = sum dy*xhat,
 *   dx = rstd * (gamma_c*dy - mean_M(gamma*dy) - xhat * mean_M(gamma*dy*xhat)).
 *
 * Ownership: gn_layer owns nothing but tensor views of gamma/beta (params arena) and
 * dgamma/dbeta (grads arena). gn_plan owns one small heap block (allocated in gn_plan_init, never
 * during a step) for per-(n, block) partial sums, the saved mean/rstd per (n, g) and per-(n, c)
 * coefficients. The activations belong to the caller.
 *
 * Invariants: C % G == 0; C need not be a multiple of 16, and the padded lanes of y and dx are
 * written as exact zeros (their coefficients are zero), so the blocked-layout padding rule holds.
 * Forward needs x != y in training (the backward reads x); dx may alias dy (in place).
 * Several plans (different shapes, e.g. the 5 FPN levels) may share one layer; backward with
 * accumulate = 1 adds into dgamma/dbeta instead of overwriting them.
 */
#ifndef OTE_GN_H
#define OTE_GN_H

#include "engine/eng.h"
#include "engine/tensor.h"

typedef struct gn_cfg {
    int channels; /* C */
    int groups;   /* G, C % G == 0 */
    float eps;    /* 0 means the torch default 1e-5 */
} gn_cfg;

typedef struct gn_layer {
    int c, g;
    float eps;
    tensor gamma;  /* (C) TL_X, params; init 1 */
    tensor beta;   /* (C) TL_X, params; init 0 */
    tensor dgamma; /* (C) TL_X, grads */
    tensor dbeta;  /* (C) TL_X, grads */
} gn_layer;

typedef struct gn_plan {
    gn_layer *l;
    const tensor *x; /* (N, C, H, W) blocked; must stay valid until backward */
    tensor *y;       /* (N, C, H, W) blocked */
    const tensor *dy; /* (N, C, H, W) blocked, or NULL when !training */
    tensor *dx;       /* (N, C, H, W) blocked, or NULL (no input gradient wanted) */
    int n, cb, hw, training;
    int relu;      /* 1: the forward writes max(y, 0) (gn_plan_fuse_relu) */
    int chunks;    /* spatial chunks of the forward's apply pass (the thread count) */
    double *part;  /* (N, Cb, 2, 16) per-block lane partial sums (scratch of this plan) */
    double *mean;  /* (N, G) saved by forward */
    double *rstd;  /* (N, G) saved by forward */
    float *coef;   /* (N, Cb, 3, 16) per-channel coefficients of the current pass */
    void *block;   /* the one allocation behind the arrays above */
} gn_plan;

/* Reserves gamma/beta in `params` and dgamma/dbeta in `grads`. gamma = 1 and beta = 0 are set by
 * gn_layer_reset_params() after the params arena is committed. */
int gn_layer_init(gn_layer *l, eng_ctx *e, const gn_cfg *cfg, arena *params, arena *grads);
/* torch init: gamma 1, beta 0 (call after arena_commit of the params arena). */
void gn_layer_reset_params(gn_layer *l);
void gn_layer_free(gn_layer *l);

int gn_plan_init(gn_plan *p, eng_ctx *e, gn_layer *l, const tensor *x, tensor *y, const tensor *dy,
                 tensor *dx, int training);
/* Fuses a following ReLU into the forward: y = max(GN(x), 0), with the same values and zero
 * pattern as oneDNN's relu (the backward keeps using the ReLU's use_dst backward on y, and the GN
 * backward reads x, so it is unchanged). Saves the ReLU's read + write pass, and the apply pass is
 * split by rows like the next convolution's forward, so each thread reads rows it wrote. */
void gn_plan_fuse_relu(gn_plan *p, int on);
int gn_forward(gn_plan *p, eng_ctx *e);
/* dgamma/dbeta are written (accumulate 0) or added (accumulate 1); dx written if the plan has one. */
int gn_backward(gn_plan *p, eng_ctx *e, int accumulate);
void gn_plan_free(gn_plan *p);

#endif
