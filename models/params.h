/* params.h - the detector's parameter store: the params and grads arenas, the table of named
 * parameters / buffers in mmdetection state_dict order, their exchange in plain PyTorch layouts,
 * and the initialisation distributions the components draw their conv weights from.
 *
 * Ownership: the table owns both arenas (every layer's weights, biases, BN / GN affine parameters
 * and BN running statistics live in `values`; each gradient sits in `grads` at the same offset as
 * its parameter) and the entry array. Entries point into the layers, which belong to the
 * components (backbone, neck, head) and must not move once registered.
 *
 * Invariants: entries appear in registration order, which is the state_dict order and also the
 * order in which the components draw random numbers at initialisation. BN running statistics and
 * num_batches_tracked are buffers (no gradient, never registered with SGD). One num_batches_tracked
 * counter serves every BN (they all step together).
 */
#ifndef OTE_PARAMS_H
#define OTE_PARAMS_H

#include <stdio.h>

#include "engine/arena.h"
#include "engine/bn.h"
#include "engine/conv.h"
#include "engine/rng.h"
#include "engine/sgd.h"
#include "engine/ote.h"
#include "models/det.h"

#define PARAMS_MAX 400

/* snprintf that must not truncate (names are short; a longer one is a programming error) */
#define PARAMS_NAME(buf, ...) ASSERT(snprintf(buf, sizeof buf, __VA_ARGS__) < (int)sizeof buf)

typedef enum params_kind {
    PARAMS_CONV_WEIGHT, /* a conv layer's weight (blocked copy; exchanged as OIHW) */
    PARAMS_VEC,         /* a plain f32 vector (bias, BN / GN affine, running stats, Scale) */
    PARAMS_NBT,         /* num_batches_tracked (the table's counter) */
} params_kind;

typedef struct params_entry {
    det_param_info info;
    char name[96];
    params_kind kind;
    conv_layer *conv; /* PARAMS_CONV_WEIGHT */
    tensor *t, *g;    /* PARAMS_VEC: the value and its gradient (g NULL for running stats) */
} params_entry;

typedef struct params_table {
    arena values, grads;
    params_entry *e; /* (PARAMS_MAX) */
    int n;
    long nbt;        /* num_batches_tracked of every BN */
} params_table;

/* Conv weight initialisations (the numbers follow the reference implementations named). */
typedef enum params_init {
    PARAMS_KAIMING_UNIFORM = 0,  /* kaiming-uniform, fan_in (pytorchcv backbone) */
    PARAMS_KAIMING_NORMAL = 1,   /* kaiming-normal, fan_out (torchvision backbone) */
    PARAMS_XAVIER_UNIFORM = 2,   /* xavier-uniform (mmdet FPN) */
    PARAMS_NORMAL_001 = 3,       /* N(0, 0.01) (mmdet ATSS head) */
} params_init;

int params_table_init(params_table *p);
void params_table_free(params_table *p);

/* Registration (names are "<prefix>.weight" etc., mmdetection's). */
void params_add_conv(params_table *p, const char *prefix, conv_layer *l); /* weight (+ bias) */
void params_add_vec(params_table *p, const char *prefix, const char *suffix, tensor *t, tensor *g, int n, int ndim);
void params_add_bn(params_table *p, const char *prefix, bn_layer *b); /* affine, running stats, nbt */

/* The SGD momentum buffer of entry i in its plain PyTorch layout (what torch.optim.SGD keeps as
 * state['momentum_buffer']), from / into opt's momentum arena. OTE_EINVAL naming the entry if it
 * does not train (BN running statistics, num_batches_tracked). */
int params_momentum_get(const params_table *p, eng_ctx *e, const sgd *opt, int i, float *dst);
int params_momentum_set(const params_table *p, eng_ctx *e, const sgd *opt, int i, const float *src);

/* Registers every trainable entry with SGD, in table order. */
int params_register_sgd(const params_table *p, sgd *opt);
/* Commits both arenas (after every layer reserved its tensors). */
int params_commit(params_table *p);
/* Refreshes every conv's derived weight copies after the values changed in place (SGD). */
int params_refresh_convs(const params_table *p, eng_ctx *e);

/* Draws a conv's weights (OIHW, into buf: at least oc * ic/groups * kh * kw floats) and loads them. */
void params_fill_conv(const conv_layer *l, rng *r, params_init mode, float *buf);
int params_init_conv(conv_layer *l, eng_ctx *e, rng *r, params_init mode, float *buf);

/* Exchange by index, plain PyTorch layouts (see det_param_get / det_param_set / det_grad_get). */
int params_find(const params_table *p, const char *name);
int params_get(const params_table *p, eng_ctx *e, int i, float *dst);
int params_set(params_table *p, eng_ctx *e, int i, const float *src);
int params_grad_get(const params_table *p, eng_ctx *e, int i, float *dst);

#endif
