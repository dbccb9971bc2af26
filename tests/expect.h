/* expect.h - the check macros the C tests (and benchmark programs) share.
 *
 * EXPECT(cond, fmt, ...) prints "ok  : <message>" or "FAIL: <message>" and counts failures in
 * expect_fails; a test's main() ends with `return expect_finish();`, which prints the totals and
 * returns non-zero when any check failed (ctest sees the exit code).
 * REQUIRE_OK(call) is for setup steps that must succeed (planning, arena commits): a negative
 * ote status prints the call, file:line and ote_errmsg() to stderr and exits 1.
 */
#ifndef OTE_TEST_EXPECT_H
#define OTE_TEST_EXPECT_H

#include <stdio.h>
#include <stdlib.h>

#include "engine/status.h"

static int expect_fails, expect_total;

#define EXPECT(cond, ...)                            \
    do {                                             \
        int expect_ok_ = !!(cond);                   \
        printf("%s: ", expect_ok_ ? "ok  " : "FAIL"); \
        printf(__VA_ARGS__);                         \
        printf("\n");                                \
        expect_total++;                              \
        if (!expect_ok_) expect_fails++;             \
    } while (0)

#define REQUIRE_OK(x)                                                                            \
    do {                                                                                         \
        int require_s_ = (x);                                                                    \
        if (require_s_ < 0) {                                                                    \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #x, ote_errmsg());     \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

static inline int expect_finish(void) {
    printf("%d checks, %d failed\n", expect_total, expect_fails);
    return expect_fails ? 1 : 0;
}

#endif
