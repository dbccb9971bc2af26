/* test_mpi_dist.c - dist/ under `mpirun -np 2` (CMake runs test_mpi_* that way): rank and size,
 * allreduce sums/max against the values each rank contributed, bcast, point-to-point text from rank
 * 1 to rank 0 with any-source receive, and the thread default (cores / ranks on the node). Each rank
 * prints its own checks; mpirun fails when either rank exits non-zero. */
#include "dist/dist.h"
#include "tests/expect.h"

#include <unistd.h>

static void case_ranks(void) {
    EXPECT(dist_available(), "this build has MPI");
    EXPECT(dist_size() == 2, "2 ranks (got %d)", dist_size());
    EXPECT(dist_rank() == 0 || dist_rank() == 1, "rank %d in 0..1", dist_rank());
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want = (int)cpus / 2 > 0 ? (int)cpus / 2 : 1;
    EXPECT(dist_default_threads() == want, "default threads %d = %ld cpus / 2 ranks", dist_default_threads(), cpus);
}

static void case_collectives(void) {
    int r = dist_rank();
    float f[3] = {1.0f + (float)r, 0.5f * (float)r, -2.0f};
    REQUIRE_OK(dist_allreduce_sum_f32(f, 3));
    EXPECT_NEAR(f[0], 3.0, 0, "f32 sum of 1 and 2");
    EXPECT_NEAR(f[1], 0.5, 0, "f32 sum of 0 and 0.5");
    EXPECT_NEAR(f[2], -4.0, 0, "f32 sum of -2 and -2");
    double d[2] = {r ? 1e-3 : 7.0, (double)r};
    REQUIRE_OK(dist_allreduce_sum_f64(d, 2));
    EXPECT_NEAR(d[0], 7.001, 1e-15, "f64 sum");
    double m[1] = {r ? 5.0 : -1.0};
    REQUIRE_OK(dist_allreduce_max_f64(m, 1));
    EXPECT_NEAR(m[0], 5.0, 0, "f64 max");
    char buf[16] = {0};
    if (r == 1) memcpy(buf, "from rank 1", 12);
    REQUIRE_OK(dist_bcast(buf, sizeof buf, 1));
    EXPECT(!strcmp(buf, "from rank 1"), "bcast from rank 1 reached rank %d: '%s'", r, buf);
    REQUIRE_OK(dist_barrier());
}

static void case_messages(void) {
    enum { TAG = 7 };
    if (dist_rank() == 1) {
        const char *msg = "{\"lr\": 0.01}";
        REQUIRE_OK(dist_send(msg, strlen(msg), 0, TAG));
        EXPECT(1, "rank 1 sent its message");
    } else {
        void *data = NULL;
        size_t len = 0;
        int src = -1;
        REQUIRE_OK(dist_recv_any(&data, &len, &src, TAG));
        EXPECT(src == 1, "received from rank %d", src);
        EXPECT(len == 12 && !strcmp(data, "{\"lr\": 0.01}"), "text arrived whole, NUL-terminated (%zu bytes)", len);
        EXPECT(!dist_probe_any(TAG), "no second message waiting");
        free(data);
    }
    REQUIRE_OK(dist_barrier());
}

int main(int argc, char **argv) {
    REQUIRE_OK(dist_init(&argc, &argv));
    EXPECT_RUN(case_ranks);
    EXPECT_RUN(case_collectives);
    EXPECT_RUN(case_messages);
    int rc = expect_finish();
    dist_finalize();
    return rc;
}
