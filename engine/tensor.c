/* tensor.c - planning, binding and plain-layout conversion of tensor views. */
#include "engine/tensor.h"

#include <string.h>

#include "engine/eng.h"
#include "engine/ote.h"

static int plan_md(eng_ctx *e, tensor *t, const dnnl_memory_desc_t *md, arena *a) {
    t->bytes = dnnl_memory_desc_get_size(md);
    CHECK(eng_check(dnnl_memory_create(&t->mem, md, e->engine, DNNL_MEMORY_NONE), "tensor memory"));
    if (a) arena_reserve(a, t->bytes, t);
    return OTE_OK;
}

int tensor_plan_act(eng_ctx *e, tensor *t, int n, int c, int h, int w, arena *a) {
    memset(t, 0, sizeof *t);
    t->n = n, t->c = c, t->h = h, t->w = w, t->groups = 1;
    t->layout = TL_BLOCKED;
    t->blk = e->blk;
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {n, c, h, w};
    CHECK(eng_check(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, eng_act_tag(e)), "activation md"));
    return plan_md(e, t, &md, a);
}

int tensor_plan_plain(eng_ctx *e, tensor *t, tensor_layout layout, int n, int c, int h, int w, arena *a) {
    memset(t, 0, sizeof *t);
    t->n = n, t->c = c, t->h = h, t->w = w, t->groups = 1;
    t->layout = layout;
    dnnl_memory_desc_t md;
    if (layout == TL_X) {
        dnnl_dims_t dims = {n};
        t->c = t->h = t->w = 1;
        CHECK(eng_check(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a), "vector md"));
    } else {
        ASSERT(layout == TL_NCHW);
        dnnl_dims_t dims = {n, c, h, w};
        CHECK(eng_check(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, dnnl_nchw), "nchw md"));
    }
    return plan_md(e, t, &md, a);
}

int tensor_set_data(tensor *t, float *data) {
    t->data = data;
    t->home = NULL;
    if (t->mem) return eng_check(dnnl_memory_set_data_handle(t->mem, data), "set tensor data");
    return OTE_OK;
}

void tensor_free(tensor *t) {
    if (t->mem) dnnl_memory_destroy(t->mem);
    t->mem = NULL;
    t->data = NULL;
}

size_t tensor_numel(const tensor *t) { return (size_t)t->n * t->c * t->h * t->w; }

void tensor_from_nchw(tensor *t, const float *src) {
    if (t->layout != TL_BLOCKED) {
        memcpy(t->data, src, tensor_numel(t) * sizeof(float));
        return;
    }
    memset(t->data, 0, t->bytes);
    for (int n = 0; n < t->n; n++)
        for (int c = 0; c < t->c; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++)
                    t->data[blk_off(t->c, t->h, t->w, t->blk, n, c, h, w)] =
                        src[(((size_t)n * t->c + c) * t->h + h) * t->w + w];
}

void tensor_to_nchw(const tensor *t, float *dst) {
    if (t->layout != TL_BLOCKED) {
        memcpy(dst, t->data, tensor_numel(t) * sizeof(float));
        return;
    }
    for (int n = 0; n < t->n; n++)
        for (int c = 0; c < t->c; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++)
                    dst[(((size_t)n * t->c + c) * t->h + h) * t->w + w] =
                        t->data[blk_off(t->c, t->h, t->w, t->blk, n, c, h, w)];
}
