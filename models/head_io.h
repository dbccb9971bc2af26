/* head_io.h - the ATSS head's per-level outputs and their gradients, as the loss and the
 * post-processing read them.
 *
 * The pointers are borrowed (the detector's arenas own the bytes). Every array is f32 in oneDNN's
 * blocked nChw<blk>c layout (engine/tensor.h: blk_off; blk = 8 or 16, the engine context's
 * block): cls (N, C, H_l, W_l), reg (N, 4, H_l, W_l) which is bbox_pred AFTER the level's Scale,
 * ctr (N, 1, H_l, W_l). Gradient arrays have the same shapes and are fully overwritten, channel
 * padding included (kept zero).
 */
#ifndef OTE_HEAD_IO_H
#define OTE_HEAD_IO_H

typedef struct head_out {
    const float *cls; /* (N, C, H, W) blocked: class logits */
    const float *reg; /* (N, 4, H, W) blocked: normalised deltas (bbox_pred = scale * atss_reg) */
    const float *ctr; /* (N, 1, H, W) blocked: centerness logits */
    int blk;          /* channels per block of all three arrays (8 or 16) */
} head_out;

typedef struct head_grad {
    float *cls; /* (N, C, H, W) blocked */
    float *reg; /* (N, 4, H, W) blocked */
    float *ctr; /* (N, 1, H, W) blocked */
    int blk;    /* channels per block (equal to the outputs') */
} head_grad;

#endif
