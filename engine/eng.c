/* eng.c - oneDNN engine/stream/scratchpad management and guarded primitive creation. */
#define _POSIX_C_SOURCE 200809L
#include "engine/eng.h"

#include <oneapi/dnnl/dnnl_debug.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/ote.h"

static const char *dnnl_status_name(dnnl_status_t st) {
    switch (st) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_iterator_ends: return "iterator ends";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown";
    }
}

int eng_check(dnnl_status_t st, const char *what) {
    if (st == dnnl_success) return OTE_OK;
    if (st == dnnl_out_of_memory) return ote_err(OTE_ENOMEM, "oneDNN: %s: out of memory", what);
    return ote_err(OTE_EDNNL, "oneDNN: %s: %s", what, dnnl_status_name(st));
}

void eng_omp_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    const char *mark = getenv("OTE_OMP_POLICY");
    if (mark) return; /* "libgomp", or "set": this process is the re-executed one */
    if (setenv("OMP_WAIT_POLICY", ENG_OMP_WAIT_POLICY, 1) != 0 || setenv("OTE_OMP_POLICY", "set", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY"); /* exec failed: run on as we are */
}

int eng_init(eng_ctx *e, int nthreads) {
    memset(e, 0, sizeof *e);
    if (nthreads <= 0) {
        const char *env = getenv("OMP_NUM_THREADS");
        nthreads = env ? atoi(env) : 0;
        if (nthreads <= 0) nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (nthreads <= 0) nthreads = 1;
    }
    /* Fixed before any primitive exists (onednn-notes §2.6). */
    omp_set_num_threads(nthreads);
    e->nthreads = nthreads;
    e->blk = eng_isa_block();
    e->verbose = getenv("OTE_VERBOSE_PLAN") != NULL;
    CHECK(eng_check(dnnl_engine_create(&e->engine, dnnl_cpu, 0), "engine create"));
    CHECK(eng_check(dnnl_stream_create(&e->stream, e->engine, dnnl_stream_default_flags), "stream create"));
    CHECK(eng_check(dnnl_primitive_attr_create(&e->attr), "attr create"));
    CHECK(eng_check(dnnl_primitive_attr_set_scratchpad_mode(e->attr, dnnl_scratchpad_mode_user),
                    "scratchpad mode"));
    return OTE_OK;
}

void eng_free(eng_ctx *e) {
    if (e->attr) dnnl_primitive_attr_destroy(e->attr);
    if (e->stream) dnnl_stream_destroy(e->stream);
    if (e->engine) dnnl_engine_destroy(e->engine);
    for (int i = 0; i < e->n_scratch_mems; i++) dnnl_memory_destroy(e->scratch_mems[i]);
    free(e->scratch_mems);
    free(e->scratch);
    memset(e, 0, sizeof *e);
}

static double eng_secs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int finish_pd(eng_ctx *e, const char *what, dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim) {
    const char *impl = NULL;
    dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl);
    if (!impl) impl = "?";
    if (e->verbose) fprintf(stderr, "plan: %-40s %s\n", what, impl);
    if (!e->allow_ref && strncmp(impl, "ref", 3) == 0) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
        return ote_err(OTE_EDNNL, "oneDNN picked the reference implementation '%s' for %s "
                       "(a layout combination without a JIT kernel)", impl, what);
    }
    double t0 = eng_secs();
    int s = eng_check(dnnl_primitive_create(prim, *pd), what);
    e->prim_secs += eng_secs() - t0;
    if (s < 0) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
        return s;
    }
    e->n_primitives++;
    return OTE_OK;
}

int eng_create_primitive_attr(eng_ctx *e, const void *op_desc, const_dnnl_primitive_attr_t attr,
                              const_dnnl_primitive_desc_t hint, const char *what, dnnl_primitive_desc_t *pd,
                              dnnl_primitive_t *prim) {
    *pd = NULL;
    *prim = NULL;
    double t0 = eng_secs();
    dnnl_status_t st = dnnl_primitive_desc_create(pd, op_desc, attr ? attr : e->attr, e->engine, hint);
    e->pd_secs += eng_secs() - t0;
    CHECK(eng_check(st, what));
    return finish_pd(e, what, pd, prim);
}

int eng_create_primitive(eng_ctx *e, const void *op_desc, const_dnnl_primitive_desc_t hint,
                         const char *what, dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim) {
    return eng_create_primitive_attr(e, op_desc, NULL, hint, what, pd, prim);
}

int eng_create_reorder(eng_ctx *e, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                       const char *what, dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim) {
    *pd = NULL;
    *prim = NULL;
    double t0 = eng_secs();
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(pd, src, e->engine, dst, e->engine, e->attr);
    e->pd_secs += eng_secs() - t0;
    CHECK(eng_check(st, what));
    return finish_pd(e, what, pd, prim);
}

int eng_scratch_memory(eng_ctx *e, const_dnnl_primitive_desc_t pd, dnnl_memory_t *mem) {
    static const size_t align = 64;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    ASSERT(smd != NULL);
    size_t need = dnnl_memory_desc_get_size(smd);
    if (need > e->scratch_size) e->scratch_size = need;
    if (e->scratch_size > e->scratch_cap || !e->scratch) {
        size_t want = (e->scratch_size + align - 1) / align * align;
        if (want == 0) want = align;
        void *p = NULL;
        if (posix_memalign(&p, align, want) != 0) return ote_err(OTE_ENOMEM, "scratchpad of %zu bytes", want);
        free(e->scratch);
        e->scratch = p;
        e->scratch_cap = want;
        for (int i = 0; i < e->n_scratch_mems; i++)
            CHECK(eng_check(dnnl_memory_set_data_handle(e->scratch_mems[i], e->scratch), "scratchpad rebind"));
    }
    if (e->n_scratch_mems == e->cap_scratch_mems) {
        int cap = e->cap_scratch_mems ? 2 * e->cap_scratch_mems : 256;
        dnnl_memory_t *m = realloc(e->scratch_mems, (size_t)cap * sizeof *m);
        if (!m) return ote_err(OTE_ENOMEM, "scratchpad list");
        e->scratch_mems = m;
        e->cap_scratch_mems = cap;
    }
    CHECK(eng_check(dnnl_memory_create(mem, smd, e->engine, e->scratch), "scratchpad memory"));
    e->scratch_mems[e->n_scratch_mems++] = *mem;
    return OTE_OK;
}

static double mono_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void prof_add(eng_ctx *e, dnnl_primitive_t p, double secs) {
    const_dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_kind_t kind = dnnl_undefined_primitive;
    dnnl_prop_kind_t prop = dnnl_prop_kind_undef;
    if (dnnl_primitive_get_primitive_desc(p, &pd) != dnnl_success) return;
    dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind);
    if (dnnl_primitive_desc_query(pd, dnnl_query_prop_kind, 0, &prop) != dnnl_success) prop = dnnl_prop_kind_undef;
    int grouped = 0;
    if (kind == dnnl_convolution) {
        const dnnl_memory_desc_t *wd = dnnl_primitive_desc_query_md(
            pd, prop == dnnl_backward_weights ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
        grouped = wd && wd->ndims == 5;
    }
    eng_prof *pr = &e->prof;
    int i = 0;
    while (i < pr->n && !(pr->kind[i] == (int)kind && pr->prop[i] == (int)prop && pr->grouped[i] == grouped)) i++;
    if (i == pr->n) {
        if (pr->n == ENG_PROF_SLOTS) return; /* more kinds than slots: the rest goes untimed */
        pr->kind[i] = (int)kind, pr->prop[i] = (int)prop, pr->grouped[i] = grouped, pr->secs[i] = 0, pr->calls[i] = 0;
        pr->n++;
    }
    pr->secs[i] += secs;
    pr->calls[i]++;
}

int eng_exec(eng_ctx *e, dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args, const char *what) {
    double t0 = e->prof.on ? mono_seconds() : 0;
    CHECK(eng_check(dnnl_primitive_execute(p, e->stream, nargs, args), what));
    CHECK(eng_check(dnnl_stream_wait(e->stream), what));
    if (e->prof.on) prof_add(e, p, mono_seconds() - t0);
    return OTE_OK;
}

void eng_prof_reset(eng_ctx *e) {
    int on = e->prof.on;
    memset(&e->prof, 0, sizeof e->prof);
    e->prof.on = on;
}

void eng_prof_name(const eng_ctx *e, int slot, char *buf, size_t n) {
    const char *k = e->prof.grouped[slot] ? "convolution(grouped)"
                                          : dnnl_prim_kind2str((dnnl_primitive_kind_t)e->prof.kind[slot]);
    if (e->prof.prop[slot] == dnnl_prop_kind_undef) snprintf(buf, n, "%s", k);
    else snprintf(buf, n, "%s %s", k, dnnl_prop_kind2str((dnnl_prop_kind_t)e->prof.prop[slot]));
}

int eng_isa_block(void) {
    /* dnnl_cpu_isa_t values are bit masks ordered by capability; every AVX-512 level includes
     * avx512_core's bits except the MIC ones, which 2.6 still treats as 16-lane ISAs. */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ||
                   (isa & dnnl_cpu_isa_avx512_mic) == dnnl_cpu_isa_avx512_mic
               ? 16
               : 8;
}

dnnl_format_tag_t eng_act_tag(const eng_ctx *e) { return e->blk == 16 ? dnnl_nChw16c : dnnl_nChw8c; }

const char *eng_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "SSE4.1";
    case dnnl_cpu_isa_avx: return "AVX";
    case dnnl_cpu_isa_avx2: return "AVX2";
    case dnnl_cpu_isa_avx512_mic: return "AVX-512 (MIC)";
    case dnnl_cpu_isa_avx512_mic_4ops: return "AVX-512 (MIC 4ops)";
    case dnnl_cpu_isa_avx512_core: return "AVX-512 core (avx512_core)";
    case dnnl_cpu_isa_avx512_core_vnni: return "AVX-512 with DL Boost (avx512_core_vnni)";
    case dnnl_cpu_isa_avx512_core_bf16: return "AVX-512 with DL Boost and bfloat16 (avx512_core_bf16)";
    case dnnl_cpu_isa_avx512_core_amx: return "AVX-512 with AMX (avx512_core_amx)";
    case dnnl_cpu_isa_avx2_vnni: return "AVX2 with VNNI (avx2_vnni)";
    default: return "generic";
    }
}

void eng_version_string(char *buf, size_t n) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, n, "%d.%d.%d (%s)", v->major, v->minor, v->patch, v->hash);
}
