/* test_harness_expect.c - the harness itself (tests/expect.h): each scenario runs in a forked child
 * with fresh counters and its stdout captured, and the parent checks the child's exit status and
 * output: a program with zero checks fails, one passing check passes, a failing check fails and
 * names its case and file:line, and EXPECT_NEAR / EXPECT_REL / EXPECT_ERR apply `error <= tol`
 * (NaN fails) and print the value, reference, error and tolerance.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/expect.h"

/* Runs body() in a child as if it were a test's main(): fresh counters, `return expect_finish()`.
 * Returns the child's exit status (-1 if it did not exit normally); its stdout goes to out. */
static int run_child(void (*body)(void), char *out, size_t cap) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        expect_fails = expect_total = expect_cases_ = expect_case_fails0_ = 0;
        expect_case_name_[0] = 0;
        expect_failed_cases_[0] = 0;
        body();
        int rc = expect_finish();
        fflush(stdout);
        _exit(rc);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd[0], out + n, cap - 1 - n)) > 0) n += (size_t)r;
    out[n] = 0;
    close(fd[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

static void body_none(void) {}
static void body_pass(void) { EXPECT(1 + 1 == 2, "arithmetic"); }
static void case_broken(void) { EXPECT(0, "this check fails"); }
static void body_fail_in_case(void) {
    expect_case("fine");
    EXPECT(1, "passes");
    EXPECT_RUN(case_broken);
}
static void body_near_pass(void) {
    EXPECT_NEAR(1.0 + 1e-7, 1.0, 1e-6, "abs near");
    EXPECT_REL(200.0 + 1e-4, 200.0, 1e-6, "rel near");
    EXPECT_REL(0.0, 0.0, 0, "rel, reference 0, value 0");
    EXPECT_ERR(0.0, 0, "err 0 with tol 0");
    EXPECT_NEAR(2.5, 2.0, 0.5, "error equal to tol passes");
}
static void body_near_abs_fail(void) { EXPECT_NEAR(1.0 + 1e-7, 1.0, 1e-8, "abs too far"); }
static void body_rel_fail(void) { EXPECT_REL(1e-9, 0.0, 1e300, "rel, reference 0, value not 0"); }
static void body_nan_fail(void) { EXPECT_NEAR(NAN, 1.0, INFINITY, "NaN value"); }
static void body_err_nan_fail(void) { EXPECT_ERR(NAN, 1.0, "NaN error"); }
static void body_return_value(void) {
    int a = EXPECT(1, "true"), b = EXPECT_NEAR(1, 3, 1, "false");
    EXPECT(a == 1 && b == 0, "checks return 1 / 0");
}

int main(void) {
    char out[4096];
    int rc;

    expect_case("zero checks");
    rc = run_child(body_none, out, sizeof out);
    EXPECT(rc == 1, "a program with zero checks exits 1 (got %d)", rc);
    EXPECT(strstr(out, "FAIL: 0 checks ran") != NULL, "and says so in its summary line");

    expect_case("pass and fail");
    rc = run_child(body_pass, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "ok  : arithmetic\nPASS: 1 checks, 0 failed\n"), "one passing check: exit %d", rc);
    rc = run_child(body_fail_in_case, out, sizeof out);
    EXPECT(rc == 1, "one failing check: exit %d", rc);
    EXPECT(strstr(out, "== broken\nFAIL: this check fails  (") != NULL && strstr(out, "test_harness_expect.c:") != NULL,
           "the failure line says where (file:line), under its case header (\"case_\" dropped)");
    EXPECT(strstr(out, "FAIL: 2 checks, 1 failed (2 cases; failed in: broken)\n") != NULL,
           "the summary names the failed case");

    expect_case("tolerances");
    rc = run_child(body_near_pass, out, sizeof out);
    EXPECT(rc == 0, "EXPECT_NEAR / EXPECT_REL / EXPECT_ERR within tolerance pass (exit %d)", rc);
    EXPECT(strstr(out, "ok  : abs near  [abs err 1.000e-07 <= tol 1e-06; value 1.0000001, ref 1]") != NULL,
           "EXPECT_NEAR prints the kind of error, the error, the tolerance, the value and the reference");
    EXPECT(strstr(out, "ok  : rel near  [rel err 5.000e-07 <= tol 1e-06;") != NULL, "EXPECT_REL says rel");
    EXPECT(strstr(out, "ok  : err 0 with tol 0  [err 0.000e+00 <= tol 0]") != NULL, "EXPECT_ERR prints err and tol");
    struct {
        void (*body)(void);
        const char *what;
    } fails[] = {{body_near_abs_fail, "absolute error above tol"},
                 {body_rel_fail, "reference 0, value not 0 (relative error infinite)"},
                 {body_nan_fail, "NaN value with an infinite tolerance"},
                 {body_err_nan_fail, "NaN error measure"}};
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
        rc = run_child(fails[i].body, out, sizeof out);
        EXPECT(rc == 1 && strstr(out, "FAIL: 1 checks, 1 failed"), "fails: %s (exit %d)", fails[i].what, rc);
    }
    rc = run_child(body_return_value, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "ok  : checks return 1 / 0"), "a check's value is 1 if it passed, 0 if not");
    return expect_finish();
}
