/* ote.h - error codes, error messages and the always-on ASSERT.
 *
 * Library code never exits. A function that can fail for an environmental reason (missing file,
 * malformed input, out of memory, a oneDNN error) returns a negative OTE_E* code and records a
 * one-line message with ote_err(). The message lives in a thread-local buffer (like errno): it is
 * the only per-thread state in the project and it is never read by library logic, only reported
 * by tools/. Broken invariants use ASSERT, which is compiled in every build and aborts with
 * file:line.
 */
#ifndef OTE_OTE_H
#define OTE_OTE_H

#include <stdio.h>
#include <stdlib.h>

enum {
    OTE_OK = 0,
    OTE_EINVAL = -1,  /* bad argument or configuration value (usage error) */
    OTE_EIO = -2,     /* file missing, unreadable or unwritable */
    OTE_EPARSE = -3,  /* malformed JSON/YAML/FlatBuffer/checkpoint/image */
    OTE_ENOMEM = -4,  /* allocation failed */
    OTE_EDNNL = -5,   /* oneDNN refused or failed (including a reference-kernel fallback) */
    OTE_ENAN = -6,    /* loss or gradient became NaN/Inf */
    OTE_ESTATE = -7,  /* inconsistent state on disk (e.g. a corrupt status file) */
    OTE_ECANCEL = -8, /* stopped on purpose (budget exhausted, early stop) */
};

/* Records a printf-style message for the current thread and returns `code` (negative). */
int ote_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message (used to add context on the way up). */
int ote_err_context(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded on this thread ("" if none). */
const char *ote_errmsg(void);
/* A short name for a code ("io error", ...). */
const char *ote_strstatus(int code);

#define ASSERT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* Propagates a negative status. */
#define CHECK(expr)                    \
    do {                               \
        int check_s_ = (expr);         \
        if (check_s_ < 0) return check_s_; \
    } while (0)

#endif
