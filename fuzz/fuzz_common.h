/* fuzz_common.h - shared by the libFuzzer harnesses (fuzz/fuzz_*.c).
 *
 * The readers under test take a path, as the CLI gives them, so each input is written to one file
 * in a private temporary folder (under /dev/shm when it exists) and read back through the real
 * entry point: the same bytes a user's file would give, the same code, read_file included.
 * The folder is removed at exit. Messages from expected errors are not printed (the harness only
 * looks for crashes, leaks, UB and hangs - libFuzzer and the sanitizers report those).
 */
#ifndef OTE_FUZZ_COMMON_H
#define OTE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libFuzzer's entry point: each harness defines it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[256], fuzz_path[300];

static void fuzz_cleanup(void) {
    if (fuzz_path[0]) unlink(fuzz_path);
    if (fuzz_dir[0]) rmdir(fuzz_dir);
}

/* Writes data to the harness's file (named `name`, e.g. "in.json"); returns its path. */
static const char *fuzz_write(const uint8_t *data, size_t size, const char *name) {
    if (!fuzz_dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/ote_fuzz_XXXXXX", base);
        if (!mkdtemp(fuzz_dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        snprintf(fuzz_path, sizeof fuzz_path, "%s/%s", fuzz_dir, name);
        atexit(fuzz_cleanup);
    }
    FILE *f = fopen(fuzz_path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: writing the input file");
        abort();
    }
    return fuzz_path;
}

#endif
