/* add.h - element-wise add of two activations (residual units, FPN top-down path) and the gradient
 * fan-out helpers.
 *
 * Forward: y = a + b on blocked (nChw8c / nChw16c) f32 with oneDNN's binary add (dnnl_binary_add). y may alias a
 * (in place, e.g. the FPN's L4 <- L4 + up(L5)); it must not alias b unless b == a.
 *
 * Backward of y = a + b is the identity into both inputs: da = dy and db = dy. The model should
 * normally ALIAS rather than copy: give the producers of a and of b the same dy tensor as their
 * incoming gradient. That is legal when at most one of the two consumers of dy overwrites it in
 * place (BN/ReLU6 backward may run in place on their diff_dst) and that one runs last in the
 * reverse order; otherwise copy once with add_copy() so each branch owns its gradient.
 *
 * Fan-out (one tensor read by two consumers, e.g. a residual input or FPN level P5 feeding both
 * fpn_3 and the head): the tensor's gradient is the SUM of both consumers' input gradients. Let
 * the first consumer write dx, and the second write its dx into a transient tensor, then
 * add_accumulate(dx, tmp) (dx += tmp); or use a layer's accumulate flag where it has one
 * (upsample_backward). The padding stays zero because 0 + 0 = 0.
 *
 * Ownership: add_plan owns its primitive and descriptor; tensors belong to the caller.
 * add_forward only executes; add_copy/add_accumulate are plain OpenMP loops (no allocation).
 */
#ifndef OTE_ADD_H
#define OTE_ADD_H

#include <oneapi/dnnl/dnnl.h>

#include "engine/eng.h"
#include "engine/tensor.h"

typedef struct add_plan {
    const tensor *a; /* (N, C, H, W) blocked */
    const tensor *b; /* (N, C, H, W) blocked */
    tensor *y;       /* (N, C, H, W) blocked, may be a */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_exec_arg_t args[4];
    int nargs;
} add_plan;

int add_plan_init(add_plan *p, eng_ctx *e, const tensor *a, const tensor *b, tensor *y);
int add_forward(add_plan *p, eng_ctx *e);
void add_plan_free(add_plan *p);

/* dst = src over the whole physical buffer (same shape and layout). */
void add_copy(tensor *dst, const tensor *src);
/* dst += src over the whole physical buffer (same shape and layout). */
void add_accumulate(tensor *dst, const tensor *src);

#endif
