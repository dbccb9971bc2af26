/* arena.h - aligned memory blocks, one per lifetime class, and the tensor views that live in them.
 *
 * Planning is two-phase. While a plan is built, every tensor is *reserved* in the arena of its
 * lifetime class (parameters, gradients, optimiser state, saved activations, transient gradients,
 * ...): the arena only hands out 64-byte aligned offsets and remembers the tensor. arena_commit()
 * then allocates the block once (zeroed, so blocked-layout channel padding starts at zero) and
 * points every registered tensor (and its oneDNN memory object) at base + offset. Nothing is
 * allocated after that: a training step only reads and writes committed memory.
 *
 * An arena can be reset and re-planned (transient blocks reused across plans); committing again
 * reallocates only if it grew.
 */
#ifndef OTE_ARENA_H
#define OTE_ARENA_H

#include <stddef.h>

struct tensor;

typedef struct arena {
    const char *name;       /* lifetime class, for messages and the plan summary */
    char *base;             /* 64-byte aligned block (NULL before commit) */
    size_t used;            /* bytes reserved so far */
    size_t cap;             /* bytes allocated */
    struct tensor **tensors; /* tensors to re-point on commit */
    int n_tensors, cap_tensors;
} arena;

void arena_init(arena *a, const char *name);
/* Reserves `bytes` (rounded up to 64) and returns the offset; registers `t` (may be NULL). */
size_t arena_reserve(arena *a, size_t bytes, struct tensor *t);
/* Allocates (or grows) the block and binds every registered tensor. */
int arena_commit(arena *a);
/* Forgets all reservations (keeps the block for reuse). */
void arena_reset(arena *a);
void arena_zero(arena *a);
void arena_free(arena *a);

#endif
