/* eltwise.c - ReLU6 (clip_v2) and ReLU layers on oneDNN (see eltwise.h). */
#include "engine/eltwise.h"

#include <string.h>

#include "engine/args.h"
#include "engine/ote.h"

int eltwise_layer_init(eltwise_layer *l, eng_ctx *e, const eltwise_cfg *cfg, arena *params, arena *grads) {
    (void)e, (void)params, (void)grads;
    memset(l, 0, sizeof *l);
    l->cfg = *cfg;
    switch (cfg->kind) {
    case ELTWISE_RELU6:
        /* clip_v2 forward: the use_dst forward is ref:any on nChw16c for C % 16 != 0 (2.6.3). */
        l->fwd_alg = dnnl_eltwise_clip_v2, l->alg = dnnl_eltwise_clip_v2_use_dst_for_bwd;
        l->alpha = 0.0f, l->beta = 6.0f;
        return OTE_OK;
    case ELTWISE_RELU:
        l->fwd_alg = l->alg = dnnl_eltwise_relu_use_dst_for_bwd, l->alpha = 0.0f, l->beta = 0.0f;
        return OTE_OK;
    }
    return ote_err(OTE_EINVAL, "eltwise: kind: unknown value %d", (int)cfg->kind);
}

void eltwise_layer_free(eltwise_layer *l) { memset(l, 0, sizeof *l); }

static const dnnl_memory_desc_t *mem_md(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = NULL;
    if (!m || dnnl_memory_get_memory_desc(m, &md) != dnnl_success) return NULL;
    return md;
}

static int same_shape(const tensor *a, const tensor *b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

static int eltwise_plan_init_impl(eltwise_plan *p, eng_ctx *e, eltwise_layer *l, const tensor *x, tensor *y,
                                  const tensor *dy, tensor *dx, int training) {
    const dnnl_memory_desc_t *xmd = mem_md(x->mem), *ymd = mem_md(y->mem);
    ASSERT(xmd && ymd);
    if (!same_shape(x, y) || !dnnl_memory_desc_equal(xmd, ymd))
        return ote_err(OTE_EINVAL, "eltwise plan: x and y differ in shape or layout");
    const char *name = l->cfg.kind == ELTWISE_RELU6 ? "relu6" : "relu";
    dnnl_eltwise_desc_t fd;
    CHECK(eng_check(dnnl_eltwise_forward_desc_init(&fd, training ? dnnl_forward_training : dnnl_forward_inference,
                                                   l->fwd_alg, xmd, l->alpha, l->beta),
                    "eltwise plan: forward desc"));
    CHECK(eng_create_primitive(e, &fd, NULL, l->cfg.kind == ELTWISE_RELU6 ? "relu6 forward" : "relu forward",
                               &p->fwd_pd, &p->fwd));
    dnnl_memory_t scratch;
    CHECK(eng_scratch_memory(e, p->fwd_pd, &scratch));
    args_push(p->fwd_args, &p->n_fwd_args, 3, DNNL_ARG_SRC, x->mem);
    args_push(p->fwd_args, &p->n_fwd_args, 3, DNNL_ARG_DST, y->mem);
    args_push(p->fwd_args, &p->n_fwd_args, 3, DNNL_ARG_SCRATCHPAD, scratch);
    CHECK(args_check(p->fwd_pd, p->fwd_args, p->n_fwd_args, name));
    if (!training || !dx) return OTE_OK;

    if (!dy || !same_shape(dy, y) || !same_shape(dx, x))
        return ote_err(OTE_EINVAL, "eltwise plan: dy missing or dy/dx not shaped like y/x");
    const dnnl_memory_desc_t *dymd = mem_md(dy->mem), *dxmd = mem_md(dx->mem);
    ASSERT(dymd && dxmd);
    if (!dnnl_memory_desc_equal(dymd, dxmd)) return ote_err(OTE_EINVAL, "eltwise plan: dx and dy layouts differ");
    dnnl_eltwise_desc_t bd;
    /* use_dst_for_bwd: the "data" md of the backward is the forward's dst. */
    CHECK(eng_check(dnnl_eltwise_backward_desc_init(&bd, l->alg, dymd, ymd, l->alpha, l->beta),
                    "eltwise plan: backward desc"));
    CHECK(eng_create_primitive(e, &bd, p->fwd_pd, l->cfg.kind == ELTWISE_RELU6 ? "relu6 backward" : "relu backward",
                               &p->bwd_pd, &p->bwd));
    CHECK(eng_scratch_memory(e, p->bwd_pd, &scratch));
    args_push(p->bwd_args, &p->n_bwd_args, 4, DNNL_ARG_DST, y->mem);
    args_push(p->bwd_args, &p->n_bwd_args, 4, DNNL_ARG_DIFF_DST, dy->mem);
    args_push(p->bwd_args, &p->n_bwd_args, 4, DNNL_ARG_DIFF_SRC, dx->mem);
    args_push(p->bwd_args, &p->n_bwd_args, 4, DNNL_ARG_SCRATCHPAD, scratch);
    CHECK(args_check(p->bwd_pd, p->bwd_args, p->n_bwd_args, name));
    p->has_bwd = 1;
    return OTE_OK;
}

int eltwise_plan_init(eltwise_plan *p, eng_ctx *e, eltwise_layer *l, const tensor *x, tensor *y, const tensor *dy,
                      tensor *dx, int training) {
    memset(p, 0, sizeof *p);
    p->l = l;
    p->training = training;
    int s = eltwise_plan_init_impl(p, e, l, x, y, dy, dx, training);
    if (s < 0) {
        ote_err_context(s, "%s plan for input (%d,%d,%d,%d)", l->cfg.kind == ELTWISE_RELU6 ? "relu6" : "relu", x->n,
                        x->c, x->h, x->w);
        eltwise_plan_free(p);
    }
    return s;
}

int eltwise_forward(eltwise_plan *p, eng_ctx *e) {
    return eng_exec(e, p->fwd, p->n_fwd_args, p->fwd_args, "eltwise forward");
}

int eltwise_backward(eltwise_plan *p, eng_ctx *e, int accumulate) {
    (void)accumulate;
    if (!p->has_bwd) return OTE_OK;
    return eng_exec(e, p->bwd, p->n_bwd_args, p->bwd_args, "eltwise backward");
}

void eltwise_plan_free(eltwise_plan *p) {
    if (p->fwd) dnnl_primitive_destroy(p->fwd);
    if (p->fwd_pd) dnnl_primitive_desc_destroy(p->fwd_pd);
    if (p->bwd) dnnl_primitive_destroy(p->bwd);
    if (p->bwd_pd) dnnl_primitive_desc_destroy(p->bwd_pd);
    memset(p, 0, sizeof *p);
}
