/* conv.c - convolution layer on oneDNN (see conv.h for the layout and ownership rules). */
#include "engine/conv.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/args.h"
#include "engine/ote.h"

int conv_out_size(int in, int k, int stride, int pad_before, int pad_after) {
    return (in + pad_before + pad_after - k) / stride + 1;
}

/* Inference layers carry their post-ops in their own attr (a clone of e->attr, so the
 * user-scratchpad mode is kept); l->attr is NULL otherwise and the context's attr is used. */
static int conv_create(eng_ctx *e, const conv_layer *l, const void *desc, const_dnnl_primitive_desc_t hint,
                       const char *what, dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim) {
    return eng_create_primitive_attr(e, desc, l->attr, hint, what, pd, prim);
}

static void conv_destroy(dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim) {
    if (*prim) dnnl_primitive_destroy(*prim);
    if (*pd) dnnl_primitive_desc_destroy(*pd);
    *prim = NULL;
    *pd = NULL;
}

/* Weights dims: 4-D OIHW for dense, 5-D GOIHW otherwise (oneDNN's grouped convention). */
static int conv_wdims(const conv_cfg *c, dnnl_dims_t d) {
    if (c->groups == 1) {
        d[0] = c->oc, d[1] = c->ic, d[2] = c->kh, d[3] = c->kw;
        return 4;
    }
    d[0] = c->groups, d[1] = c->oc / c->groups, d[2] = c->ic / c->groups, d[3] = c->kh, d[4] = c->kw;
    return 5;
}

static int conv_plan_weight_tensor(eng_ctx *e, const conv_cfg *c, tensor *t, const dnnl_memory_desc_t *md,
                                   arena *a) {
    memset(t, 0, sizeof *t);
    t->n = c->oc, t->c = c->ic / c->groups, t->h = c->kh, t->w = c->kw, t->groups = c->groups;
    t->layout = TL_OPAQUE;
    t->bytes = dnnl_memory_desc_get_size(md);
    CHECK(eng_check(dnnl_memory_create(&t->mem, md, e->engine, DNNL_MEMORY_NONE), "conv: weights memory"));
    arena_reserve(a, t->bytes, t);
    return OTE_OK;
}

static int conv_geometry(const conv_layer *l, dnnl_dims_t st, dnnl_dims_t pl, dnnl_dims_t pr) {
    const conv_cfg *c = &l->cfg;
    st[0] = c->stride_h, st[1] = c->stride_w;
    pl[0] = c->pad_t, pl[1] = c->pad_l;
    pr[0] = c->pad_b, pr[1] = c->pad_r;
    return OTE_OK;
}

static int conv_check_cfg(const conv_cfg *c) {
    if (c->ic <= 0 || c->oc <= 0 || c->kh <= 0 || c->kw <= 0 || c->stride_h <= 0 || c->stride_w <= 0 ||
        c->pad_t < 0 || c->pad_l < 0 || c->pad_b < 0 || c->pad_r < 0 || c->groups <= 0)
        return ote_err(OTE_EINVAL, "conv: bad configuration: ic %d oc %d kernel %dx%d stride %dx%d "
                       "pads %d,%d,%d,%d groups %d", c->ic, c->oc, c->kh, c->kw, c->stride_h, c->stride_w,
                       c->pad_t, c->pad_l, c->pad_b, c->pad_r, c->groups);
    if (c->ic % c->groups || c->oc % c->groups)
        return ote_err(OTE_EINVAL, "conv: groups %d does not divide ic %d / oc %d", c->groups, c->ic, c->oc);
    if (c->post_eltwise < CONV_POST_NONE || c->post_eltwise > CONV_POST_RELU6)
        return ote_err(OTE_EINVAL, "conv: post_eltwise: unknown value %d", (int)c->post_eltwise);
    return OTE_OK;
}

static int conv_layer_init_impl(conv_layer *l, eng_ctx *e, arena *params, arena *grads) {
    const conv_cfg *c = &l->cfg;
    l->inference = c->post_eltwise != CONV_POST_NONE || c->post_sum;
    if (l->inference) {
        dnnl_post_ops_t po;
        CHECK(eng_check(dnnl_primitive_attr_clone(&l->attr, e->attr), "conv: attr clone"));
        CHECK(eng_check(dnnl_post_ops_create(&po), "conv: post-ops"));
        int s = OTE_OK;
        if (c->post_sum) s = eng_check(dnnl_post_ops_append_sum(po, 1.0f), "conv: sum post-op");
        if (s == OTE_OK && c->post_eltwise == CONV_POST_RELU)
            s = eng_check(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f), "conv: relu post-op");
        if (s == OTE_OK && c->post_eltwise == CONV_POST_RELU6) /* clip_v2 = torch ReLU6 (notes §2.2) */
            s = eng_check(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip_v2, 0.0f, 6.0f),
                          "conv: relu6 post-op");
        if (s == OTE_OK) s = eng_check(dnnl_primitive_attr_set_post_ops(l->attr, po), "conv: set post-ops");
        dnnl_post_ops_destroy(po);
        CHECK(s);
    }

    /* Reference shape for choosing the weights layouts: batch 2, an 8x8 output, blocked
     * activations (the only activation layout we use). The JIT kernels choose the weights layout
     * from channels/groups/kernel, not from the spatial size; every later plan re-verifies it. */
    const int oh = 8, ow = 8;
    int ih = (oh - 1) * c->stride_h + c->kh - c->pad_t - c->pad_b;
    int iw = (ow - 1) * c->stride_w + c->kw - c->pad_l - c->pad_r;
    if (ih < 1) ih = 1;
    if (iw < 1) iw = 1;
    dnnl_memory_desc_t xmd, ymd, wany, bmd;
    dnnl_dims_t xd = {2, c->ic, ih, iw};
    dnnl_dims_t yd = {2, c->oc, conv_out_size(ih, c->kh, c->stride_h, c->pad_t, c->pad_b),
                      conv_out_size(iw, c->kw, c->stride_w, c->pad_l, c->pad_r)};
    dnnl_dims_t wd, bd = {c->oc};
    int wnd = conv_wdims(c, wd);
    CHECK(eng_check(dnnl_memory_desc_init_by_tag(&xmd, 4, xd, dnnl_f32, c->src_nchw ? dnnl_nchw : eng_act_tag(e)),
                    "conv: ref src md"));
    CHECK(eng_check(dnnl_memory_desc_init_by_tag(&ymd, 4, yd, dnnl_f32, eng_act_tag(e)), "conv: ref dst md"));
    CHECK(eng_check(dnnl_memory_desc_init_by_tag(&wany, wnd, wd, dnnl_f32, dnnl_format_tag_any), "conv: weights md"));
    CHECK(eng_check(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a), "conv: bias md"));
    dnnl_dims_t st, pl, pr;
    conv_geometry(l, st, pl, pr);

    dnnl_convolution_desc_t fd;
    CHECK(eng_check(dnnl_convolution_forward_desc_init(&fd, l->inference ? dnnl_forward_inference : dnnl_forward_training,
                                                       dnnl_convolution_direct, &xmd, &wany, c->bias ? &bmd : NULL,
                                                       &ymd, st, pl, pr),
                    "conv: forward desc"));
    dnnl_primitive_desc_t fpd = NULL;
    dnnl_primitive_t fprim = NULL;
    CHECK(conv_create(e, l, &fd, NULL, "conv layer init: forward", &fpd, &fprim));
    l->w_md = *dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0);

    int s = OTE_OK;
    if (!l->inference && !c->src_nchw) {
        dnnl_convolution_desc_t bdd;
        dnnl_primitive_desc_t bpd = NULL;
        dnnl_primitive_t bprim = NULL;
        s = eng_check(dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, &xmd, &wany, &ymd, st,
                                                               pl, pr),
                      "conv: backward-data desc");
        if (s == OTE_OK) s = conv_create(e, l, &bdd, fpd, "conv layer init: backward-data", &bpd, &bprim);
        if (s == OTE_OK) l->wbd_md = *dnnl_primitive_desc_query_md(bpd, dnnl_query_weights_md, 0);
        conv_destroy(&bpd, &bprim);
    } else {
        l->wbd_md = l->w_md;
    }
    conv_destroy(&fpd, &fprim);
    CHECK(s);

    CHECK(conv_plan_weight_tensor(e, c, &l->w, &l->w_md, params));
    if (c->bias) CHECK(tensor_plan_plain(e, &l->b, TL_X, c->oc, 1, 1, 1, params));
    if (grads) {
        CHECK(conv_plan_weight_tensor(e, c, &l->dw, &l->w_md, grads));
        if (c->bias) CHECK(tensor_plan_plain(e, &l->db, TL_X, c->oc, 1, 1, 1, grads));
    }

    l->wbd_alias = l->inference || c->src_nchw || dnnl_memory_desc_equal(&l->w_md, &l->wbd_md);
    if (!l->wbd_alias) {
        size_t bytes = dnnl_memory_desc_get_size(&l->wbd_md);
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
            return ote_err(OTE_ENOMEM, "conv: backward-data weights copy of %zu bytes", bytes);
        memset(p, 0, bytes);
        l->wbd_data = p;
        CHECK(eng_check(dnnl_memory_create(&l->wbd_mem, &l->wbd_md, e->engine, l->wbd_data),
                        "conv: backward-data weights memory"));
        CHECK(eng_create_reorder(e, &l->w_md, &l->wbd_md, "conv: weights -> backward-data layout", &l->wbd_pd,
                                 &l->wbd_reorder));
        CHECK(eng_scratch_memory(e, l->wbd_pd, &l->wbd_scratch));
    }
    return OTE_OK;
}

int conv_layer_init(conv_layer *l, eng_ctx *e, const conv_cfg *cfg, arena *params, arena *grads) {
    memset(l, 0, sizeof *l);
    l->cfg = *cfg;
    if (l->cfg.groups == 0) l->cfg.groups = 1;
    CHECK(conv_check_cfg(&l->cfg));
    int s = conv_layer_init_impl(l, e, params, grads);
    if (s < 0) {
        ote_err_context(s, "conv layer %d->%d k%dx%d s%d g%d", cfg->ic, cfg->oc, cfg->kh, cfg->kw, cfg->stride_h,
                        cfg->groups ? cfg->groups : 1);
        conv_layer_free(l); /* nothing to free for the caller after a failure */
    }
    return s;
}

void conv_layer_free(conv_layer *l) {
    tensor_free(&l->w);
    tensor_free(&l->b);
    tensor_free(&l->dw);
    tensor_free(&l->db);
    if (l->wbd_reorder) dnnl_primitive_destroy(l->wbd_reorder);
    if (l->wbd_pd) dnnl_primitive_desc_destroy(l->wbd_pd);
    if (l->wbd_mem) dnnl_memory_destroy(l->wbd_mem);
    if (l->attr) dnnl_primitive_attr_destroy(l->attr);
    free(l->wbd_data);
    memset(l, 0, sizeof *l);
}

int conv_refresh_weights(conv_layer *l, eng_ctx *e) {
    if (l->wbd_alias) return OTE_OK;
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, l->w.mem}, {DNNL_ARG_DST, l->wbd_mem}, {DNNL_ARG_SCRATCHPAD, l->wbd_scratch}};
    return eng_exec(e, l->wbd_reorder, 3, a, "conv: refresh backward-data weights");
}

static const dnnl_memory_desc_t *mem_md(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = NULL;
    if (!m || dnnl_memory_get_memory_desc(m, &md) != dnnl_success) return NULL;
    return md;
}

static int conv_check_shapes(const conv_layer *l, const tensor *x, const tensor *y, const tensor *dy,
                             const tensor *dx, int training) {
    const conv_cfg *c = &l->cfg;
    int oh = conv_out_size(x->h, c->kh, c->stride_h, c->pad_t, c->pad_b);
    int ow = conv_out_size(x->w, c->kw, c->stride_w, c->pad_l, c->pad_r);
    if (x->c != c->ic || y->c != c->oc || y->n != x->n || y->h != oh || y->w != ow || oh < 1 || ow < 1)
        return ote_err(OTE_EINVAL, "conv plan: x (%d,%d,%d,%d) -> y (%d,%d,%d,%d) does not match ic %d oc %d "
                       "(expected y spatial %dx%d)", x->n, x->c, x->h, x->w, y->n, y->c, y->h, y->w, c->ic,
                       c->oc, oh, ow);
    if (training) {
        if (!dy || dy->n != y->n || dy->c != y->c || dy->h != y->h || dy->w != y->w)
            return ote_err(OTE_EINVAL, "conv plan: dy missing or not shaped like y");
        if (dx && c->src_nchw)
            return ote_err(OTE_EINVAL, "conv plan: a plain-NCHW-input conv (src_nchw) gives no input gradient");
        if (dx && (dx->n != x->n || dx->c != x->c || dx->h != x->h || dx->w != x->w))
            return ote_err(OTE_EINVAL, "conv plan: dx not shaped like x");
        if (!l->dw.mem) return ote_err(OTE_EINVAL, "conv plan: training plan for a layer without gradients");
        if (l->inference) return ote_err(OTE_EINVAL, "conv plan: layer with post-ops is inference-only");
    }
    return OTE_OK;
}

static int conv_plan_acc(conv_plan *p, eng_ctx *e, conv_layer *l);

/* Plans the direct backward-weights path (conv.h, bww_naive): a plain OIHW buffer and the reorder
 * that moves it into dW's (or the accumulate buffer's) layout. */
static int conv_plan_bww_naive(conv_plan *p, eng_ctx *e, conv_layer *l, const tensor *x, const tensor *dy) {
    const conv_cfg *c = &l->cfg;
    if (x->layout != TL_BLOCKED || dy->layout != TL_BLOCKED)
        return ote_err(OTE_EDNNL, "conv backward-weights: no JIT kernel and no direct path for plain tensors");
    p->bww_naive = 1;
    p->bww_x = x, p->bww_dy = dy;
    size_t n = (size_t)c->oc * (c->ic / c->groups) * c->kh * c->kw;
    void *buf = NULL;
    if (posix_memalign(&buf, 64, n * sizeof(float)) != 0) return ote_err(OTE_ENOMEM, "conv plan: dW buffer");
    p->bww_oihw = buf;
    dnnl_dims_t wd;
    int nd = conv_wdims(c, wd);
    dnnl_memory_desc_t pmd;
    CHECK(eng_check(dnnl_memory_desc_init_by_tag(&pmd, nd, wd, dnnl_f32, nd == 4 ? dnnl_oihw : dnnl_goihw),
                    "conv plan: plain dW md"));
    CHECK(eng_check(dnnl_memory_create(&p->bww_oihw_mem, &pmd, e->engine, p->bww_oihw), "conv plan: plain dW"));
    CHECK(eng_create_reorder(e, &pmd, &l->w_md, "conv backward-weights (direct): oihw -> weights layout",
                             &p->bww_reorder_pd, &p->bww_reorder));
    dnnl_memory_t scratch;
    CHECK(eng_scratch_memory(e, p->bww_reorder_pd, &scratch));
    args_push(p->bww_args, &p->n_bww_args, 3, DNNL_ARG_SRC, p->bww_oihw_mem);
    args_push(p->bww_args, &p->n_bww_args, 3, DNNL_ARG_DST, l->dw.mem);
    args_push(p->bww_args, &p->n_bww_args, 3, DNNL_ARG_SCRATCHPAD, scratch);
    return args_check(p->bww_reorder_pd, p->bww_args, p->n_bww_args, "conv backward-weights (direct)");
}

/* dW[o][i][kh][kw] = sum over (n, oh, ow) of dy[n, o, oh, ow] * x[n, g*ICg + i, ih, iw] with
 * ih = oh*sh - pt + kh (zero outside), into plain OIHW; db[o] = sum dy[n, o, ., .] (double sums).
 * Only used for maps smaller than the kernel, so the work is tiny (<= a few MMACs). */
static void conv_bww_direct(const conv_cfg *c, const tensor *x, const tensor *dy, float *dw, float *db) {
    const int ICg = c->ic / c->groups, OCg = c->oc / c->groups, KH = c->kh, KW = c->kw;
    const int N = x->n, H = x->h, W = x->w, OH = dy->h, OW = dy->w;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < c->oc; o++) {
        const int g = o / OCg;
        for (int i = 0; i < ICg; i++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    double acc = 0;
                    for (int n = 0; n < N; n++)
                        for (int oh = 0; oh < OH; oh++) {
                            int ih = oh * c->stride_h - c->pad_t + kh;
                            if (ih < 0 || ih >= H) continue;
                            for (int ow = 0; ow < OW; ow++) {
                                int iw = ow * c->stride_w - c->pad_l + kw;
                                if (iw < 0 || iw >= W) continue;
                                acc += (double)dy->data[blk_off(c->oc, OH, OW, dy->blk, n, o, oh, ow)] *
                                       (double)x->data[blk_off(c->ic, H, W, x->blk, n, g * ICg + i, ih, iw)];
                            }
                        }
                    dw[(((size_t)o * ICg + i) * KH + kh) * KW + kw] = (float)acc;
                }
        if (db) {
            double s = 0;
            for (int n = 0; n < N; n++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) s += (double)dy->data[blk_off(c->oc, OH, OW, dy->blk, n, o, oh, ow)];
            db[o] = (float)s;
        }
    }
}

static int conv_plan_init_impl(conv_plan *p, eng_ctx *e, conv_layer *l, const tensor *x, tensor *y,
                               const tensor *dy, tensor *dx, int training) {
    const conv_cfg *c = &l->cfg;
    CHECK(conv_check_shapes(l, x, y, dy, dx, training));
    const dnnl_memory_desc_t *xmd = mem_md(x->mem), *ymd = mem_md(y->mem);
    const dnnl_memory_desc_t *bmd = c->bias ? mem_md(l->b.mem) : NULL;
    ASSERT(xmd && ymd && (!c->bias || bmd));
    dnnl_dims_t st, pl, pr;
    conv_geometry(l, st, pl, pr);
    dnnl_memory_t scratch;

    dnnl_convolution_desc_t fd;
    CHECK(eng_check(dnnl_convolution_forward_desc_init(&fd, training ? dnnl_forward_training : dnnl_forward_inference,
                                                       dnnl_convolution_direct, xmd, &l->w_md, bmd, ymd, st, pl, pr),
                    "conv plan: forward desc"));
    CHECK(conv_create(e, l, &fd, NULL, training ? "conv forward (training)" : "conv forward (inference)",
                      &p->fwd_pd, &p->fwd));
    CHECK(eng_scratch_memory(e, p->fwd_pd, &scratch));
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_SRC, x->mem);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_WEIGHTS, l->w.mem);
    if (c->bias) args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_BIAS, l->b.mem);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_DST, y->mem);
    args_push(p->fwd_args, &p->n_fwd_args, 8, DNNL_ARG_SCRATCHPAD, scratch);
    CHECK(args_check(p->fwd_pd, p->fwd_args, p->n_fwd_args, "conv forward"));
    if (!training) return OTE_OK;

    const dnnl_memory_desc_t *dymd = mem_md(dy->mem);
    ASSERT(dymd);
    if (dx) {
        const dnnl_memory_desc_t *dxmd = mem_md(dx->mem);
        ASSERT(dxmd);
        dnnl_convolution_desc_t bdd;
        CHECK(eng_check(dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, dxmd, &l->wbd_md,
                                                                 dymd, st, pl, pr),
                        "conv plan: backward-data desc"));
        CHECK(conv_create(e, l, &bdd, p->fwd_pd, "conv backward-data", &p->bwd_data_pd, &p->bwd_data));
        CHECK(eng_scratch_memory(e, p->bwd_data_pd, &scratch));
        args_push(p->bd_args, &p->n_bd_args, 8, DNNL_ARG_DIFF_DST, dy->mem);
        args_push(p->bd_args, &p->n_bd_args, 8, DNNL_ARG_WEIGHTS, l->wbd_alias ? l->w.mem : l->wbd_mem);
        args_push(p->bd_args, &p->n_bd_args, 8, DNNL_ARG_DIFF_SRC, dx->mem);
        args_push(p->bd_args, &p->n_bd_args, 8, DNNL_ARG_SCRATCHPAD, scratch);
        CHECK(args_check(p->bwd_data_pd, p->bd_args, p->n_bd_args, "conv backward-data"));
        p->has_dx = 1;
    }

    dnnl_convolution_desc_t bwd;
    CHECK(eng_check(dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, xmd, &l->w_md, bmd,
                                                                dymd, st, pl, pr),
                    "conv plan: backward-weights desc"));
    if (x->h < c->kh || x->w < c->kw) {
        /* Try oneDNN first (AVX-512 has JIT kernels here); fall back to the direct loop if only a
         * reference implementation exists. */
        int s = conv_create(e, l, &bwd, p->fwd_pd, "conv backward-weights", &p->bwd_w_pd, &p->bwd_w);
        if (s == OTE_EDNNL && !p->bwd_w) {
            CHECK(conv_plan_bww_naive(p, e, l, x, dy));
            return conv_plan_acc(p, e, l);
        }
        CHECK(s);
    } else {
        CHECK(conv_create(e, l, &bwd, p->fwd_pd, "conv backward-weights", &p->bwd_w_pd, &p->bwd_w));
    }
    CHECK(eng_scratch_memory(e, p->bwd_w_pd, &scratch));
    args_push(p->bw_args, &p->n_bw_args, 8, DNNL_ARG_SRC, x->mem);
    args_push(p->bw_args, &p->n_bw_args, 8, DNNL_ARG_DIFF_DST, dy->mem);
    args_push(p->bw_args, &p->n_bw_args, 8, DNNL_ARG_DIFF_WEIGHTS, l->dw.mem);
    if (c->bias) args_push(p->bw_args, &p->n_bw_args, 8, DNNL_ARG_DIFF_BIAS, l->db.mem);
    args_push(p->bw_args, &p->n_bw_args, 8, DNNL_ARG_SCRATCHPAD, scratch);
    CHECK(args_check(p->bwd_w_pd, p->bw_args, p->n_bw_args, "conv backward-weights"));
    return conv_plan_acc(p, e, l);
}

/* Per-plan buffers for accumulate mode (weights are small: 147 KB for 64x64x3x3). */
static int conv_plan_acc(conv_plan *p, eng_ctx *e, conv_layer *l) {
    const conv_cfg *c = &l->cfg;
    void *buf = NULL;
    if (posix_memalign(&buf, 64, l->dw.bytes) != 0) return ote_err(OTE_ENOMEM, "conv plan: accumulate buffer");
    p->acc_dw = buf;
    CHECK(eng_check(dnnl_memory_create(&p->acc_dw_mem, &l->w_md, e->engine, p->acc_dw), "conv plan: acc memory"));
    if (c->bias) {
        buf = NULL;
        if (posix_memalign(&buf, 64, l->db.bytes) != 0) return ote_err(OTE_ENOMEM, "conv plan: accumulate buffer");
        p->acc_db = buf;
        CHECK(eng_check(dnnl_memory_create(&p->acc_db_mem, mem_md(l->db.mem), e->engine, p->acc_db),
                        "conv plan: acc memory"));
    }
    memcpy(p->bw_acc_args, p->bw_args, sizeof p->bw_args);
    for (int i = 0; i < p->n_bw_args; i++) {
        if (p->bw_acc_args[i].arg == DNNL_ARG_DIFF_WEIGHTS) p->bw_acc_args[i].memory = p->acc_dw_mem;
        if (p->bw_acc_args[i].arg == DNNL_ARG_DIFF_BIAS) p->bw_acc_args[i].memory = p->acc_db_mem;
    }
    if (p->bww_naive) {
        memcpy(p->bww_acc_args, p->bww_args, sizeof p->bww_args);
        for (int i = 0; i < p->n_bww_args; i++)
            if (p->bww_acc_args[i].arg == DNNL_ARG_DST) p->bww_acc_args[i].memory = p->acc_dw_mem;
    }
    return OTE_OK;
}

int conv_plan_init(conv_plan *p, eng_ctx *e, conv_layer *l, const tensor *x, tensor *y, const tensor *dy,
                   tensor *dx, int training) {
    memset(p, 0, sizeof *p);
    p->l = l;
    p->training = training;
    int s = conv_plan_init_impl(p, e, l, x, y, dy, dx, training);
    if (s < 0) {
        ote_err_context(s, "conv plan %d->%d k%dx%d s%d g%d for input (%d,%d,%d,%d)", l->cfg.ic, l->cfg.oc,
                        l->cfg.kh, l->cfg.kw, l->cfg.stride_h, l->cfg.groups, x->n, x->c, x->h, x->w);
        conv_plan_free(p);
    }
    return s;
}

int conv_forward(conv_plan *p, eng_ctx *e) { return eng_exec(e, p->fwd, p->n_fwd_args, p->fwd_args, "conv forward"); }

static void conv_add(float *restrict dst, const float *restrict src, size_t n) {
#pragma omp parallel for simd if (n > 65536) schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

int conv_backward(conv_plan *p, eng_ctx *e, int accumulate) {
    ASSERT(p->training);
    if (p->has_dx) CHECK(eng_exec(e, p->bwd_data, p->n_bd_args, p->bd_args, "conv backward-data"));
    if (p->bww_naive) {
        const conv_cfg *c = &p->l->cfg;
        conv_bww_direct(c, p->bww_x, p->bww_dy, p->bww_oihw, !c->bias ? NULL : accumulate ? p->acc_db : p->l->db.data);
        CHECK(eng_exec(e, p->bww_reorder, p->n_bww_args, accumulate ? p->bww_acc_args : p->bww_args,
                       "conv backward-weights (direct): reorder"));
        if (!accumulate) return OTE_OK;
        conv_add(p->l->dw.data, p->acc_dw, p->l->dw.bytes / sizeof(float));
        if (c->bias) conv_add(p->l->db.data, p->acc_db, (size_t)c->oc);
        return OTE_OK;
    }
    if (!accumulate) return eng_exec(e, p->bwd_w, p->n_bw_args, p->bw_args, "conv backward-weights");
    CHECK(eng_exec(e, p->bwd_w, p->n_bw_args, p->bw_acc_args, "conv backward-weights (accumulate)"));
    /* Blocked padding is zero in both buffers, so adding over the physical size keeps it zero. */
    conv_add(p->l->dw.data, p->acc_dw, p->l->dw.bytes / sizeof(float));
    if (p->l->cfg.bias) conv_add(p->l->db.data, p->acc_db, (size_t)p->l->cfg.oc);
    return OTE_OK;
}

void conv_plan_free(conv_plan *p) {
    conv_destroy(&p->fwd_pd, &p->fwd);
    conv_destroy(&p->bwd_data_pd, &p->bwd_data);
    conv_destroy(&p->bwd_w_pd, &p->bwd_w);
    conv_destroy(&p->bww_reorder_pd, &p->bww_reorder);
    if (p->bww_oihw_mem) dnnl_memory_destroy(p->bww_oihw_mem);
    free(p->bww_oihw);
    if (p->acc_dw_mem) dnnl_memory_destroy(p->acc_dw_mem);
    if (p->acc_db_mem) dnnl_memory_destroy(p->acc_db_mem);
    free(p->acc_dw);
    free(p->acc_db);
    memset(p, 0, sizeof *p);
}

/* A const buffer as a oneDNN memory handle (which is never const): only for the source of a
 * reorder, which oneDNN reads and does not write. */
static float *conv_reorder_src(const float *p) { return (float *)(uintptr_t)p; }

/* One-off reorder between the layer's weights layout and plain [O][I/G][KH][KW]. */
static int conv_reorder_plain(const conv_layer *l, eng_ctx *e, dnnl_memory_t blocked, float *plain, int to_plain) {
    dnnl_dims_t wd;
    int nd = conv_wdims(&l->cfg, wd);
    dnnl_memory_desc_t pmd;
    CHECK(eng_check(dnnl_memory_desc_init_by_tag(&pmd, nd, wd, dnnl_f32, nd == 4 ? dnnl_oihw : dnnl_goihw),
                    "conv: plain weights md"));
    const dnnl_memory_desc_t *bmd = mem_md(blocked);
    ASSERT(bmd);
    dnnl_memory_t pm = NULL;
    CHECK(eng_check(dnnl_memory_create(&pm, &pmd, e->engine, plain), "conv: plain weights memory"));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    int s = eng_create_reorder(e, to_plain ? bmd : &pmd, to_plain ? &pmd : bmd, "conv: weights <-> oihw", &pd, &prim);
    if (s == OTE_OK) {
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, to_plain ? blocked : pm}, {DNNL_ARG_DST, to_plain ? pm : blocked}};
        int na = 2;
        if (dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)) > 0) {
            s = eng_scratch_memory(e, pd, &a[2].memory);
            a[2].arg = DNNL_ARG_SCRATCHPAD;
            na = 3;
        }
        if (s == OTE_OK) s = eng_exec(e, prim, na, a, "conv: weights <-> oihw");
    }
    conv_destroy(&pd, &prim);
    dnnl_memory_destroy(pm);
    return s;
}

int conv_weights_from_oihw(conv_layer *l, eng_ctx *e, const float *oihw) {
    ASSERT(l->w.data != NULL);
    CHECK(conv_reorder_plain(l, e, l->w.mem, conv_reorder_src(oihw), 0));
    return conv_refresh_weights(l, e);
}

int conv_weights_to_oihw(const conv_layer *l, eng_ctx *e, float *oihw) {
    ASSERT(l->w.data != NULL);
    return conv_reorder_plain(l, e, l->w.mem, oihw, 1);
}

static int conv_like_weights(const conv_layer *l, eng_ctx *e, float *like_w, float *oihw, int to_plain) {
    const dnnl_memory_desc_t *md = mem_md(l->w.mem);
    ASSERT(md);
    dnnl_memory_t m = NULL;
    CHECK(eng_check(dnnl_memory_create(&m, md, e->engine, like_w), "conv: weights-like memory"));
    int s = conv_reorder_plain(l, e, m, oihw, to_plain);
    dnnl_memory_destroy(m);
    return s;
}

int conv_like_weights_to_oihw(const conv_layer *l, eng_ctx *e, const float *like_w, float *oihw) {
    return conv_like_weights(l, e, conv_reorder_src(like_w), oihw, 1);
}

int conv_like_weights_from_oihw(const conv_layer *l, eng_ctx *e, const float *oihw, float *like_w) {
    return conv_like_weights(l, e, like_w, conv_reorder_src(oihw), 0);
}

int conv_grad_to_oihw(const conv_layer *l, eng_ctx *e, float *oihw) {
    ASSERT(l->dw.data != NULL);
    return conv_reorder_plain(l, e, l->dw.mem, oihw, 1);
}

int conv_fold_bn(conv_layer *dst, eng_ctx *e, const conv_layer *src, const float *gamma, const float *beta,
                 const float *mean, const float *var, float eps) {
    const conv_cfg *a = &src->cfg, *b = &dst->cfg;
    if (a->ic != b->ic || a->oc != b->oc || a->kh != b->kh || a->kw != b->kw || a->stride_h != b->stride_h ||
        a->stride_w != b->stride_w || a->pad_t != b->pad_t || a->pad_l != b->pad_l || a->pad_b != b->pad_b ||
        a->pad_r != b->pad_r || a->groups != b->groups || !b->bias)
        return ote_err(OTE_EINVAL, "conv fold bn: destination layer geometry differs or has no bias");
    size_t per_o = (size_t)(a->ic / a->groups) * a->kh * a->kw;
    float *w = malloc((size_t)a->oc * per_o * sizeof *w);
    if (!w) return ote_err(OTE_ENOMEM, "conv fold bn: %zu weights", (size_t)a->oc * per_o);
    int s = conv_weights_to_oihw(src, e, w);
    if (s == OTE_OK) {
        for (int o = 0; o < a->oc; o++) {
            double sc = (double)gamma[o] / sqrt((double)var[o] + (double)eps);
            for (size_t i = 0; i < per_o; i++) w[o * per_o + i] = (float)((double)w[o * per_o + i] * sc);
            double b0 = a->bias ? (double)src->b.data[o] : 0.0;
            dst->b.data[o] = (float)((b0 - (double)mean[o]) * sc + (double)beta[o]);
        }
        s = conv_weights_from_oihw(dst, e, w);
    }
    free(w);
    return s;
}
