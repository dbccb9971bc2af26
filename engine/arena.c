/* arena.c - two-phase aligned blocks (reserve while planning, commit once). */
#include "engine/arena.h"

#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "engine/ote.h"
#include "engine/eng.h"
#include "engine/tensor.h"

#define ARENA_ALIGN 64

void arena_init(arena *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->name = name;
}

size_t arena_reserve(arena *a, size_t bytes, struct tensor *t) {
    size_t off = a->used;
    a->used += (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (t) {
        if (a->n_tensors == a->cap_tensors) {
            int cap = a->cap_tensors ? 2 * a->cap_tensors : 64;
            struct tensor **p = realloc(a->tensors, (size_t)cap * sizeof *p);
            ASSERT(p != NULL);
            a->tensors = p;
            a->cap_tensors = cap;
        }
        a->tensors[a->n_tensors++] = t;
        t->home = a;
        t->offset = off;
    }
    return off;
}

int arena_commit(arena *a) {
    if (a->used > a->cap || !a->base) {
        size_t want = a->used ? a->used : ARENA_ALIGN;
        void *p = NULL;
        if (posix_memalign(&p, ARENA_ALIGN, want) != 0)
            return ote_err(OTE_ENOMEM, "cannot allocate %zu MB for the %s arena", want >> 20,
                           a->name ? a->name : "?");
        free(a->base);
        a->base = p;
        a->cap = want;
    }
    memset(a->base, 0, a->cap);
    for (int i = 0; i < a->n_tensors; i++) {
        tensor *t = a->tensors[i];
        t->data = (float *)(a->base + t->offset);
        if (t->mem) CHECK(eng_check(dnnl_memory_set_data_handle(t->mem, t->data), "bind tensor"));
    }
    return OTE_OK;
}

void arena_reset(arena *a) {
    a->used = 0;
    a->n_tensors = 0;
}

void arena_zero(arena *a) {
    if (a->base) memset(a->base, 0, a->used);
}

void arena_free(arena *a) {
    free(a->base);
    free(a->tensors);
    const char *name = a->name;
    memset(a, 0, sizeof *a);
    a->name = name;
}
