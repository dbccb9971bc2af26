/* add.c - oneDNN binary add for activations and OpenMP copy/accumulate for gradient fan-out. */
#include "engine/add.h"

#include <string.h>

#include "engine/args.h"
#include "engine/ote.h"

#if defined(__x86_64__) && !defined(__clang__)
#define ADD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ADD_CLONES
#endif

static int add_same_shape(const tensor *a, const tensor *b) {
    return a->layout == b->layout && a->blk == b->blk && a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w &&
           a->bytes == b->bytes;
}

int add_plan_init(add_plan *p, eng_ctx *e, const tensor *a, const tensor *b, tensor *y) {
    memset(p, 0, sizeof *p);
    if (!add_same_shape(a, b) || !add_same_shape(a, y) || a->layout != TL_BLOCKED)
        return ote_err(OTE_EINVAL, "add: shapes differ: (%d,%d,%d,%d) + (%d,%d,%d,%d) -> (%d,%d,%d,%d)", a->n, a->c,
                       a->h, a->w, b->n, b->c, b->h, b->w, y->n, y->c, y->h, y->w);
    ASSERT(y != b || b == a);
    p->a = a, p->b = b, p->y = y;
    const dnnl_memory_desc_t *md = NULL;
    CHECK(eng_check(dnnl_memory_get_memory_desc(a->mem, &md), "add: src md"));
    dnnl_binary_desc_t d;
    CHECK(eng_check(dnnl_binary_desc_init(&d, dnnl_binary_add, md, md, md), "add: binary desc"));
    CHECK(eng_create_primitive(e, &d, NULL, "add (binary)", &p->pd, &p->prim));
    dnnl_memory_t scratch;
    CHECK(eng_scratch_memory(e, p->pd, &scratch));
    args_push(p->args, &p->nargs, 4, DNNL_ARG_SRC_0, a->mem);
    args_push(p->args, &p->nargs, 4, DNNL_ARG_SRC_1, b->mem);
    args_push(p->args, &p->nargs, 4, DNNL_ARG_DST, y->mem);
    args_push(p->args, &p->nargs, 4, DNNL_ARG_SCRATCHPAD, scratch);
    return args_check(p->pd, p->args, p->nargs, "add (binary)");
}

int add_forward(add_plan *p, eng_ctx *e) { return eng_exec(e, p->prim, p->nargs, p->args, "add (binary)"); }

void add_plan_free(add_plan *p) {
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->pd) dnnl_primitive_desc_destroy(p->pd);
    memset(p, 0, sizeof *p);
}

#define ADD_CHUNK 4096 /* floats per OpenMP work item (16 KB) */

ADD_CLONES static void add_k_acc(float *restrict d, const float *restrict s, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) d[i] += s[i];
}

void add_copy(tensor *dst, const tensor *src) {
    ASSERT(add_same_shape(dst, src));
    if (dst->data == src->data) return;
    size_t n = dst->bytes / sizeof(float), nch = (n + ADD_CHUNK - 1) / ADD_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nch; k++) {
        size_t i0 = k * ADD_CHUNK, len = n - i0 < ADD_CHUNK ? n - i0 : ADD_CHUNK;
        memcpy(dst->data + i0, src->data + i0, len * sizeof(float));
    }
}

void add_accumulate(tensor *dst, const tensor *src) {
    ASSERT(add_same_shape(dst, src) && dst->data != src->data);
    size_t n = dst->bytes / sizeof(float), nch = (n + ADD_CHUNK - 1) / ADD_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nch; k++) {
        size_t i0 = k * ADD_CHUNK, len = n - i0 < ADD_CHUNK ? n - i0 : ADD_CHUNK;
        add_k_acc(dst->data + i0, src->data + i0, len);
    }
}
