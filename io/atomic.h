/* atomic.h - the one way the program writes a file: to a temporary name beside it, fsync'ed, then
 * renamed over the final name and the directory fsync'ed, so a crash (kill -9, power loss) leaves
 * either the old file or the complete new one, never a half-written file (DESIGN.md section 3).
 *
 * The temporary is "<path>.tmp-<pid>" (ATOMIC_TMP_INFIX), in the same directory so that rename()
 * is atomic; train/weights.c removes the ones a killed run left behind by that pattern. It is
 * created fresh with open(..., mode), so the umask applies as for any new file (0666 gives the
 * usual 0666 & ~umask). One writer per path per process at a time (the name holds only the pid).
 *
 * Use: atomic_write() for a buffer in memory. For a file produced piece by piece: atomic_open(),
 * write to a->f, then atomic_commit() (or atomic_abort()). atomic_stage() + atomic_publish() are
 * the two halves of atomic_commit(), for callers that publish several files only once all of them
 * are complete (weights.pth + label_schema.json). atomic_reserve() is atomic_open() for a library
 * that writes the temporary by its name (PLplot): it creates a->tmp empty and closes it.
 *
 * Ownership: an atomic_file owns its two names and its stream until atomic_publish, atomic_abort
 * or a failing call, each of which releases everything and removes the temporary if it is still
 * there (a zeroed struct is safe to abort). Errors are OTE_EIO / OTE_ENOMEM with a message that
 * names the final path. (Prefix atomic_ as the file stem; none of these names is one of
 * <stdatomic.h>'s.)
 */
#ifndef OTE_IO_ATOMIC_H
#define OTE_IO_ATOMIC_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define ATOMIC_TMP_INFIX ".tmp-"

typedef struct atomic_file {
    char *path;  /* the final name (owned copy) */
    char *tmp;   /* path + ATOMIC_TMP_INFIX + pid (owned) */
    FILE *f;     /* open for writing from atomic_open until atomic_stage; NULL after atomic_reserve */
    int staged;  /* 1: the temporary is complete and on disk, waiting for atomic_publish */
} atomic_file;

/* Writes len bytes to path atomically. */
int atomic_write(const char *path, const void *data, size_t len, mode_t mode);

/* Creates the temporary (truncating any earlier one of this pid) and opens a->f on it. */
int atomic_open(atomic_file *a, const char *path, mode_t mode);
/* Creates the temporary empty and closes it: something else writes a->tmp by name. */
int atomic_reserve(atomic_file *a, const char *path, mode_t mode);
/* Completes the temporary: flush, fsync, close (a->f), or fsync by name (after atomic_reserve).
 * A stream error seen on a->f (ferror) fails here. */
int atomic_stage(atomic_file *a);
/* Renames the staged temporary over the final name and fsyncs the directory. */
int atomic_publish(atomic_file *a);
/* atomic_stage, then atomic_publish. */
int atomic_commit(atomic_file *a);
/* Closes and removes the temporary, releases a. */
void atomic_abort(atomic_file *a);

#endif
