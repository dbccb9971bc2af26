/* dist.c - see dist.h. Compiled with OTE_HAVE_MPI (CMake option OTE_MPI) against Open MPI. */
#include "dist/dist.h"

#include "engine/ote.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef OTE_HAVE_MPI
#include <mpi.h>
#endif

static int g_started; /* MPI_Init was called by dist_init */
static int g_rank, g_size = 1;

int dist_available(void) {
#ifdef OTE_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

static int dist_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int dist_init(int *argc, char ***argv) {
    if (g_started) return 0;
#ifdef OTE_HAVE_MPI
    if (!dist_launched()) return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ote_err(OTE_EIO, "MPI_Init_thread failed");
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        return ote_err(OTE_EIO, "MPI: thread level FUNNELED not provided (got %d)", provided);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_started = 1;
    return 0;
#else
    (void)argc, (void)argv;
    if (dist_launched() && getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1)
        return ote_err(OTE_EINVAL, "started by mpirun with %s ranks, but this ote was built without MPI "
                                   "(cmake -DOTE_MPI=ON, package libopenmpi-dev)", getenv("OMPI_COMM_WORLD_SIZE"));
    return 0;
#endif
}

void dist_finalize(void) {
#ifdef OTE_HAVE_MPI
    if (g_started) MPI_Finalize();
#endif
    g_started = 0;
    g_rank = 0, g_size = 1;
}

void dist_abort(int code) {
#ifdef OTE_HAVE_MPI
    if (g_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

int dist_local_size(void) {
    const char *s = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int n = s ? atoi(s) : 0;
    return n > 0 ? n : (g_size > 0 ? g_size : 1);
}

int dist_default_threads(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int per = (int)(cpus > 0 ? cpus : 1) / dist_local_size();
    return per > 0 ? per : 1;
}

#ifdef OTE_HAVE_MPI
/* MPI counts are int: big buffers go in chunks. */
#define DIST_CHUNK ((size_t)1 << 28)

static int dist_allreduce(void *buf, size_t n, size_t elem, MPI_Datatype t, MPI_Op op, const char *what) {
    char *p = buf;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < DIST_CHUNK ? n - off : DIST_CHUNK;
        if (MPI_Allreduce(MPI_IN_PLACE, p + off * elem, (int)k, t, op, MPI_COMM_WORLD) != MPI_SUCCESS)
            return ote_err(OTE_EIO, "MPI_Allreduce (%s, %zu values) failed", what, n);
        off += k;
    }
    return 0;
}
#endif

int dist_allreduce_sum_f32(float *buf, size_t n) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) return dist_allreduce(buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM, "sum f32");
#endif
    (void)buf, (void)n;
    return 0;
}

int dist_allreduce_sum_f64(double *buf, size_t n) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) return dist_allreduce(buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM, "sum f64");
#endif
    (void)buf, (void)n;
    return 0;
}

int dist_allreduce_max_f64(double *buf, size_t n) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) return dist_allreduce(buf, n, sizeof *buf, MPI_DOUBLE, MPI_MAX, "max f64");
#endif
    (void)buf, (void)n;
    return 0;
}

int dist_bcast(void *buf, size_t bytes, int root) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) {
        char *p = buf;
        for (size_t off = 0; off < bytes;) {
            size_t k = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
            if (MPI_Bcast(p + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
                return ote_err(OTE_EIO, "MPI_Bcast (%zu bytes from rank %d) failed", bytes, root);
            off += k;
        }
    }
#endif
    (void)buf, (void)bytes, (void)root;
    return 0;
}

int dist_barrier(void) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1 && MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) return ote_err(OTE_EIO, "MPI_Barrier failed");
#endif
    return 0;
}

int dist_send(const void *data, size_t len, int dest, int tag) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) {
        if (len > (size_t)INT32_MAX) return ote_err(OTE_EINVAL, "MPI message of %zu bytes is too long", len);
        if (MPI_Send(data, (int)len, MPI_BYTE, dest, tag, MPI_COMM_WORLD) != MPI_SUCCESS)
            return ote_err(OTE_EIO, "MPI_Send (%zu bytes to rank %d, tag %d) failed", len, dest, tag);
        return 0;
    }
#endif
    (void)data, (void)len, (void)dest, (void)tag;
    return ote_err(OTE_EINVAL, "dist_send: a single-process job has no rank %d", dest);
}

#ifdef OTE_HAVE_MPI
static int dist_recv(void **data, size_t *len, int *src, int from, int tag) {
    MPI_Status st;
    if (MPI_Probe(from, tag, MPI_COMM_WORLD, &st) != MPI_SUCCESS) return ote_err(OTE_EIO, "MPI_Probe (tag %d) failed", tag);
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    char *b = malloc((size_t)n + 1); /* +1: a NUL for text, not counted in *len */
    if (!b) return ote_err(OTE_ENOMEM, "MPI: out of memory for a %d-byte message", n);
    if (MPI_Recv(b, n, MPI_BYTE, st.MPI_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        free(b);
        return ote_err(OTE_EIO, "MPI_Recv (%d bytes from rank %d, tag %d) failed", n, st.MPI_SOURCE, tag);
    }
    b[n] = 0;
    *data = b;
    *len = (size_t)n;
    if (src) *src = st.MPI_SOURCE;
    return 0;
}
#endif

int dist_recv_any(void **data, size_t *len, int *src, int tag) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) return dist_recv(data, len, src, MPI_ANY_SOURCE, tag);
#endif
    (void)data, (void)len, (void)src, (void)tag;
    return ote_err(OTE_EINVAL, "dist_recv_any: a single-process job has no other rank");
}

int dist_recv_from(void **data, size_t *len, int from, int tag) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) return dist_recv(data, len, NULL, from, tag);
#endif
    (void)data, (void)len, (void)from, (void)tag;
    return ote_err(OTE_EINVAL, "dist_recv_from: a single-process job has no rank %d", from);
}

int dist_probe_any(int tag) {
#ifdef OTE_HAVE_MPI
    if (g_size > 1) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) return 0;
        return flag;
    }
#endif
    (void)tag;
    return 0;
}
