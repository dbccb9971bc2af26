/* scale.h - a learnable scalar Scale (mmdet's Scale, one per FPN level in the ATSS head):
 * y = s * x;  dx = s * dy;  ds = sum over the whole tensor of dy * x.
 *
 * Layer/plan split as every engine layer: scale_layer holds the scalar s (params arena, 1 float)
 * and its gradient ds (grads arena); scale_plan points at the caller's tensors for one shape.
 * The backward needs x, so the training forward must not run in place (y != x); dx may alias dy.
 * Padded lanes: y and dx are s * 0 = 0 there, and they add 0 to ds (the padding rule guarantees
 * zero padding in x and dy).
 *
 * ds is reduced deterministically: per-(n, channel block) partial sums in double (float runs of
 * 32 pixels), added in a fixed order, so results do not depend on the thread schedule.
 * Ownership: the plan owns one small buffer of partial sums (allocated at plan time only).
 */
#ifndef OTE_SCALE_H
#define OTE_SCALE_H

#include "engine/eng.h"
#include "engine/tensor.h"

typedef struct scale_layer {
    tensor s;  /* (1) TL_X, params arena; init 1.0 (mmdet Scale) */
    tensor ds; /* (1) TL_X, grads arena */
} scale_layer;

typedef struct scale_plan {
    scale_layer *l;
    const tensor *x;  /* (N, C, H, W) blocked */
    tensor *y;        /* (N, C, H, W) blocked */
    const tensor *dy; /* (N, C, H, W) blocked, NULL when !training */
    tensor *dx;       /* (N, C, H, W) blocked, NULL when no input gradient is wanted */
    double *part;     /* (N * CB) partial sums of dy * x */
} scale_plan;

int scale_layer_init(scale_layer *l, eng_ctx *e, arena *params, arena *grads);
/* s = v (mmdet initialises 1.0); call after the params arena is committed. */
void scale_layer_reset_params(scale_layer *l, float v);
void scale_layer_free(scale_layer *l);

int scale_plan_init(scale_plan *p, eng_ctx *e, scale_layer *l, const tensor *x, tensor *y, const tensor *dy,
                    tensor *dx, int training);
int scale_forward(scale_plan *p, eng_ctx *e);
/* ds written (accumulate 0) or added (accumulate 1); dx = s*dy if the plan has dx. */
int scale_backward(scale_plan *p, eng_ctx *e, int accumulate);
void scale_plan_free(scale_plan *p);

#endif
