/* sgd.h - SGD with momentum and weight decay, exactly PyTorch 1.x torch.optim.SGD (dampening 0,
 * no Nesterov), mmcv's linear learning-rate warm-up, and gradient-norm clipping.
 *
 * Per element, every step (spec-detector §9):
 *   g = grad + wd * theta;  buf = g on the first step (torch initialises the buffer with a clone
 *   of g), else buf = momentum * buf + g;  theta -= lr * buf.
 *
 * Which parameters train: the optimiser keeps an explicit list of trainable tensors, registered
 * at plan time with sgd_add(param, grad). Anything in the params arena that is not registered
 * (BatchNorm running mean/var, any frozen tensor) is never touched, so BN running statistics may
 * live in the params arena next to the weights (they are saved with the weights). The grads arena
 * need not mirror the params arena: each registration records both offsets. Registered tensors
 * that sit next to each other in both arenas are merged into one span at sgd_commit(), so a
 * typical model is updated by a handful of long element-wise OpenMP loops.
 *
 * Ownership: sgd owns its momentum arena (one buffer per registered tensor, same byte size,
 * zeroed at commit) and its span list. Params and grads belong to the model. sgd_step allocates
 * nothing. Padded/blocked layouts are fine: zero params with zero grads stay zero.
 */
#ifndef OTE_SGD_H
#define OTE_SGD_H

#include <stddef.h>

#include "engine/arena.h"
#include "engine/tensor.h"

typedef struct sgd_span {
    size_t p_off, g_off, m_off; /* byte offsets in the params, grads and momentum arenas */
    size_t n;                   /* floats */
} sgd_span;

typedef struct sgd {
    float momentum;       /* 0.9 in OTE */
    float weight_decay;   /* 1e-4 in OTE, applied to every registered parameter */
    arena *params, *grads;
    arena mom;            /* owned: momentum buffers, registered in sgd_add order */
    sgd_span *spans;
    int n_spans, cap_spans;
    long steps;           /* completed steps; 0 means the next step initialises the buffers */
    int committed;
} sgd;

void sgd_init(sgd *o, float momentum, float weight_decay, arena *params, arena *grads);
/* Registers a trainable tensor and its gradient (same byte size; param in o->params, grad in
 * o->grads). Plan time only, before sgd_commit(). */
int sgd_add(sgd *o, const tensor *param, const tensor *grad);
/* Merges adjacent spans and allocates the zeroed momentum arena. */
int sgd_commit(sgd *o);
/* One update of every registered parameter with learning rate lr. */
void sgd_step(sgd *o, double lr);
/* The momentum buffer of the registered tensor that starts at byte offset p_off of the params
 * arena (param->offset), NULL if no registered tensor starts there. Valid after sgd_commit; the
 * buffer has the parameter's byte size and layout. For saving and restoring a training
 * (train/resume.h), together with o->steps (0 = the next step initialises the buffers). */
float *sgd_momentum_of(const sgd *o, size_t p_off);
/* Forgets the momentum (the next step re-initialises the buffers, as a fresh torch optimiser). */
void sgd_reset_state(sgd *o);
/* L2 norm of all registered gradients (double accumulation). */
double sgd_grad_norm(const sgd *o);
/* torch.nn.utils.clip_grad_norm_ / mmcv grad_clip: coef = max_norm / (norm + 1e-6); if coef < 1,
 * scale every registered gradient by coef. Returns the norm before clipping. */
double sgd_clip_grad_norm(sgd *o, double max_norm);
void sgd_free(sgd *o);

/* mmcv linear warm-up: base_lr * (1 - (1 - iter/warmup_iters) * (1 - ratio)) for
 * iter < warmup_iters, base_lr from then on (OTE: warmup_iters 200, ratio 1/3). */
double sgd_lr_warmup(double base_lr, long iter, long warmup_iters, double ratio);

#endif
