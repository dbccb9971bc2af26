/* zip.h - zip archives of stored (uncompressed) entries: a streaming writer and a bounds-checked
 * reader over a buffer in memory. What PyTorch's checkpoints need (io/pth.h), nothing more: no
 * compression, no encryption; the reader understands ZIP64 sizes and offsets, the writer never
 * writes ZIP64 (an archive that would need it is an error).
 *
 * Writer: records go to a FILE* in call order, each as a local header (+ an optional padding
 * extra field "FB"/'Z'... that aligns the data, as torch does) then the data; zip_finish writes
 * the central directory. Times are fixed (1980-01-01) so the same content gives the same bytes.
 * Reader: zip_open indexes the central directory once (entries sorted by name); zip_find is a
 * binary search and checks an entry's CRC-32 the first time it is returned. Every offset and
 * length is checked against the buffer: a hostile file gives OTE_EPARSE, never a read out of
 * bounds. Messages start with the caller's label `what` ("pth: weights.pth: truncated ...").
 *
 * Ownership: the writer owns its entry list (zip_writer_free), not the stream; the reader owns its
 * index (zip_close), not the buffer, which must outlive it (entries point into it).
 */
#ifndef OTE_IO_ZIP_H
#define OTE_IO_ZIP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct zip_centry {
    char *name;                    /* owned */
    uint32_t crc, size, offset;
} zip_centry;

typedef struct zip_writer {
    FILE *f;                       /* not owned */
    uint64_t pos;                  /* bytes written so far */
    int err;                       /* first errno seen (sticky; EFBIG: would need ZIP64) */
    size_t align;                  /* record data start at a multiple of this (0 or 1: packed) */
    uint32_t tab[256];             /* CRC-32 table */
    zip_centry *cent;
    size_t n, cap;
} zip_writer;

void zip_writer_init(zip_writer *z, FILE *f, size_t align);
/* Appends one stored record (name and data copied out at once). */
void zip_add(zip_writer *z, const char *name, const void *data, size_t size);
/* Writes the central directory; 0 or the errno of the first failure (of any call so far). */
int zip_finish(zip_writer *z);
void zip_writer_free(zip_writer *z);

typedef struct zip_entry {
    const uint8_t *name;           /* into the buffer, not NUL-terminated */
    size_t nlen;
    const uint8_t *data;           /* into the buffer */
    uint64_t size;
    uint32_t crc;
    int crc_ok;                    /* 1 once verified */
} zip_entry;

typedef struct zip_reader {
    const char *what;              /* message prefix (not owned) */
    const uint8_t *buf;            /* the archive (not owned) */
    size_t len;
    zip_entry *e;                  /* (n) sorted by name */
    size_t n;
    uint32_t tab[256];
} zip_reader;

/* Indexes the archive in buf. 0 or OTE_EPARSE / OTE_ENOMEM (z is then empty). */
int zip_open(zip_reader *z, const void *buf, size_t len, const char *what);
/* The entry named name[0..nlen): 1 (*out set), 0 if absent, OTE_EPARSE on a CRC mismatch. */
int zip_find(zip_reader *z, const char *name, size_t nlen, zip_entry **out);
void zip_close(zip_reader *z);

#endif
