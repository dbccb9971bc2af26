/* zip.c - stored-entry zip writer and reader (see zip.h).
 *
 * Owns: the writer's central-directory list and the reader's sorted index. Invariants: the reader
 * never dereferences a byte before checking it lies inside the buffer; the writer's offsets and
 * sizes fit 32 bits (checked per record: EFBIG otherwise).
 */
#include "io/zip.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "io/bytes.h"

#define ZIP_DOS_DATE 0x0021 /* 1980-01-01: fixed so the same content gives the same bytes */

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as zip requires. The table is built per
 * archive into caller storage (256 entries, negligible) so there is no mutable global. */
static void zip_crc_table(uint32_t t[256]) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
}

static uint32_t zip_crc(const uint32_t t[256], uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = t[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* ---------------------------------------------------------------- writer */

void zip_writer_init(zip_writer *z, FILE *f, size_t align) {
    memset(z, 0, sizeof *z);
    z->f = f;
    z->align = align;
    zip_crc_table(z->tab);
}

static void zip_bytes(zip_writer *z, const void *p, size_t n) {
    if (z->err || n == 0) return;
    if (fwrite(p, 1, n, z->f) != n) z->err = errno ? errno : EIO;
    z->pos += n;
}

static void zip_emit(zip_writer *z, bytes_buf *h) {
    if (h->oom) z->err = z->err ? z->err : ENOMEM;
    else zip_bytes(z, h->p, h->n);
    bytes_free(h);
}

/* Remembers a record for the central directory; NULL when out of memory. */
static zip_centry *zip_push(zip_writer *z, const char *name, size_t nl) {
    if (z->n == z->cap) {
        size_t nc = z->cap ? 2 * z->cap : 16;
        zip_centry *c = realloc(z->cent, nc * sizeof *c);
        if (!c) return NULL;
        z->cent = c;
        z->cap = nc;
    }
    zip_centry *e = &z->cent[z->n];
    e->name = malloc(nl + 1);
    if (!e->name) return NULL;
    memcpy(e->name, name, nl + 1);
    z->n++;
    return e;
}

/* One stored record: local header (+ alignment pad), then the data. */
void zip_add(zip_writer *z, const char *name, const void *data, size_t size) {
    if (z->err) return;
    size_t nl = strlen(name);
    uint64_t hdr_end = z->pos + 30 + nl;
    size_t extra = 0;
    if (z->align > 1 && hdr_end % z->align)
        extra = 4 + (size_t)((z->align - (hdr_end + 4) % z->align) % z->align);
    if (nl > 0xFFFF || z->n >= 0xFFFF || hdr_end + extra + size >= 0xFFFFFFFFull) {
        z->err = EFBIG; /* would need ZIP64 */
        return;
    }
    zip_centry *e = zip_push(z, name, nl);
    if (!e) {
        z->err = ENOMEM;
        return;
    }
    e->crc = zip_crc(z->tab, 0, data, size);
    e->size = (uint32_t)size;
    e->offset = (uint32_t)z->pos;
    bytes_buf h = {0};
    bytes_u32le(&h, 0x04034b50u);
    bytes_u16le(&h, 20); /* version needed: 2.0 */
    bytes_u16le(&h, 0);  /* flags */
    bytes_u16le(&h, 0);  /* method: stored */
    bytes_u16le(&h, 0);  /* time */
    bytes_u16le(&h, ZIP_DOS_DATE);
    bytes_u32le(&h, e->crc);
    bytes_u32le(&h, (uint32_t)size);
    bytes_u32le(&h, (uint32_t)size);
    bytes_u16le(&h, (unsigned)nl);
    bytes_u16le(&h, (unsigned)extra);
    bytes_str(&h, name);
    if (extra) {
        bytes_u16le(&h, 0x4246); /* "FB", the id torch uses for its padding field */
        bytes_u16le(&h, (unsigned)(extra - 4));
        for (size_t i = 4; i < extra; i++) bytes_u8(&h, 'Z');
    }
    zip_emit(z, &h);
    zip_bytes(z, data, size);
}

int zip_finish(zip_writer *z) {
    if (z->err) return z->err;
    uint64_t cd_off = z->pos;
    bytes_buf h = {0};
    for (size_t i = 0; i < z->n; i++) {
        const zip_centry *e = &z->cent[i];
        bytes_u32le(&h, 0x02014b50u);
        bytes_u16le(&h, 20); /* made by */
        bytes_u16le(&h, 20); /* needed */
        bytes_u16le(&h, 0);
        bytes_u16le(&h, 0);
        bytes_u16le(&h, 0);
        bytes_u16le(&h, ZIP_DOS_DATE);
        bytes_u32le(&h, e->crc);
        bytes_u32le(&h, e->size);
        bytes_u32le(&h, e->size);
        bytes_u16le(&h, (unsigned)strlen(e->name));
        bytes_u16le(&h, 0); /* extra */
        bytes_u16le(&h, 0); /* comment */
        bytes_u16le(&h, 0); /* disk */
        bytes_u16le(&h, 0); /* internal attributes */
        bytes_u32le(&h, 0); /* external attributes */
        bytes_u32le(&h, e->offset);
        bytes_str(&h, e->name);
    }
    uint64_t cd_size = h.n;
    if (cd_off + cd_size + 22 >= 0xFFFFFFFFull) {
        bytes_free(&h);
        return z->err = EFBIG;
    }
    bytes_u32le(&h, 0x06054b50u);
    bytes_u16le(&h, 0);
    bytes_u16le(&h, 0);
    bytes_u16le(&h, (unsigned)z->n);
    bytes_u16le(&h, (unsigned)z->n);
    bytes_u32le(&h, (uint32_t)cd_size);
    bytes_u32le(&h, (uint32_t)cd_off);
    bytes_u16le(&h, 0);
    zip_emit(z, &h);
    return z->err;
}

void zip_writer_free(zip_writer *z) {
    for (size_t i = 0; i < z->n; i++) free(z->cent[i].name);
    free(z->cent);
    z->cent = NULL;
    z->n = z->cap = 0;
}

/* ---------------------------------------------------------------- reader */

static int zip_entry_cmp(const void *a, const void *b) {
    const zip_entry *x = a, *y = b;
    size_t m = x->nlen < y->nlen ? x->nlen : y->nlen;
    int r = memcmp(x->name, y->name, m);
    if (r) return r;
    return x->nlen < y->nlen ? -1 : x->nlen > y->nlen;
}

/* The central directory's place and size (classic end record, or the ZIP64 one before it). */
static int zip_find_directory(const zip_reader *z, uint64_t *n, uint64_t *cd_off, uint64_t *cd_size) {
    const uint8_t *b = z->buf;
    size_t len = z->len;
    if (len < 22) return ote_err(OTE_EPARSE, "%s: truncated (%zu bytes, no end-of-central-directory record)", z->what, len);
    size_t eocd = SIZE_MAX;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t p = len - 22 + 1; p-- > lo;) {
        if (bytes_rd32le(b + p) == 0x06054b50u && (size_t)bytes_rd16le(b + p + 20) <= len - p - 22) {
            eocd = p;
            break;
        }
    }
    if (eocd == SIZE_MAX) return ote_err(OTE_EPARSE, "%s: truncated or not a zip (no end-of-central-directory record)", z->what);
    *n = bytes_rd16le(b + eocd + 10), *cd_size = bytes_rd32le(b + eocd + 12), *cd_off = bytes_rd32le(b + eocd + 16);
    /* torch (miniz) always adds the ZIP64 end record + locator just before the classic one. */
    if (eocd >= 20 && bytes_rd32le(b + eocd - 20) == 0x07064b50u) {
        uint64_t z64 = bytes_rd64le(b + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || bytes_rd32le(b + z64) != 0x06064b50u)
            return ote_err(OTE_EPARSE, "%s: bad ZIP64 end record offset %" PRIu64, z->what, z64);
        *n = bytes_rd64le(b + z64 + 32);
        *cd_size = bytes_rd64le(b + z64 + 40);
        *cd_off = bytes_rd64le(b + z64 + 48);
    }
    if (*cd_off > len || *cd_size > len - *cd_off)
        return ote_err(OTE_EPARSE, "%s: truncated: central directory (offset %" PRIu64 ", %" PRIu64 " bytes) past end of file (%zu bytes)",
                       z->what, *cd_off, *cd_size, len);
    if (*n > *cd_size / 46) return ote_err(OTE_EPARSE, "%s: central directory claims %" PRIu64 " entries in %" PRIu64 " bytes", z->what, *n, *cd_size);
    return OTE_OK;
}

/* ZIP64 extended information: 8-byte values for the fields that are 0xFFFFFFFF. */
static void zip_read_zip64(const uint8_t *x, const uint8_t *xe, uint64_t *usize, uint64_t *csize, uint64_t *lho) {
    while (xe - x >= 4) {
        unsigned id = bytes_rd16le(x), sz = bytes_rd16le(x + 2);
        if ((size_t)(xe - x) - 4 < sz) break;
        if (id == 1) {
            const uint8_t *q = x + 4, *qe = q + sz;
            if (*usize == 0xFFFFFFFFu && qe - q >= 8) *usize = bytes_rd64le(q), q += 8;
            if (*csize == 0xFFFFFFFFu && qe - q >= 8) *csize = bytes_rd64le(q), q += 8;
            if (*lho == 0xFFFFFFFFu && qe - q >= 8) *lho = bytes_rd64le(q), q += 8;
        }
        x += 4 + sz;
    }
}

/* Central directory entry i at *pp (end of the directory at end) into e; advances *pp. */
static int zip_read_centry(const zip_reader *z, const uint8_t **pp, const uint8_t *end, uint64_t i, zip_entry *e) {
    const uint8_t *b = z->buf, *p = *pp;
    size_t len = z->len;
    if (end - p < 46 || bytes_rd32le(p) != 0x02014b50u)
        return ote_err(OTE_EPARSE, "%s: corrupt central directory entry %" PRIu64, z->what, i);
    unsigned flags = bytes_rd16le(p + 8), method = bytes_rd16le(p + 10), nl = bytes_rd16le(p + 28), xl = bytes_rd16le(p + 30),
             cl = bytes_rd16le(p + 32);
    uint64_t csize = bytes_rd32le(p + 20), usize = bytes_rd32le(p + 24), lho = bytes_rd32le(p + 42);
    if ((size_t)(end - p) - 46 < (size_t)nl + xl + cl)
        return ote_err(OTE_EPARSE, "%s: corrupt central directory entry %" PRIu64 " (name/extra past its end)", z->what, i);
    e->name = p + 46;
    e->nlen = nl;
    const char *nm = (const char *)e->name;
    zip_read_zip64(p + 46 + nl, p + 46 + nl + xl, &usize, &csize, &lho);
    if (flags & 1) return ote_err(OTE_EPARSE, "%s: entry '%.*s' is encrypted", z->what, (int)nl, nm);
    if (method != 0)
        return ote_err(OTE_EPARSE, "%s: entry '%.*s' is compressed (method %u); only stored entries are supported",
                       z->what, (int)nl, nm, method);
    if (csize != usize)
        return ote_err(OTE_EPARSE, "%s: entry '%.*s': stored size %" PRIu64 " != size %" PRIu64, z->what, (int)nl, nm, csize, usize);
    if (lho > len || len - lho < 30 || bytes_rd32le(b + lho) != 0x04034b50u)
        return ote_err(OTE_EPARSE, "%s: entry '%.*s': bad local header offset %" PRIu64, z->what, (int)nl, nm, lho);
    uint64_t data = lho + 30 + (uint64_t)bytes_rd16le(b + lho + 26) + bytes_rd16le(b + lho + 28);
    if (data > len || usize > len - data)
        return ote_err(OTE_EPARSE, "%s: truncated: entry '%.*s' (%" PRIu64 " bytes at offset %" PRIu64 ") past end of file (%zu bytes)",
                       z->what, (int)nl, nm, usize, data, len);
    e->data = b + data;
    e->size = usize;
    e->crc = bytes_rd32le(p + 16);
    *pp = p + 46 + nl + xl + cl;
    return OTE_OK;
}

static int zip_index(zip_reader *z) {
    if (z->len == 0) return ote_err(OTE_EPARSE, "%s: empty file", z->what);
    if (z->len < 4 || bytes_rd32le(z->buf) != 0x04034b50u) return ote_err(OTE_EPARSE, "%s: not a zip archive", z->what);
    uint64_t n = 0, cd_off = 0, cd_size = 0;
    CHECK(zip_find_directory(z, &n, &cd_off, &cd_size));
    z->e = calloc(n ? n : 1, sizeof *z->e);
    if (!z->e) return ote_err(OTE_ENOMEM, "%s: out of memory", z->what);
    const uint8_t *p = z->buf + cd_off, *end = z->buf + cd_off + cd_size;
    for (uint64_t i = 0; i < n; i++) CHECK(zip_read_centry(z, &p, end, i, &z->e[i]));
    z->n = (size_t)n;
    qsort(z->e, z->n, sizeof *z->e, zip_entry_cmp);
    zip_crc_table(z->tab);
    return OTE_OK;
}

int zip_open(zip_reader *z, const void *buf, size_t len, const char *what) {
    memset(z, 0, sizeof *z);
    z->what = what ? what : "zip";
    z->buf = buf;
    z->len = len;
    int rc = zip_index(z);
    if (rc < 0) zip_close(z);
    return rc;
}

int zip_find(zip_reader *z, const char *name, size_t nlen, zip_entry **out) {
    zip_entry key = {.name = (const uint8_t *)name, .nlen = nlen};
    zip_entry *e = z->n ? bsearch(&key, z->e, z->n, sizeof *z->e, zip_entry_cmp) : NULL;
    *out = e;
    if (!e) return 0;
    if (!e->crc_ok) {
        if (zip_crc(z->tab, 0, e->data, (size_t)e->size) != e->crc)
            return ote_err(OTE_EPARSE, "%s: record '%.*s' is corrupt (CRC-32 mismatch)", z->what, (int)e->nlen, (const char *)e->name);
        e->crc_ok = 1;
    }
    return 1;
}

void zip_close(zip_reader *z) {
    free(z->e);
    z->e = NULL;
    z->n = 0;
}
