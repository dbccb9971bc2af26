/* ote.c - the thread-local error message behind ote_err(). */
#include "engine/ote.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char err_buf[1024];

int ote_err(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return code;
}

int ote_err_context(int code, const char *fmt, ...) {
    char old[sizeof err_buf];
    memcpy(old, err_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    size_t len = (size_t)n < sizeof err_buf ? (size_t)n : sizeof err_buf - 1;
    size_t room = sizeof err_buf - 1 - len;
    if (room > 2) {
        memcpy(err_buf + len, ": ", 2);
        len += 2;
        room -= 2;
        size_t ol = strnlen(old, sizeof old - 1);
        if (ol > room) ol = room;
        memcpy(err_buf + len, old, ol);
        len += ol;
    }
    err_buf[len] = 0;
    return code;
}

const char *ote_errmsg(void) { return err_buf; }

const char *ote_strstatus(int code) {
    switch (code) {
    case OTE_OK: return "ok";
    case OTE_EINVAL: return "invalid argument";
    case OTE_EIO: return "i/o error";
    case OTE_EPARSE: return "parse error";
    case OTE_ENOMEM: return "out of memory";
    case OTE_EDNNL: return "oneDNN error";
    case OTE_ENAN: return "non-finite value";
    case OTE_ESTATE: return "inconsistent state";
    case OTE_ECANCEL: return "cancelled";
    default: return "unknown error";
    }
}
