/* memplan.h - the detector's activation-memory planner: where every activation and activation
 * gradient of one plan lives inside the one block that all plans share.
 *
 * A plan's block layout is [saved | fixed | slot 0 | slot 1 | ...]:
 *   MEMPLAN_SAVED: forward activations kept for the backward (conv outputs, BN / GN outputs with
 *                  ReLU6 / ReLU in place, the head outputs), each at its own offset;
 *   MEMPLAN_FIXED: gradients that must all exist at once (the head-output gradients the loss writes
 *                  for every level, the FPN gradients), each at its own offset;
 *   MEMPLAN_SLOT:  transient gradients of the backbone and the head towers; they share
 *                  MEMPLAN_MAX_SLOTS slots, each slot as large as the largest tensor put in any slot.
 * Slots are assigned by running the real backward code in simulate mode (a memplan_sim instead of
 * NULL): it calls memplan_take / memplan_drop in exactly the order the real backward needs the
 * tensors, so assignment and use cannot disagree. MEMPLAN_RUN skips the compute in that mode.
 *
 * Ownership: a memplan owns its registry and the oneDNN memory objects of the registered tensors
 * (the tensor structs themselves belong to the component plans that registered them and must not
 * move). A memplan_block owns the bytes. Binding re-points every registered tensor's data handle
 * into the block; it allocates nothing and is redone only when another plan ran in between or the
 * block grew (grow -> new generation).
 */
#ifndef OTE_MEMPLAN_H
#define OTE_MEMPLAN_H

#include <stddef.h>

#include "engine/eng.h"
#include "engine/ote.h"
#include "engine/tensor.h"

#define MEMPLAN_MAX_SLOTS 6

typedef enum memplan_region { MEMPLAN_SAVED = 0, MEMPLAN_FIXED = 1, MEMPLAN_SLOT = 2 } memplan_region;

typedef struct memplan_entry {
    tensor *t;
    memplan_region region;
    int slot;   /* MEMPLAN_SLOT: slot index found by the simulation (-1 until then) */
    size_t off; /* MEMPLAN_SAVED / MEMPLAN_FIXED: offset within that region */
} memplan_entry;

typedef struct memplan {
    memplan_entry *regs;
    int n_regs, cap_regs;
    size_t saved_bytes, fixed_bytes, slot_bytes; /* slot_bytes: the size of ONE slot */
    int n_slots;
    size_t total_bytes; /* set by memplan_total */
    unsigned long gen;  /* block generation this plan is bound to (0 = never) */
} memplan;

/* The one activation block every plan of a detector shares (only one plan runs at a time). */
typedef struct memplan_block {
    char *data;
    size_t cap;
    unsigned long gen;     /* bumped whenever the block is reallocated */
    const memplan *bound;  /* plan whose tensors point into the block now */
} memplan_block;

/* Slot simulation state; NULL where a backward function takes one means "really run". */
typedef struct memplan_sim {
    memplan *m;
    const tensor *owner[MEMPLAN_MAX_SLOTS];
    int err;
} memplan_sim;

/* Runs x (and returns its error) unless sim is a simulation. */
#define MEMPLAN_RUN(sim, x)    \
    do {                       \
        if (!(sim)) CHECK(x);  \
    } while (0)
/* The same for a call without a status. */
#define MEMPLAN_RUNV(sim, x)   \
    do {                       \
        if (!(sim)) x;         \
    } while (0)

/* Registers t (already planned, data not yet bound) in region. */
int memplan_add(memplan *m, tensor *t, memplan_region region);
/* Plans t as an (n, c, h, w) f32 nChw<B>c activation and registers it. */
int memplan_act(memplan *m, eng_ctx *e, tensor *t, int n, int c, int h, int w, memplan_region region);
/* Block bytes the plan needs (saved + fixed + slots); stores it in m->total_bytes. */
size_t memplan_total(memplan *m);
/* Destroys the registered tensors' oneDNN memory objects and the registry. */
void memplan_free(memplan *m);

void memplan_sim_start(memplan_sim *s, memplan *m);
/* The backward is about to write slot tensor t: give it a free slot (no-op when s is NULL). */
void memplan_take(memplan_sim *s, tensor *t);
/* The backward no longer needs t: its slot is free again (no-op when s is NULL). */
void memplan_drop(memplan_sim *s, const tensor *t);
/* After the simulated backward: OTE_EINVAL if a slot is still taken, a slot tensor was never
 * taken, or no slot was free when one was needed. */
int memplan_sim_finish(memplan_sim *s);

/* Grows the block to at least bytes (zeroed: blocked channel padding must start at zero, and the
 * primitives keep it so); a new generation unbinds every plan. No-op when it is large enough. */
int memplan_block_grow(memplan_block *b, size_t bytes);
/* Points every tensor of m into the block (cheap when m is already bound to this generation). */
int memplan_bind(memplan_block *b, memplan *m);
void memplan_block_free(memplan_block *b);

#endif
