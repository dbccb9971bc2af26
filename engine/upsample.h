/* upsample.h - nearest-neighbour 2x upsampling (FPN top-down path) on blocked (nChw8c / nChw16c) f32.
 *
 * Exact 2x only: y is (N, C, 2H, 2W) for x (N, C, H, W); anything else is rejected with
 * OTE_EINVAL (OTE input sizes are multiples of 32, so the FPN always doubles exactly, and then
 * torch's nearest, floor(dst * in / out), is plain replication).
 *
 * Forward y = up(x) and forward-add y += up(x) (the FPN's L4 <- L4 + up(L5) in one pass, saving
 * a full write + read of the upsampled tensor); backward dx = (or +=, accumulate = 1) the 2x2 block
 * sum of dy. All three are hand-written OpenMP loops: oneDNN's resampling backward is several times
 * slower than this block sum (onednn-notes §2.8; measured again in bench/bench_engine_h2.c), and
 * the hand-written forward is at least as fast as oneDNN's (same bench), so no primitive is used.
 *
 * Ownership: the plan only points at caller tensors; nothing is allocated. Padding lanes of y/dx
 * are copies/sums of zero padding, so they stay zero.
 */
#ifndef OTE_UPSAMPLE_H
#define OTE_UPSAMPLE_H

#include "engine/eng.h"
#include "engine/tensor.h"

typedef struct upsample_plan {
    const tensor *x;  /* (N, C, H, W) blocked */
    tensor *y;        /* (N, C, 2H, 2W) blocked */
    const tensor *dy; /* (N, C, 2H, 2W) blocked, NULL when !training */
    tensor *dx;       /* (N, C, H, W) blocked, NULL when no input gradient is wanted */
} upsample_plan;

int upsample_plan_init(upsample_plan *p, eng_ctx *e, const tensor *x, tensor *y, const tensor *dy, tensor *dx,
                       int training);
/* y = up(x) */
int upsample_forward(upsample_plan *p, eng_ctx *e);
/* y += up(x) */
int upsample_forward_add(upsample_plan *p, eng_ctx *e);
/* dx = blocksum2x2(dy) (accumulate 0) or dx += blocksum2x2(dy) (accumulate 1) */
int upsample_backward(upsample_plan *p, eng_ctx *e, int accumulate);
void upsample_plan_free(upsample_plan *p);

#endif
