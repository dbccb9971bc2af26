/* args.h - small helpers for oneDNN execute-argument lists, shared by the engine layers.
 *
 * dnnl_primitive_execute in 2.6 checks only the number of arguments, never their layouts
 * (onednn-notes §2.10 item 2): a memory whose md differs from what the primitive expects is used
 * as is and gives silently wrong results. Every layer therefore runs args_check() on each
 * argument list when its plan is built. Header-only, no state.
 */
#ifndef OTE_ARGS_H
#define OTE_ARGS_H

#include <oneapi/dnnl/dnnl.h>

#include "engine/ote.h"

/* Appends {arg, mem} to a list of capacity `cap`. */
static inline void args_push(dnnl_exec_arg_t *args, int *n, int cap, int arg, dnnl_memory_t mem) {
    ASSERT(*n < cap && mem != NULL);
    args[*n].arg = arg;
    args[*n].memory = mem;
    (*n)++;
}

/* Every argument's memory md must equal the md the primitive descriptor expects for it. */
static inline int args_check(const_dnnl_primitive_desc_t pd, const dnnl_exec_arg_t *args, int n,
                             const char *what) {
    for (int i = 0; i < n; i++) {
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, args[i].arg);
        const dnnl_memory_desc_t *have = NULL;
        if (dnnl_memory_get_memory_desc(args[i].memory, &have) != dnnl_success || !want || !have)
            return ote_err(OTE_EDNNL, "%s: argument %d: cannot query memory descriptor", what, args[i].arg);
        if (!dnnl_memory_desc_equal(want, have))
            return ote_err(OTE_EDNNL, "%s: argument %d: memory layout differs from the primitive's",
                           what, args[i].arg);
    }
    return OTE_OK;
}

#endif
