/* bytes.h - what the zip, pickle and checkpoint code share: a growable byte buffer whose
 * allocation failure is sticky (checked once, at the end of a build), and little-endian field
 * readers that work at any alignment.
 *
 * Ownership: a bytes_buf owns p (free with bytes_free); a zeroed struct is an empty buffer.
 * Invariant: n <= cap; once oom is set, every later put is a no-op.
 */
#ifndef OTE_IO_BYTES_H
#define OTE_IO_BYTES_H

#include <stddef.h>
#include <stdint.h>

typedef struct bytes_buf {
    uint8_t *p;
    size_t n, cap;
    int oom; /* 1 after an allocation failed */
} bytes_buf;

void bytes_put(bytes_buf *b, const void *d, size_t n);
void bytes_u8(bytes_buf *b, unsigned v);
void bytes_u16le(bytes_buf *b, unsigned v);
void bytes_u32le(bytes_buf *b, uint32_t v);
void bytes_str(bytes_buf *b, const char *s);
void bytes_free(bytes_buf *b);

static inline uint16_t bytes_rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t bytes_rd32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t bytes_rd64le(const uint8_t *p) {
    return (uint64_t)bytes_rd32le(p) | ((uint64_t)bytes_rd32le(p + 4) << 32);
}

#endif
