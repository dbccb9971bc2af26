# tests/lib.sh - the one harness of the shell tests (the shell twin of tests/expect.h).
#
# A test sources it first and ends with `finish`:
#   . "$(dirname "$0")/lib.sh"
#   check "--help exits 0" "[ $? -eq 0 ]"
#   finish
#
# Checks (each prints one line and is counted):
#   ok MSG...          a passing check:  "ok  : MSG"
#   bad MSG...         a failing check:  "FAIL: MSG"
#   check MSG COND     eval COND (a shell condition, as a string); ok MSG if it holds, else bad MSG
#   expect_case NAME   prints "== NAME": the checks after it belong to that case
#   checks_from CMD... runs CMD (stdin passes through, so a heredoc works) and counts each line it
#                      prints as "ok  : MSG" (or "ok: MSG") / "FAIL: MSG" as a check, passing other
#                      lines through; a non-zero exit with no FAIL line is one failed check. Returns
#                      CMD's status. For checks made by an embedded Python script.
# Scratch: TMP is a fresh directory (/tmp/ote_<script>.XXXXXX), removed when the script exits
#   (kept, and its path printed, when KEEP is set);
#   on_exit CMD adds CMD (e.g. killing a background job) to what runs then, before the removal.
# Finish: `finish` prints the one summary line and exits 1 when a check failed or none ran:
#   PASS: 12 checks, 0 failed
#   FAIL: 12 checks, 2 failed
#   FAIL: 0 checks ran - a test that checks nothing proves nothing
# (same format as tests/expect.h; nothing else is needed from the test).
#
# The counters are plain shell variables, so checks made in a subshell ( ... ) or a pipeline
# are not counted: run checks in the script's own shell.

lib_checks=0
lib_fails=0
lib_exit_cmds=""

ok() {
    lib_checks=$((lib_checks + 1))
    echo "ok  : $*"
}

bad() {
    lib_checks=$((lib_checks + 1))
    lib_fails=$((lib_fails + 1))
    echo "FAIL: $*"
}

check() {
    if eval "$2"; then ok "$1"; else bad "$1"; fi
}

expect_case() {
    echo "== $*"
}

checks_from() {
    local line rc nbad=0
    "$@" >"$TMP/.checks_from.out"
    rc=$?
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
        "ok  : "*) ok "${line#ok  : }" ;;
        "ok: "*) ok "${line#ok: }" ;;
        "FAIL: "*) bad "${line#FAIL: }"; nbad=$((nbad + 1)) ;;
        *) printf '%s\n' "$line" ;;
        esac
    done <"$TMP/.checks_from.out"
    rm -f "$TMP/.checks_from.out"
    if [ "$rc" -ne 0 ] && [ "$nbad" -eq 0 ]; then bad "$1 exited with status $rc"; fi
    return "$rc"
}

lib_on_exit_() {
    eval "$lib_exit_cmds"
    if [ -n "${KEEP:-}" ]; then echo "kept $TMP (KEEP is set)"; else rm -rf "$TMP"; fi
}

on_exit() {
    lib_exit_cmds="$lib_exit_cmds
$1"
}

finish() {
    if [ "$lib_checks" -eq 0 ]; then
        echo "FAIL: 0 checks ran - a test that checks nothing proves nothing"
        exit 1
    fi
    if [ "$lib_fails" -eq 0 ]; then
        echo "PASS: $lib_checks checks, 0 failed"
        exit 0
    fi
    echo "FAIL: $lib_checks checks, $lib_fails failed"
    exit 1
}

TMP=$(mktemp -d "/tmp/ote_$(basename "$0" .sh).XXXXXX") || {
    echo "FAIL: mktemp -d"
    exit 1
}
trap lib_on_exit_ EXIT
