/* bnr.h - fused BatchNorm (+ ReLU6) training layer: a hand-written OpenMP kernel on blocked f32
 * that replaces the oneDNN pair bn_plan + eltwise_plan (engine/bn.h, engine/eltwise.h) on the SAME
 * bn_layer, so a model can switch per block without touching its parameters.
 *
 * Semantics (identical to bn + ReLU6, torch.nn.BatchNorm2d followed by torch.nn.ReLU6):
 *   forward (training): per channel c over M = N*H*W values, batch mean and biased variance,
 *     y = gamma*(x - mean)/sqrt(var + eps) + beta, then y = clip(y, 0, 6) if relu6; the running
 *     statistics are updated as bn.h documents (momentum from bn_cfg, unbiased variance, double).
 *   backward: dy' = dy where 0 < y < 6 and 0 elsewhere (if relu6: torch's hardtanh backward, the
 *     same mask as eltwise.h), then dbeta = sum dy', dgamma = sum dy'*xhat,
 *     dx = gamma*rstd*(dy' - dbeta/M - xhat*dgamma/M); dgamma/dbeta written or accumulated.
 *   frozen layer (bn.h frozen): the running statistics take the batch statistics' place, are not
 *     updated, and dx = gamma*rstd*dy' (the statistics are constants); dgamma/dbeta as above.
 *
 * Memory passes (the reason for the layer): forward reads x twice and writes y once; backward reads
 * x and dy twice and writes dx once. The ReLU6 mask is NOT read from y: the backward recomputes
 * the pre-clip value from x with the forward's saved float coefficients through the same inline
 * function, which is bit-identical to what the forward wrote (bnr_mask_mismatches() checks it),
 * so y may even be overwritten between forward and backward.
 *
 * Work split: "units" = (channel block, sample, spatial chunk), chosen at plan time so that every
 * thread is busy even for N = 1 and one channel block. Each pass is one OpenMP region over groups
 * of channel blocks sized to stay in L2 between the statistics and the apply sweep (one barrier
 * per group, at most 4 groups): per-unit partial sums (float runs of BNR_RUN pixels added into
 * double), per-channel combination in double in unit order (deterministic for a given plan, i.e.
 * for a given thread count), then the element-wise apply. Tiny tensors run on one thread. Forward
 * statistics are shifted by a per-channel float k (mean of the first pixels of sample 0), so
 * |mean| >> std does not cancel.
 *
 * Ownership: bnr_plan owns one heap block allocated in bnr_plan_init (partial sums, saved
 * statistics and coefficients); forward/backward never allocate. Tensors belong to the caller and
 * must stay valid (same data pointers) from planning until the last backward.
 *
 * Invariants: x != y (the backward reads x); dx may alias dy; C need not be a multiple of 16: padded
 * lanes never enter the statistics and are written as exact zeros in y and dx.
 */
#ifndef OTE_BNR_H
#define OTE_BNR_H

#include "engine/bn.h"
#include "engine/eng.h"
#include "engine/tensor.h"

typedef struct bnr_plan {
    bn_layer *l;
    const tensor *x; /* (N, C, H, W) blocked: BN input, read by forward and backward */
    tensor *y;       /* (N, C, H, W) blocked: output (clipped to [0, 6] if relu6) */
    const tensor *dy; /* (N, C, H, W) blocked: gradient of y */
    tensor *dx;       /* (N, C, H, W) blocked: gradient of x; may be dy */
    int relu6;
    int n, blk, cb, hw; /* N, channel block B (8 or 16), ceil(C/B), H*W */
    long m;           /* N*H*W values per channel */
    int splits;       /* spatial chunks per (sample, block) */
    int chunk;        /* pixels per chunk (the last may be shorter) */
    int units;        /* cb * n * splits, ordered (block, sample, chunk) */
    int gcb_f, gcb_b; /* channel blocks per cache group in forward / backward */
    int serial;       /* 1: tensor too small to be worth a parallel region */
    double *part;     /* (units, 2, 16) partial sums of the current pass */
    double *mean, *var; /* (Cb*16) batch statistics of the last forward (biased var; 0 on padding) */
    double *dmk;      /* (Cb*16) mean - k in double */
    double *rstd;     /* (Cb*16) 1/sqrt(var + eps) */
    float *coef;      /* (Cb, 8, 16): k, a, b (forward: y = (x - k)*a + b), P, Q, R (backward) */
    float *cal;       /* (2, Cb*16): gamma, beta computed by a calibrating forward (bn.h calibrate) */
    void *block;      /* the one allocation behind the arrays above */
} bnr_plan;

/* x, y: (N, C, H, W) blocked f32 with C = l->cfg.c, y != x; dy like y; dx like x, may be dy.
 * l must have gradients (dgamma/dbeta). Needs N*H*W >= 2 (as torch in training). */
int bnr_plan_init(bnr_plan *p, eng_ctx *e, bn_layer *l, const tensor *x, tensor *y, tensor *dy, tensor *dx,
                  int relu6);
/* Training forward: batch statistics, y, running-statistics update. If l->calibrate is set, the
 * forward first replaces gamma/beta as bn.h describes (then clears the flag). */
int bnr_forward(bnr_plan *p, eng_ctx *e);
/* dx, and dgamma/dbeta written (accumulate = 0) or added (accumulate = 1). Uses the statistics of
 * the last bnr_forward on this plan. */
int bnr_backward(bnr_plan *p, eng_ctx *e, int accumulate);
/* Test hook: number of logical elements whose stored y differs (bitwise) from the value the
 * backward recomputes for its mask (clip of the pre-activation from x and the saved coefficients).
 * Must be 0 right after bnr_forward. */
long bnr_mask_mismatches(const bnr_plan *p);
void bnr_plan_free(bnr_plan *p);

#endif
