/* cmd_version.c - `ote version` / `ote --version`: the program and oneDNN versions, the CPU ISA
 * oneDNN dispatches and the OpenMP thread count. Exit codes: 0 ok, 1 the engine cannot start, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/ote.h"
#include "dist/dist.h"
#include "tools/commands.h"

int cmd_version(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stdout, "usage: ote --version\n");
        return strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? 0 : 2;
    }
    eng_ctx e;
    if (eng_init(&e, 0) < 0) {
        fprintf(stderr, "ote: %s\n", ote_errmsg());
        return 1;
    }
    char v[128];
    eng_version_string(v, sizeof v);
    printf("ote-c %s\n", OTE_VERSION);
    printf("oneDNN %s, CPU runtime OpenMP\n", v);
    printf("ISA: %s\n", eng_isa_name());
    printf("threads: %d\n", e.nthreads);
    const char *wp = getenv("OMP_WAIT_POLICY"), *sc = getenv("GOMP_SPINCOUNT"), *mk = getenv("OTE_OMP_POLICY");
    if (mk && !strcmp(mk, "set"))
        printf("OpenMP wait: OMP_WAIT_POLICY=%s (ote-c's default; set OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose)\n", wp);
    else
        printf("OpenMP wait: %s%s%s%s\n", wp ? "OMP_WAIT_POLICY=" : "", wp ? wp : "", sc ? " GOMP_SPINCOUNT=" : "",
               sc ? sc : (wp ? "" : "libgomp's default"));
    if (dist_available())
        printf("MPI: Open MPI built in; rank %d of %d%s\n", dist_rank(), dist_size(),
               dist_size() > 1 ? "" : " (start with mpirun -np N for more)");
    else
        printf("MPI: not built in (cmake -DOTE_MPI=ON with libopenmpi-dev)\n");
    eng_free(&e);
    return 0;
}
