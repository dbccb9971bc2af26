/* memplan.c - the detector's activation-memory planner (see memplan.h): tensor registry with
 * region offsets, gradient-slot simulation, the shared block and plan binding.
 *
 * Invariants: every offset and the slot size are multiples of 64 bytes (the block is 64-byte
 * aligned, so every tensor is); a bound plan's tensors lie inside the block (asserted at bind).
 * Allocation happens only while planning (registry growth) and when the block grows, never in
 * memplan_bind.
 */
#include "models/memplan.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static size_t memplan_round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

int memplan_add(memplan *m, tensor *t, memplan_region region) {
    if (m->n_regs == m->cap_regs) {
        int cap = m->cap_regs ? 2 * m->cap_regs : 256;
        memplan_entry *r = realloc(m->regs, (size_t)cap * sizeof *r);
        if (!r) return ote_err(OTE_ENOMEM, "detector plan: cannot grow the tensor registry");
        m->regs = r;
        m->cap_regs = cap;
    }
    memplan_entry *r = &m->regs[m->n_regs++];
    r->t = t, r->region = region, r->slot = -1;
    r->off = 0;
    if (region == MEMPLAN_SAVED) {
        r->off = m->saved_bytes;
        m->saved_bytes += memplan_round64(t->bytes);
    } else if (region == MEMPLAN_FIXED) {
        r->off = m->fixed_bytes;
        m->fixed_bytes += memplan_round64(t->bytes);
    }
    return OTE_OK;
}

int memplan_act(memplan *m, eng_ctx *e, tensor *t, int n, int c, int h, int w, memplan_region region) {
    CHECK(tensor_plan_act(e, t, n, c, h, w, NULL));
    return memplan_add(m, t, region);
}

size_t memplan_total(memplan *m) {
    m->total_bytes = m->saved_bytes + m->fixed_bytes + (size_t)m->n_slots * m->slot_bytes;
    return m->total_bytes;
}

void memplan_free(memplan *m) {
    for (int i = 0; i < m->n_regs; i++) tensor_free(m->regs[i].t);
    free(m->regs);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------------------------ */
/* Slot simulation */

static memplan_entry *memplan_find(memplan *m, const tensor *t) {
    for (int i = 0; i < m->n_regs; i++)
        if (m->regs[i].t == t) return &m->regs[i];
    return NULL;
}

void memplan_sim_start(memplan_sim *s, memplan *m) {
    memset(s, 0, sizeof *s);
    s->m = m;
}

void memplan_take(memplan_sim *s, tensor *t) {
    if (!s) return;
    memplan_entry *r = memplan_find(s->m, t);
    ASSERT(r && r->region == MEMPLAN_SLOT);
    for (int k = 0; k < MEMPLAN_MAX_SLOTS; k++)
        if (!s->owner[k]) {
            s->owner[k] = t;
            ASSERT(r->slot < 0 || r->slot == k); /* each tensor is taken once per backward */
            r->slot = k;
            if (k + 1 > s->m->n_slots) s->m->n_slots = k + 1;
            if (t->bytes > s->m->slot_bytes) s->m->slot_bytes = memplan_round64(t->bytes);
            return;
        }
    s->err = 1;
}

void memplan_drop(memplan_sim *s, const tensor *t) {
    if (!s) return;
    for (int k = 0; k < MEMPLAN_MAX_SLOTS; k++)
        if (s->owner[k] == t) {
            s->owner[k] = NULL;
            return;
        }
    s->err = 1;
}

int memplan_sim_finish(memplan_sim *s) {
    for (int k = 0; k < MEMPLAN_MAX_SLOTS; k++)
        if (s->owner[k]) s->err = 1;
    for (int i = 0; i < s->m->n_regs; i++)
        if (s->m->regs[i].region == MEMPLAN_SLOT && s->m->regs[i].slot < 0) s->err = 1;
    if (s->err) return ote_err(OTE_EINVAL, "detector plan: gradient slot assignment inconsistent");
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The shared block */

/* The block comes from mmap, whose pages the kernel hands out zeroed (every tensor's blocked
 * padding must start at zero; the primitives keep it so). Nothing touches them while planning: the
 * first step that uses a page faults it in, inside the multi-threaded kernels. Zeroing here instead
 * (memset, one thread) cost ~1 s per GB on these VMs - 24 s + 30 s for the 992x736 batch-8 plans,
 * twice because the 1088x736 plan grows the block again (bench/bench_plans.c). */
#ifdef __SANITIZE_ADDRESS__
/* ASan builds keep the heap block, whose bounds ASan checks. */
static void *memplan_map(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return memset(p, 0, bytes);
}
static void memplan_unmap(void *p, size_t bytes) { (void)bytes, free(p); }
#else
static void *memplan_map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static void memplan_unmap(void *p, size_t bytes) { munmap(p, bytes); }
#endif

int memplan_block_grow(memplan_block *b, size_t bytes) {
    if (bytes <= b->cap) return OTE_OK;
    void *p = memplan_map(bytes);
    if (!p) return ote_err(OTE_ENOMEM, "detector: cannot allocate %zu MB of activations", bytes >> 20);
    if (b->data) memplan_unmap(b->data, b->cap);
    b->data = p;
    b->cap = bytes;
    b->gen++;
    b->bound = NULL;
    return OTE_OK;
}

int memplan_bind(memplan_block *b, memplan *m) {
    if (b->bound == m && m->gen == b->gen) return OTE_OK;
    size_t fixed0 = m->saved_bytes, slot0 = m->saved_bytes + m->fixed_bytes;
    for (int i = 0; i < m->n_regs; i++) {
        memplan_entry *r = &m->regs[i];
        size_t off = r->region == MEMPLAN_SAVED ? r->off
                     : r->region == MEMPLAN_FIXED ? fixed0 + r->off
                                                  : slot0 + (size_t)r->slot * m->slot_bytes;
        ASSERT(off + r->t->bytes <= b->cap);
        r->t->data = (float *)(b->data + off);
        CHECK(eng_check(dnnl_memory_set_data_handle(r->t->mem, r->t->data), "detector: bind tensor"));
    }
    m->gen = b->gen;
    b->bound = m;
    return OTE_OK;
}

void memplan_block_free(memplan_block *b) {
    if (b->data) memplan_unmap(b->data, b->cap);
    memset(b, 0, sizeof *b);
}
