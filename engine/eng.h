/* eng.h - the oneDNN execution context shared by every layer.
 *
 * Owns the oneDNN CPU engine and stream, the primitive attribute that puts every primitive in
 * user-scratchpad mode, and the one scratchpad buffer all primitives share (we run one primitive
 * at a time, so the buffer is sized to the largest request). The OpenMP thread count is fixed in
 * eng_init(), before any primitive exists, and never changed afterwards (oneDNN decomposes work
 * per thread count at creation time).
 *
 * Invariants: every primitive is created through eng_create_primitive(), which refuses reference
 * (`ref:`) implementations unless explicitly allowed and counts creations, so tests can prove a
 * training step creates none.
 */
#ifndef OTE_ENG_H
#define OTE_ENG_H

#include <stddef.h>

#include <oneapi/dnnl/dnnl.h>

/* Optional per-primitive-kind timing (bench_detector): when `on`, eng_exec adds the wall time of
 * every execution to the slot of its (primitive kind, propagation kind). Off by default; costs two
 * clock reads and two pd queries per primitive when on. */
#define ENG_PROF_SLOTS 24
typedef struct eng_prof {
    int on;
    int n;                          /* slots in use */
    int kind[ENG_PROF_SLOTS];       /* dnnl_primitive_kind_t */
    int prop[ENG_PROF_SLOTS];       /* dnnl_prop_kind_t (0 where the kind has none, e.g. reorder) */
    int grouped[ENG_PROF_SLOTS];    /* convolutions: 1 = grouped/depthwise weights */
    double secs[ENG_PROF_SLOTS];
    long calls[ENG_PROF_SLOTS];
} eng_prof;

typedef struct eng_ctx {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr; /* scratchpad_mode_user; every primitive is created with it */
    int nthreads;
    int blk;                /* activation channel block: 16 where oneDNN dispatches AVX-512, else 8
                             * (AVX2's JIT convolutions take nChw8c only; nChw16c gets ref:any) */
    void *scratch;          /* shared scratchpad, 64-byte aligned */
    size_t scratch_size;    /* bytes needed by the largest primitive so far (grows while planning) */
    size_t scratch_cap;     /* bytes allocated */
    dnnl_memory_t *scratch_mems; /* every scratchpad memory object handed out (owned here) */
    int n_scratch_mems, cap_scratch_mems;
    long n_primitives;      /* primitives created so far (for the no-creation-in-step test) */
    double pd_secs;         /* wall time inside dnnl_*primitive_desc_create (dispatch, descriptors) */
    double prim_secs;       /* wall time inside dnnl_primitive_create (JIT code generation) */
    int allow_ref;          /* 0: a `ref:` implementation is an error (default) */
    int verbose;            /* 1: log every primitive's implementation to stderr */
    eng_prof prof;          /* timing per primitive kind, when prof.on */
} eng_ctx;

/* The OpenMP wait policy ote-c runs with unless the user chose one. libgomp spins 300,000 times
 * (about a millisecond here) before a waiting thread sleeps; on a machine where another process
 * wants the cores that spinning steals them and training collapses (bench/contention.sh). Unless
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, this sets OMP_WAIT_POLICY=passive and
 * re-executes the program (/proc/self/exe, same argv and environment) because libgomp reads the
 * variable once, when it is loaded. Call first thing in main(), before any thread or MPI exists.
 * Returns only when nothing was to do (OTE_OMP_POLICY=libgomp keeps libgomp's default) or the exec
 * failed (then the program goes on with libgomp's default). Threads are not bound to cores: bound
 * threads cannot move away from a busy core. */
/* Measured (bench/contention.sh, 320x320, medians of 3): passive keeps 55% (batch 1) / 62% (batch 8)
 * of the quiet speed beside a busy process, libgomp's default 34% / 41%, GOMP_SPINCOUNT=10000 17% /
 * 44%; quiet, passive is at 94% / 97% of libgomp's default. */
#define ENG_OMP_WAIT_POLICY "passive"
void eng_omp_policy(char **argv);

/* nthreads <= 0 means: OMP_NUM_THREADS if set, else the number of online CPUs. */
int eng_init(eng_ctx *e, int nthreads);
void eng_free(eng_ctx *e);

/* Creates pd + primitive for an op descriptor. `hint` may be NULL (forward) or the forward pd
 * (backward). Rejects `ref:` implementations (unless e->allow_ref) with a message naming `what`.
 * Grows e->scratch_size to the primitive's scratchpad need; call eng_scratch_commit() after all
 * primitives of a plan exist. */
int eng_create_primitive(eng_ctx *e, const void *op_desc, const_dnnl_primitive_desc_t hint,
                         const char *what, dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim);
/* Same with an explicit attribute (e.g. an inference conv's post-ops). `attr` must keep the
 * user-scratchpad mode: clone it from e->attr. NULL means e->attr. */
int eng_create_primitive_attr(eng_ctx *e, const void *op_desc, const_dnnl_primitive_attr_t attr,
                              const_dnnl_primitive_desc_t hint, const char *what, dnnl_primitive_desc_t *pd,
                              dnnl_primitive_t *prim);
/* Same for a reorder between two memory descriptors. */
int eng_create_reorder(eng_ctx *e, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                       const char *what, dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim);
/* Returns the scratchpad memory object to pass as DNNL_ARG_SCRATCHPAD for primitives of `pd`.
 * The context owns it (freed by eng_free) and grows the shared buffer if needed, re-pointing every
 * scratchpad memory handed out before. Planning-time only: never call inside a step. */
int eng_scratch_memory(eng_ctx *e, const_dnnl_primitive_desc_t pd, dnnl_memory_t *mem);

/* Runs a primitive and waits for it. Returns OTE_EDNNL with `what` on failure. */
int eng_exec(eng_ctx *e, dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args, const char *what);

/* Clears the profile's slots (keeps prof.on). */
void eng_prof_reset(eng_ctx *e);
/* Readable name of a profile slot, e.g. "convolution backward_weights". */
void eng_prof_name(const eng_ctx *e, int slot, char *buf, size_t n);

/* The activation format tag of the context's block: dnnl_nChw16c or dnnl_nChw8c. */
dnnl_format_tag_t eng_act_tag(const eng_ctx *e);
/* The block the current CPU (and ONEDNN_MAX_CPU_ISA) asks for: 16 for AVX-512 and up, else 8. */
int eng_isa_block(void);

/* Turns a dnnl status into an ote status with a message. */
int eng_check(dnnl_status_t st, const char *what);

/* Version/ISA strings for `ote --version`. */
const char *eng_isa_name(void);
void eng_version_string(char *buf, size_t n);

#endif
