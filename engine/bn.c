/* bn.c - BatchNorm2d on oneDNN with PyTorch running statistics (see bn.h). */
#include "engine/bn.h"

#include <stdlib.h>
#include <string.h>

#include "engine/args.h"
#include "engine/ote.h"

bn_cfg bn_cfg_default(int c) {
    bn_cfg cfg = {c, 1e-5f, 0.1f};
    return cfg;
}

static int bn_layer_plan(bn_layer *l, eng_ctx *e, arena *params, arena *grads);

int bn_layer_init(bn_layer *l, eng_ctx *e, const bn_cfg *cfg, arena *params, arena *grads) {
    memset(l, 0, sizeof *l);
    l->cfg = *cfg;
    if (cfg->c <= 0 || !(cfg->eps > 0) || !(cfg->momentum >= 0 && cfg->momentum <= 1))
        return ote_err(OTE_EINVAL, "bn: bad configuration: channels %d eps %g momentum %g", cfg->c, (double)cfg->eps,
                       (double)cfg->momentum);
    int s = bn_layer_plan(l, e, params, grads);
    if (s < 0) bn_layer_free(l); /* nothing to free for the caller after a failure */
    return s;
}

static int bn_layer_plan(bn_layer *l, eng_ctx *e, arena *params, arena *grads) {
    int c = l->cfg.c;
    /* Same order and sizes in both arenas, so the two blocks have identical layouts. */
    CHECK(tensor_plan_plain(e, &l->gamma, TL_X, c, 1, 1, 1, params));
    CHECK(tensor_plan_plain(e, &l->beta, TL_X, c, 1, 1, 1, params));
    CHECK(tensor_plan_plain(e, &l->run_mean, TL_X, c, 1, 1, 1, params));
    CHECK(tensor_plan_plain(e, &l->run_var, TL_X, c, 1, 1, 1, params));
    if (grads) {
        CHECK(tensor_plan_plain(e, &l->dgamma, TL_X, c, 1, 1, 1, grads));
        CHECK(tensor_plan_plain(e, &l->dbeta, TL_X, c, 1, 1, 1, grads));
        CHECK(tensor_plan_plain(e, &l->drun_mean, TL_X, c, 1, 1, 1, grads));
        CHECK(tensor_plan_plain(e, &l->drun_var, TL_X, c, 1, 1, 1, grads));
    }
    return OTE_OK;
}

void bn_layer_free(bn_layer *l) {
    tensor_free(&l->gamma), tensor_free(&l->beta), tensor_free(&l->run_mean), tensor_free(&l->run_var);
    tensor_free(&l->dgamma), tensor_free(&l->dbeta), tensor_free(&l->drun_mean), tensor_free(&l->drun_var);
    memset(l, 0, sizeof *l);
}

void bn_reset_params(bn_layer *l) {
    ASSERT(l->gamma.data && l->run_var.data);
    for (int i = 0; i < l->cfg.c; i++) {
        l->gamma.data[i] = 1.0f;
        l->beta.data[i] = 0.0f;
        l->run_mean.data[i] = 0.0f;
        l->run_var.data[i] = 1.0f;
    }
}

void bn_stats_span(const bn_layer *l, size_t *offset, size_t *bytes) {
    ASSERT(l->run_var.offset > l->run_mean.offset);
    *offset = l->run_mean.offset;
    *bytes = l->run_var.offset + l->run_var.bytes - l->run_mean.offset;
}

static const dnnl_memory_desc_t *mem_md(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = NULL;
    if (!m || dnnl_memory_get_memory_desc(m, &md) != dnnl_success) return NULL;
    return md;
}

static int same_shape(const tensor *a, const tensor *b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

/* A plan-owned (C) f32 buffer with a oneDNN memory object of the md the primitive expects. */
static int bn_vec(eng_ctx *e, const_dnnl_primitive_desc_t pd, int arg, float **buf, dnnl_memory_t *mem) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
    if (!bytes) return ote_err(OTE_EDNNL, "bn plan: argument %d has no memory descriptor", arg);
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return ote_err(OTE_ENOMEM, "bn plan: %zu-byte statistics buffer", bytes);
    memset(p, 0, bytes);
    *buf = p;
    return eng_check(dnnl_memory_create(mem, md, e->engine, p), "bn plan: statistics memory");
}

static int bn_plan_init_impl(bn_plan *p, eng_ctx *e, bn_layer *l, const tensor *x, tensor *y, tensor *dy, tensor *dx,
                             int training) {
    if (x->c != l->cfg.c || !same_shape(x, y))
        return ote_err(OTE_EINVAL, "bn plan: x (%d,%d,%d,%d) / y (%d,%d,%d,%d) do not match %d channels", x->n, x->c,
                       x->h, x->w, y->n, y->c, y->h, y->w, l->cfg.c);
    p->n_per_channel = (long)x->n * x->h * x->w;
    if (training) {
        if (!dy || !same_shape(dy, x) || (dx && !same_shape(dx, x)))
            return ote_err(OTE_EINVAL, "bn plan: dy missing or dy/dx not shaped like x");
        if (!l->dgamma.mem) return ote_err(OTE_EINVAL, "bn plan: training plan for a layer without gradients");
        if (l->frozen) return ote_err(OTE_EINVAL, "bn plan: frozen BN trains on the fused layer only (engine/bnr.h)");
        if (y == x || y->mem == x->mem)
            return ote_err(OTE_EINVAL, "bn plan: the training forward cannot run in place (backward needs x)");
        /* torch refuses this too ("Expected more than 1 value per channel when training"). */
        if (p->n_per_channel < 2)
            return ote_err(OTE_EINVAL, "bn plan: %ld value(s) per channel: training needs at least 2",
                           p->n_per_channel);
    }
    const dnnl_memory_desc_t *xmd = mem_md(x->mem);
    ASSERT(xmd);
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (training ? 0u : (unsigned)dnnl_use_global_stats);
    dnnl_batch_normalization_desc_t fd;
    CHECK(eng_check(dnnl_batch_normalization_forward_desc_init(
                        &fd, training ? dnnl_forward_training : dnnl_forward_inference, xmd, l->cfg.eps, flags),
                    "bn plan: forward desc"));
    CHECK(eng_create_primitive(e, &fd, NULL, training ? "bn forward (training)" : "bn forward (inference)",
                               &p->fwd_pd, &p->fwd));
    const dnnl_memory_desc_t *ws = dnnl_primitive_desc_query_md(p->fwd_pd, dnnl_query_workspace_md, 0);
    if (ws && dnnl_memory_desc_get_size(ws) != 0)
        return ote_err(OTE_EDNNL, "bn plan: unexpected workspace (plain BN has none in oneDNN 2.6)");
    dnnl_memory_t scratch;
    CHECK(eng_scratch_memory(e, p->fwd_pd, &scratch));
    dnnl_memory_t mean_m, var_m;
    if (training) {
        CHECK(bn_vec(e, p->fwd_pd, DNNL_ARG_MEAN, &p->mean, &p->mean_mem));
        CHECK(bn_vec(e, p->fwd_pd, DNNL_ARG_VARIANCE, &p->var, &p->var_mem));
        mean_m = p->mean_mem, var_m = p->var_mem;
    } else {
        mean_m = l->run_mean.mem, var_m = l->run_var.mem;
    }
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_SRC, x->mem);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_MEAN, mean_m);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_VARIANCE, var_m);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_SCALE, l->gamma.mem);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_SHIFT, l->beta.mem);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_DST, y->mem);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_SCRATCHPAD, scratch);
    CHECK(args_check(p->fwd_pd, p->fwd_args, p->n_fwd_args, "bn forward"));
    if (!training) return OTE_OK;

    tensor *dxt = dx ? dx : dy;
    const dnnl_memory_desc_t *dymd = mem_md(dy->mem), *dxmd = mem_md(dxt->mem);
    ASSERT(dymd && dxmd);
    /* 2.6 takes one diff-data md for both diff_dst and diff_src. */
    if (!dnnl_memory_desc_equal(dymd, dxmd)) return ote_err(OTE_EINVAL, "bn plan: dx and dy layouts differ");
    dnnl_batch_normalization_desc_t bd;
    CHECK(eng_check(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, dymd, xmd, l->cfg.eps,
                                                                dnnl_use_scale | dnnl_use_shift),
                    "bn plan: backward desc"));
    CHECK(eng_create_primitive(e, &bd, p->fwd_pd, "bn backward", &p->bwd_pd, &p->bwd));
    CHECK(eng_scratch_memory(e, p->bwd_pd, &scratch));
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_SRC, x->mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_MEAN, p->mean_mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_VARIANCE, p->var_mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_DIFF_DST, dy->mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_SCALE, l->gamma.mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_SHIFT, l->beta.mem); /* required, notes §2.2 */
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_DIFF_SRC, dxt->mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_DIFF_SCALE, l->dgamma.mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_DIFF_SHIFT, l->dbeta.mem);
    args_push(p->bwd_args, &p->n_bwd_args, 12, DNNL_ARG_SCRATCHPAD, scratch);
    CHECK(args_check(p->bwd_pd, p->bwd_args, p->n_bwd_args, "bn backward"));

    CHECK(bn_vec(e, p->bwd_pd, DNNL_ARG_DIFF_SCALE, &p->acc_dgamma, &p->acc_dgamma_mem));
    CHECK(bn_vec(e, p->bwd_pd, DNNL_ARG_DIFF_SHIFT, &p->acc_dbeta, &p->acc_dbeta_mem));
    memcpy(p->bwd_acc_args, p->bwd_args, sizeof p->bwd_args);
    for (int i = 0; i < p->n_bwd_args; i++) {
        if (p->bwd_acc_args[i].arg == DNNL_ARG_DIFF_SCALE) p->bwd_acc_args[i].memory = p->acc_dgamma_mem;
        if (p->bwd_acc_args[i].arg == DNNL_ARG_DIFF_SHIFT) p->bwd_acc_args[i].memory = p->acc_dbeta_mem;
    }
    return OTE_OK;
}

int bn_plan_init(bn_plan *p, eng_ctx *e, bn_layer *l, const tensor *x, tensor *y, tensor *dy, tensor *dx,
                 int training) {
    memset(p, 0, sizeof *p);
    p->l = l;
    p->training = training;
    int s = bn_plan_init_impl(p, e, l, x, y, dy, dx, training);
    if (s < 0) {
        ote_err_context(s, "bn plan (%d channels) for input (%d,%d,%d,%d)", l->cfg.c, x->n, x->c, x->h, x->w);
        bn_plan_free(p);
    }
    return s;
}

int bn_forward(bn_plan *p, eng_ctx *e) {
    if (p->training && p->l->calibrate)
        return ote_err(OTE_EINVAL, "bn forward: calibrate (bn.h) needs the fused layer (engine/bnr.h)");
    CHECK(eng_exec(e, p->fwd, p->n_fwd_args, p->fwd_args, "bn forward"));
    if (!p->training) return OTE_OK;
    /* torch.nn.BatchNorm2d (CPU): running = m * stat + (1 - m) * running in double, with the
     * unbiased variance for running_var. oneDNN's variance is the biased one. */
    bn_layer *l = p->l;
    const double m = l->cfg.momentum, n = (double)p->n_per_channel, unb = n / (n - 1.0);
    for (int c = 0; c < l->cfg.c; c++) {
        l->run_mean.data[c] = (float)(m * (double)p->mean[c] + (1.0 - m) * (double)l->run_mean.data[c]);
        l->run_var.data[c] = (float)(m * (double)p->var[c] * unb + (1.0 - m) * (double)l->run_var.data[c]);
    }
    return OTE_OK;
}

int bn_backward(bn_plan *p, eng_ctx *e, int accumulate) {
    ASSERT(p->training);
    if (!accumulate) return eng_exec(e, p->bwd, p->n_bwd_args, p->bwd_args, "bn backward");
    CHECK(eng_exec(e, p->bwd, p->n_bwd_args, p->bwd_acc_args, "bn backward (accumulate)"));
    bn_layer *l = p->l;
    for (int c = 0; c < l->cfg.c; c++) {
        l->dgamma.data[c] += p->acc_dgamma[c];
        l->dbeta.data[c] += p->acc_dbeta[c];
    }
    return OTE_OK;
}

void bn_plan_free(bn_plan *p) {
    if (p->fwd) dnnl_primitive_destroy(p->fwd);
    if (p->fwd_pd) dnnl_primitive_desc_destroy(p->fwd_pd);
    if (p->bwd) dnnl_primitive_destroy(p->bwd);
    if (p->bwd_pd) dnnl_primitive_desc_destroy(p->bwd_pd);
    if (p->mean_mem) dnnl_memory_destroy(p->mean_mem);
    if (p->var_mem) dnnl_memory_destroy(p->var_mem);
    if (p->acc_dgamma_mem) dnnl_memory_destroy(p->acc_dgamma_mem);
    if (p->acc_dbeta_mem) dnnl_memory_destroy(p->acc_dbeta_mem);
    free(p->mean), free(p->var), free(p->acc_dgamma), free(p->acc_dbeta);
    memset(p, 0, sizeof *p);
}
