/* params.c - the detector's parameter store (see params.h): registration under mmdetection
 * names, SGD registration, exchange in plain PyTorch layouts, and the conv initialisations.
 *
 * Nothing here knows the network: the components register their layers in state_dict order and
 * call params_init_conv with the distribution their reference uses.
 */
#include "models/params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int params_table_init(params_table *p) {
    memset(p, 0, sizeof *p);
    arena_init(&p->values, "params");
    arena_init(&p->grads, "grads");
    p->e = calloc(PARAMS_MAX, sizeof *p->e);
    if (!p->e) return ote_err(OTE_ENOMEM, "detector: cannot allocate the parameter table");
    return OTE_OK;
}

void params_table_free(params_table *p) {
    arena_free(&p->values), arena_free(&p->grads);
    free(p->e);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------------------------------ */
/* Registration */

static params_entry *params_add(params_table *p, params_kind kind, const char *name) {
    ASSERT(p->n < PARAMS_MAX);
    params_entry *q = &p->e[p->n++];
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", name);
    q->info.name = q->name;
    q->kind = kind;
    return q;
}

void params_add_conv(params_table *p, const char *prefix, conv_layer *l) {
    char nm[256];
    PARAMS_NAME(nm, "%s.weight", prefix);
    params_entry *q = params_add(p, PARAMS_CONV_WEIGHT, nm);
    q->conv = l;
    int g = l->cfg.groups ? l->cfg.groups : 1;
    q->info.ndim = 4;
    q->info.shape[0] = l->cfg.oc, q->info.shape[1] = l->cfg.ic / g;
    q->info.shape[2] = l->cfg.kh, q->info.shape[3] = l->cfg.kw;
    if (l->cfg.bias) {
        PARAMS_NAME(nm, "%s.bias", prefix);
        q = params_add(p, PARAMS_VEC, nm);
        q->t = &l->b, q->g = &l->db;
        q->info.ndim = 1, q->info.shape[0] = l->cfg.oc;
    }
}

void params_add_vec(params_table *p, const char *prefix, const char *suffix, tensor *t, tensor *g, int n, int ndim) {
    char nm[256];
    PARAMS_NAME(nm, "%s.%s", prefix, suffix);
    params_entry *q = params_add(p, PARAMS_VEC, nm);
    q->t = t, q->g = g;
    q->info.ndim = ndim;
    q->info.shape[0] = n;
    q->info.is_buffer = g == NULL;
}

void params_add_bn(params_table *p, const char *prefix, bn_layer *b) {
    params_add_vec(p, prefix, "weight", &b->gamma, &b->dgamma, b->cfg.c, 1);
    params_add_vec(p, prefix, "bias", &b->beta, &b->dbeta, b->cfg.c, 1);
    params_add_vec(p, prefix, "running_mean", &b->run_mean, NULL, b->cfg.c, 1);
    params_add_vec(p, prefix, "running_var", &b->run_var, NULL, b->cfg.c, 1);
    char nm[256];
    PARAMS_NAME(nm, "%s.num_batches_tracked", prefix);
    params_entry *q = params_add(p, PARAMS_NBT, nm);
    q->info.ndim = 0;
    q->info.is_buffer = 1;
    q->info.is_int64 = 1;
}

int params_register_sgd(const params_table *p, sgd *opt) {
    for (int i = 0; i < p->n; i++) {
        const params_entry *q = &p->e[i];
        if (q->kind == PARAMS_CONV_WEIGHT) {
            CHECK(sgd_add(opt, &q->conv->w, &q->conv->dw));
        } else if (q->kind == PARAMS_VEC && q->g) {
            CHECK(sgd_add(opt, q->t, q->g));
        }
    }
    return OTE_OK;
}

int params_commit(params_table *p) {
    CHECK(arena_commit(&p->values));
    return arena_commit(&p->grads);
}

int params_refresh_convs(const params_table *p, eng_ctx *e) {
    for (int i = 0; i < p->n; i++)
        if (p->e[i].kind == PARAMS_CONV_WEIGHT) CHECK(conv_refresh_weights(p->e[i].conv, e));
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Initialisation */

void params_fill_conv(const conv_layer *l, rng *r, params_init mode, float *buf) {
    const conv_cfg *c = &l->cfg;
    int g = c->groups ? c->groups : 1;
    size_t n = (size_t)c->oc * (c->ic / g) * c->kh * c->kw;
    double fan_in = (double)(c->ic / g) * c->kh * c->kw, fan_out = (double)c->oc * c->kh * c->kw;
    for (size_t i = 0; i < n; i++) {
        double v;
        if (mode == PARAMS_KAIMING_UNIFORM) {
            double b = sqrt(6.0 / fan_in);
            v = -b + 2 * b * rng_uniform(r);
        } else if (mode == PARAMS_KAIMING_NORMAL) {
            v = sqrt(2.0 / fan_out) * rng_normal(r);
        } else if (mode == PARAMS_XAVIER_UNIFORM) {
            double b = sqrt(6.0 / (fan_in + fan_out));
            v = -b + 2 * b * rng_uniform(r);
        } else {
            v = 0.01 * rng_normal(r);
        }
        buf[i] = (float)v;
    }
}

int params_init_conv(conv_layer *l, eng_ctx *e, rng *r, params_init mode, float *buf) {
    params_fill_conv(l, r, mode, buf);
    return conv_weights_from_oihw(l, e, buf);
}

/* ------------------------------------------------------------------------------------------ */
/* Exchange */

int params_find(const params_table *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->e[i].name, name) == 0) return i;
    return -1;
}

static int params_check(const params_table *p, int i) {
    if (i < 0 || i >= p->n) return ote_err(OTE_EINVAL, "detector: parameter index %d out of range", i);
    return OTE_OK;
}

/* Elements of a PARAMS_VEC entry (a 0-d Scale holds one). */
static size_t params_vec_len(const params_entry *q) { return (size_t)(q->info.ndim ? q->info.shape[0] : 1); }

int params_get(const params_table *p, eng_ctx *e, int i, float *dst) {
    CHECK(params_check(p, i));
    const params_entry *q = &p->e[i];
    if (q->kind == PARAMS_CONV_WEIGHT) return conv_weights_to_oihw(q->conv, e, dst);
    if (q->kind == PARAMS_NBT) {
        dst[0] = (float)p->nbt;
        return OTE_OK;
    }
    memcpy(dst, q->t->data, params_vec_len(q) * sizeof(float));
    return OTE_OK;
}

int params_set(params_table *p, eng_ctx *e, int i, const float *src) {
    CHECK(params_check(p, i));
    const params_entry *q = &p->e[i];
    if (q->kind == PARAMS_CONV_WEIGHT) return conv_weights_from_oihw(q->conv, e, src);
    if (q->kind == PARAMS_NBT) {
        if (!(src[0] >= 0)) return ote_err(OTE_EINVAL, "detector: %s: value %g", q->name, (double)src[0]);
        p->nbt = (long)src[0];
        return OTE_OK;
    }
    memcpy(q->t->data, src, params_vec_len(q) * sizeof(float));
    return OTE_OK;
}

/* Entry i's momentum buffer in opt's arena (NULL with the message set if it has none). */
static float *params_momentum_ptr(const params_table *p, const sgd *opt, int i) {
    const params_entry *q = &p->e[i];
    const tensor *t = q->kind == PARAMS_CONV_WEIGHT ? &q->conv->w : q->kind == PARAMS_VEC && q->g ? q->t : NULL;
    float *m = t ? sgd_momentum_of(opt, t->offset) : NULL;
    if (!m) ote_err(OTE_EINVAL, "detector: %s has no momentum buffer (not trained by SGD)", q->name);
    return m;
}

int params_momentum_get(const params_table *p, eng_ctx *e, const sgd *opt, int i, float *dst) {
    CHECK(params_check(p, i));
    const params_entry *q = &p->e[i];
    float *m = params_momentum_ptr(p, opt, i);
    if (!m) return OTE_EINVAL;
    if (q->kind == PARAMS_CONV_WEIGHT) return conv_like_weights_to_oihw(q->conv, e, m, dst);
    memcpy(dst, m, params_vec_len(q) * sizeof(float));
    return OTE_OK;
}

int params_momentum_set(const params_table *p, eng_ctx *e, const sgd *opt, int i, const float *src) {
    CHECK(params_check(p, i));
    const params_entry *q = &p->e[i];
    float *m = params_momentum_ptr(p, opt, i);
    if (!m) return OTE_EINVAL;
    if (q->kind == PARAMS_CONV_WEIGHT) return conv_like_weights_from_oihw(q->conv, e, src, m);
    memcpy(m, src, params_vec_len(q) * sizeof(float));
    return OTE_OK;
}

int params_grad_get(const params_table *p, eng_ctx *e, int i, float *dst) {
    CHECK(params_check(p, i));
    const params_entry *q = &p->e[i];
    if (q->kind == PARAMS_CONV_WEIGHT) return conv_grad_to_oihw(q->conv, e, dst);
    if (q->kind == PARAMS_NBT || !q->g) return ote_err(OTE_EINVAL, "detector: %s has no gradient", q->name);
    memcpy(dst, q->g->data, params_vec_len(q) * sizeof(float));
    return OTE_OK;
}
