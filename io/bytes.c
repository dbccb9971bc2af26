/* bytes.c - the growable byte buffer (see bytes.h). */
#include "io/bytes.h"

#include <stdlib.h>
#include <string.h>

void bytes_put(bytes_buf *b, const void *d, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc - b->n < n) {
            if (nc > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            nc *= 2;
        }
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

void bytes_u8(bytes_buf *b, unsigned v) {
    uint8_t x = (uint8_t)v;
    bytes_put(b, &x, 1);
}

void bytes_u16le(bytes_buf *b, unsigned v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    bytes_put(b, x, 2);
}

void bytes_u32le(bytes_buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bytes_put(b, x, 4);
}

void bytes_str(bytes_buf *b, const char *s) { bytes_put(b, s, strlen(s)); }

void bytes_free(bytes_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
