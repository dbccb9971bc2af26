/* atomic.c - temporary file, fsync, rename, directory fsync (see atomic.h).
 *
 * Owns, per atomic_file: the two names and the stream. Invariant: after any call returns, either
 * a is live (names set, temporary present) or a is zeroed and its temporary removed.
 */
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/ote.h"

/* Releases a and removes its temporary (if any). */
static void atomic_clear(atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}

/* The one failure tail of creating the temporary: releases a (removing the temporary when it is
 * ours) and reports errno e as "cannot <verb> a temporary file beside it". */
static int atomic_create_fail(atomic_file *a, const char *path, const char *verb, int e) {
    atomic_clear(a);
    return ote_err(OTE_EIO, "%s: cannot %s a temporary file beside it: %s", path, verb, strerror(e));
}

/* Fills the names and creates the temporary; then opens a->f on it (stream) or closes it empty
 * for a writer by name (!stream). Returns OTE_OK, or a negative status with a released. */
static int atomic_create(atomic_file *a, const char *path, mode_t mode, int stream) {
    memset(a, 0, sizeof *a);
    size_t pl = strlen(path);
    a->path = malloc(pl + 1);
    a->tmp = malloc(pl + sizeof ATOMIC_TMP_INFIX + 24);
    if (!a->path || !a->tmp) {
        free(a->path), free(a->tmp);
        memset(a, 0, sizeof *a);
        return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    }
    memcpy(a->path, path, pl + 1);
    snprintf(a->tmp, pl + sizeof ATOMIC_TMP_INFIX + 24, "%s" ATOMIC_TMP_INFIX "%ld", path, (long)getpid());
    /* A leftover of this pid (an earlier process with the same pid, killed) is replaced, and the
     * new file gets `mode` (O_TRUNC alone would keep the old file's mode). */
    unlink(a->tmp);
    int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        free(a->tmp), a->tmp = NULL; /* not ours: nothing to remove */
        return atomic_create_fail(a, path, "create", e);
    }
    if (!stream) return close(fd) != 0 ? atomic_create_fail(a, path, "create", errno) : OTE_OK;
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        int e = errno;
        close(fd);
        return atomic_create_fail(a, path, "open", e);
    }
    return OTE_OK;
}

int atomic_open(atomic_file *a, const char *path, mode_t mode) { return atomic_create(a, path, mode, 1); }

int atomic_reserve(atomic_file *a, const char *path, mode_t mode) { return atomic_create(a, path, mode, 0); }

int atomic_stage(atomic_file *a) {
    int e = 0;
    if (a->f) {
        if (ferror(a->f)) e = EIO; /* errno of the failed write is gone by now */
        if (!e && fflush(a->f) != 0) e = errno;
        if (!e && fsync(fileno(a->f)) != 0) e = errno;
        if (fclose(a->f) != 0 && !e) e = errno;
        a->f = NULL;
    } else {
        int fd = open(a->tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) e = errno;
        if (fd >= 0) close(fd);
    }
    if (e) {
        int s = ote_err(OTE_EIO, "%s: write failed: %s", a->path, strerror(e));
        atomic_clear(a);
        return s;
    }
    a->staged = 1;
    return OTE_OK;
}

/* fsync of the directory holding path, so that the rename itself survives a crash. Best effort:
 * some filesystems refuse fsync on a directory, and the file's own data are already on disk. */
static void atomic_sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(dl + 1);
        if (!dir) return;
        memcpy(dir, path, dl);
        dir[dl] = 0;
    }
    int fd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int atomic_publish(atomic_file *a) {
    if (!a->staged) {
        int s = ote_err(OTE_EIO, "%s: internal error: publish before the file was complete", a->path ? a->path : "?");
        atomic_clear(a);
        return s;
    }
    if (rename(a->tmp, a->path) != 0) {
        int e = errno;
        int s = ote_err(OTE_EIO, "%s: cannot rename %s into place: %s", a->path, a->tmp, strerror(e));
        atomic_clear(a);
        return s;
    }
    free(a->tmp), a->tmp = NULL; /* renamed: nothing left to remove */
    atomic_sync_dir(a->path);
    atomic_clear(a);
    return OTE_OK;
}

int atomic_commit(atomic_file *a) {
    CHECK(atomic_stage(a));
    return atomic_publish(a);
}

void atomic_abort(atomic_file *a) { atomic_clear(a); }

int atomic_write(const char *path, const void *data, size_t len, mode_t mode) {
    atomic_file a;
    CHECK(atomic_open(&a, path, mode));
    if (len && fwrite(data, 1, len, a.f) != len) {
        int e = errno ? errno : EIO;
        int s = ote_err(OTE_EIO, "%s: write failed: %s", path, strerror(e));
        atomic_abort(&a);
        return s;
    }
    return atomic_commit(&a);
}
