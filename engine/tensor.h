/* tensor.h - tensor views: a logical shape, a physical oneDNN layout, and a place in an arena.
 *
 * Activations and their gradients are f32 in oneDNN's blocked nChw<B>c layout end to end
 * (onednn-notes §2.4), B = the context's channel block (eng_ctx.blk: 16 where oneDNN dispatches
 * AVX-512, 8 on AVX2, whose JIT kernels only take nChw8c): element (n, c, h, w) of a tensor with C
 * channels lives at
 *   ((n * ceil(C/B) + c/B) * H * W + h * W + w) * B + c % B
 * and the channel padding (c >= C inside the last block) must stay zero. Weights use whatever
 * blocked layout the convolution primitive chose; parameters that are plain vectors (bias, BN/GN
 * gamma/beta, scales) use layout TL_X.
 *
 * The oneDNN memory object is created when the tensor is planned (with no buffer) and pointed at
 * its arena when the arena is committed, so argument lists can be built at plan time.
 */
#ifndef OTE_TENSOR_H
#define OTE_TENSOR_H

#include <stddef.h>

#include "engine/arena.h"

struct dnnl_memory;
struct eng_ctx;

typedef enum tensor_layout {
    TL_NONE = 0,
    TL_BLOCKED, /* activations: (N, C, H, W) blocked by `blk` (8 or 16) channels: nChw8c / nChw16c */
    TL_NCHW,    /* plain row-major (N, C, H, W) */
    TL_X,       /* plain vector of n elements (dims n, 1, 1, 1) */
    TL_OPAQUE,  /* layout chosen by a primitive (conv weights); dims are the logical OIHW/GOIHW */
} tensor_layout;

typedef struct tensor {
    float *data;              /* NULL until the arena is committed */
    int n, c, h, w;           /* logical dims; for weights: O, I(per group), KH, KW */
    int groups;               /* weights only: number of groups (1 = dense) */
    int blk;                  /* TL_BLOCKED only: channels per block (8 or 16) */
    tensor_layout layout;
    size_t bytes;             /* physical size including blocked padding */
    arena *home;              /* where the data lives (NULL for external buffers) */
    size_t offset;            /* offset in home */
    struct dnnl_memory *mem;  /* oneDNN view of the same bytes (owned by the tensor) */
} tensor;

/* Plans an f32 blocked activation (nChw<e->blk>c) of logical shape (n, c, h, w) in arena `a`. */
int tensor_plan_act(struct eng_ctx *e, tensor *t, int n, int c, int h, int w, arena *a);
/* Plans a plain f32 tensor: TL_NCHW (n, c, h, w) or TL_X (n elements; pass c=h=w=1). */
int tensor_plan_plain(struct eng_ctx *e, tensor *t, tensor_layout layout, int n, int c, int h, int w, arena *a);
/* Binds a tensor to an external buffer instead of an arena (tests, I/O). */
int tensor_set_data(tensor *t, float *data);
/* Destroys the oneDNN memory object; the bytes belong to the arena. */
void tensor_free(tensor *t);

/* Number of logical elements n*c*h*w (or n for TL_X). */
size_t tensor_numel(const tensor *t);
/* Largest channel block of any ISA (sizes of per-block scratch arrays). */
#define TENSOR_MAX_BLK 16
/* Offset of logical element (n, c, h, w) in a blocked (N, C, H, W) array with B channels per block. */
static inline size_t blk_off(int C, int H, int W, int B, int n, int c, int h, int w) {
    int cb = (C + B - 1) / B;
    return ((((size_t)n * cb + (size_t)(c / B)) * H + h) * W + w) * B + (size_t)(c % B);
}
/* Number of channel blocks of a blocked tensor. */
static inline int tensor_cblocks(const tensor *t) { return (t->c + t->blk - 1) / t->blk; }
/* Copies between a plain NCHW buffer and an activation tensor (pure C; for I/O and tests). */
void tensor_from_nchw(tensor *t, const float *src);
void tensor_to_nchw(const tensor *t, float *dst);

#endif
