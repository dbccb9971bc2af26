/* dist.h - the processes of one job: Open MPI ranks when ote-c is built with MPI (OTE_MPI) and
 * started by mpirun, otherwise one process (rank 0 of 1) and every call below a no-op or an error.
 *
 * Dependency: dist -> (MPI, libc). Only the main thread calls these (MPI_THREAD_FUNNELED): the
 * OpenMP kernels and the loader's threads never do.
 *
 * Without mpirun the program does not call MPI_Init at all (Open MPI's singleton start forks an
 * orted helper and needs its runtime): dist_init looks for the launcher's environment
 * (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK) and stays single-process when it is absent. */
#ifndef OTE_DIST_H
#define OTE_DIST_H

#include <stddef.h>

/* 1 when this build has MPI support compiled in. */
int dist_available(void);

/* Starts MPI when launched by mpirun (see above); returns 0 or an OTE_* error. Safe to call twice. */
int dist_init(int *argc, char ***argv);
/* MPI_Finalize when dist_init started MPI; no-op otherwise. */
void dist_finalize(void);
/* Ends every rank of the job (MPI_Abort) after an error on one; exit(code) when single-process. */
void dist_abort(int code);

int dist_rank(void);       /* 0 .. size-1 */
int dist_size(void);       /* ranks in the job (1 without mpirun) */
int dist_local_size(void); /* ranks on this node (OMPI_COMM_WORLD_LOCAL_SIZE), for the thread default */
/* Default OpenMP threads per rank: the node's online CPUs / ranks on the node, at least 1. */
int dist_default_threads(void);

/* Collectives over all ranks (no-ops at size 1). Return 0 or OTE_EIO naming the call. */
int dist_allreduce_sum_f32(float *buf, size_t n);
int dist_allreduce_sum_f64(double *buf, size_t n);
int dist_allreduce_max_f64(double *buf, size_t n);
int dist_bcast(void *buf, size_t bytes, int root);
int dist_barrier(void);

/* Point-to-point messages of bytes (for the HPO driver: JSON text). dist_recv_any blocks until a
 * message with `tag` arrives from any rank; *data is malloc'd (the caller frees), *len its size,
 * *src the sender. dist_probe_any is 1 when such a message is waiting, 0 when not. Errors at size 1. */
int dist_send(const void *data, size_t len, int dest, int tag);
int dist_recv_any(void **data, size_t *len, int *src, int tag);
int dist_recv_from(void **data, size_t *len, int src, int tag);
int dist_probe_any(int tag);

#endif
