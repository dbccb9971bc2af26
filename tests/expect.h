/* expect.h - the one check harness of the C tests (and the benchmark programs).
 *
 * Checks. Each prints one line and is counted; each is an expression worth 1 if it passed, so
 * `if (!EXPECT(...)) return;` skips what cannot run after a failed step.
 *   EXPECT(cond, fmt, ...)              cond is true
 *   EXPECT_NEAR(v, ref, tol, fmt, ...)  absolute error: |v - ref| <= tol
 *   EXPECT_REL(v, ref, tol, fmt, ...)   relative error: |v - ref| / |ref| <= tol (ref == 0: v == 0)
 *   EXPECT_ERR(err, tol, fmt, ...)      an error measure the test computed itself (e.g. a tensor's
 *                                       max relative error, tests/engine_check.h) is <= tol
 * Every comparison is `error <= tol` (tol 0 demands exactness); a NaN anywhere fails. Lines:
 *   ok  : <message>
 *   ok  : <message>  [abs err 1.2e-08 <= tol 1e-06; value 1.00000001, ref 1]
 *   ok  : <message>  [err 3.1e-07 <= tol 1e-05]
 *   FAIL: <message>  [...]  (tests/test_x.c:42)
 *
 * Named cases: expect_case("name") prints "== name" and files the checks after it under that case;
 * EXPECT_RUN(case_foo) runs `static void case_foo(void)` as case "foo". main() is then a list of
 * EXPECT_RUN lines (plus whatever state the cases share).
 *
 * Setup: REQUIRE_OK(call) is for steps that must succeed (planning, arena commits): a negative ote
 * status prints the call, file:line and ote_errmsg() to stderr and exits 1. REQUIRE(cond, fmt, ...)
 * is a check that, when it fails, prints the summary and exits 1 (a missing fixture, say).
 *
 * Finish: main() ends with `return expect_finish();`, which prints the one summary line
 *   PASS: 57 checks, 0 failed (6 cases)
 *   FAIL: 57 checks, 2 failed (6 cases; failed in: conv_backward, pads)
 *   FAIL: 0 checks ran - a test that checks nothing proves nothing
 * and returns 1 when a check failed or none ran (ctest sees the exit code).
 *
 * Header-only, one test program per translation unit; the counters are file-static.
 */
#ifndef OTE_TEST_EXPECT_H
#define OTE_TEST_EXPECT_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

static int expect_fails, expect_total;
static int expect_cases_, expect_case_fails0_;
static char expect_case_name_[128]; /* a copy: callers may pass a stack buffer */
static char expect_failed_cases_[512];

static inline void expect_vline_(int ok, const char *file, int line, const char *detail, const char *fmt, va_list ap) {
    printf("%s: ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    if (detail) printf("  [%s]", detail);
    if (!ok) printf("  (%s:%d)", file, line);
    printf("\n");
    fflush(stdout);
    expect_total++;
    if (!ok) expect_fails++;
}

static inline int expect_check_(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int expect_check_(int ok, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    expect_vline_(ok, file, line, NULL, fmt, ap);
    va_end(ap);
    return ok;
}

enum { EXPECT_ABS_, EXPECT_REL_, EXPECT_ERR_ };

static inline int expect_near_(int mode, double v, double ref, double tol, const char *file, int line, const char *fmt,
                               ...) __attribute__((format(printf, 7, 8)));
static inline int expect_near_(int mode, double v, double ref, double tol, const char *file, int line, const char *fmt,
                               ...) {
    char detail[160];
    double err;
    if (mode == EXPECT_ERR_) {
        err = v;
        snprintf(detail, sizeof detail, "err %.3e <= tol %.3g", err, tol);
    } else {
        err = fabs(v - ref);
        if (mode == EXPECT_REL_) err = ref != 0 ? err / fabs(ref) : (v == 0 ? 0.0 : (double)INFINITY);
        snprintf(detail, sizeof detail, "%s err %.3e <= tol %.3g; value %.10g, ref %.10g",
                 mode == EXPECT_REL_ ? "rel" : "abs", err, tol, v, ref);
    }
    int ok = err <= tol; /* NaN compares false */
    va_list ap;
    va_start(ap, fmt);
    expect_vline_(ok, file, line, detail, fmt, ap);
    va_end(ap);
    return ok;
}

#define EXPECT(cond, ...) expect_check_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define EXPECT_NEAR(v, ref, tol, ...) \
    expect_near_(EXPECT_ABS_, (double)(v), (double)(ref), (double)(tol), __FILE__, __LINE__, __VA_ARGS__)
#define EXPECT_REL(v, ref, tol, ...) \
    expect_near_(EXPECT_REL_, (double)(v), (double)(ref), (double)(tol), __FILE__, __LINE__, __VA_ARGS__)
#define EXPECT_ERR(err, tol, ...) \
    expect_near_(EXPECT_ERR_, (double)(err), 0.0, (double)(tol), __FILE__, __LINE__, __VA_ARGS__)

/* Closes the current case: remembers its name if one of its checks failed. */
static inline void expect_case_close_(void) {
    if (expect_case_name_[0] && expect_fails > expect_case_fails0_) {
        size_t used = strlen(expect_failed_cases_);
        snprintf(expect_failed_cases_ + used, sizeof expect_failed_cases_ - used, "%s%s", used ? ", " : "",
                 expect_case_name_);
    }
    expect_case_name_[0] = 0;
}

static inline void expect_case(const char *name) {
    expect_case_close_();
    snprintf(expect_case_name_, sizeof expect_case_name_, "%s", name);
    expect_case_fails0_ = expect_fails;
    expect_cases_++;
    printf("== %s\n", name);
    fflush(stdout);
}

static inline void expect_run_(const char *fn_name, void (*fn)(void)) {
    expect_case(strncmp(fn_name, "case_", 5) == 0 ? fn_name + 5 : fn_name);
    fn();
    expect_case_close_();
}
#define EXPECT_RUN(fn) expect_run_(#fn, fn)

static inline int expect_finish(void) {
    expect_case_close_();
    if (expect_total == 0) {
        printf("FAIL: 0 checks ran - a test that checks nothing proves nothing\n");
        return 1;
    }
    printf("%s: %d checks, %d failed", expect_fails ? "FAIL" : "PASS", expect_total, expect_fails);
    if (expect_cases_) printf(" (%d case%s%s%s)", expect_cases_, expect_cases_ == 1 ? "" : "s",
                              expect_failed_cases_[0] ? "; failed in: " : "", expect_failed_cases_);
    printf("\n");
    return expect_fails ? 1 : 0;
}

#define REQUIRE_OK(x)                                                                            \
    do {                                                                                         \
        int require_s_ = (x);                                                                    \
        if (require_s_ < 0) {                                                                    \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #x, ote_errmsg());     \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

#define REQUIRE(cond, ...)                                                \
    do {                                                                  \
        if (!expect_check_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)) { \
            expect_finish();                                              \
            exit(1);                                                      \
        }                                                                 \
    } while (0)

#endif
