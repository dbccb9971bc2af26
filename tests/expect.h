/* expect.h - the one check macro the C tests share.
 *
 * EXPECT(cond, fmt, ...) prints "ok  : <message>" or "FAIL: <message>" and counts failures in
 * expect_fails; a test's main() ends with `return expect_finish();`, which prints the totals and
 * returns non-zero when any check failed (ctest sees the exit code).
 */
#ifndef OTE_TEST_EXPECT_H
#define OTE_TEST_EXPECT_H

#include <stdio.h>

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

static inline int expect_finish(void) {
    printf("%d checks, %d failed\n", expect_total, expect_fails);
    return expect_fails ? 1 : 0;
}

#endif
