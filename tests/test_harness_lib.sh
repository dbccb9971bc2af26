#!/usr/bin/env bash
# tests/lib.sh itself: child scripts that source it show that a script with zero checks fails, one
# passing check passes, a failing check fails, TMP exists while the script runs and is removed
# afterwards, and on_exit commands run at exit.
set -u
. "$(dirname "$0")/lib.sh"
LIB="$(cd "$(dirname "$0")" && pwd)/lib.sh"

child() { # child NAME BODY: runs BODY in a fresh bash after sourcing lib.sh; sets rc and out
    printf '. "%s"\n%s\n' "$LIB" "$2" >"$TMP/$1.sh"
    out=$(bash "$TMP/$1.sh" 2>&1)
    rc=$?
}

expect_case "zero checks"
child zero 'finish'
check "a script with zero checks exits 1 (got $rc)" "[ $rc -eq 1 ]"
check "and says so" "echo \"\$out\" | grep -q '^FAIL: 0 checks ran'"

expect_case "pass and fail"
child pass 'check "true holds" "[ 1 -eq 1 ]"; finish'
check "one passing check: exit 0 (got $rc), 'ok  :' line and PASS summary" \
    "[ $rc -eq 0 ] && [ \"\$out\" = \"\$(printf 'ok  : true holds\nPASS: 1 checks, 0 failed')\" ]"
child fail 'ok "fine"; check "false holds" "[ 1 -eq 2 ]"; finish'
check "one failing check among two: exit 1 (got $rc), 'FAIL:' line and FAIL summary" \
    "[ $rc -eq 1 ] && echo \"\$out\" | grep -q '^FAIL: false holds$' && echo \"\$out\" | grep -q '^FAIL: 2 checks, 1 failed$'"
child bad 'bad "explicit failure"; finish'
check "bad alone fails (exit $rc)" "[ $rc -eq 1 ]"

expect_case "checks_from"
child from "checks_from bash -c 'echo \"ok  : one\"; echo \"ok: two\"; echo other; echo \"FAIL: three\"'; finish"
check "checks_from counts the ok and FAIL lines of a command (exit $rc)" \
    "[ $rc -eq 1 ] && echo \"\$out\" | grep -q '^FAIL: 3 checks, 1 failed$' && echo \"\$out\" | grep -q '^other$'"
child from_rc "checks_from bash -c 'echo \"ok  : one\"; exit 3'; echo \"status \$?\"; finish"
check "a command's non-zero exit without a FAIL line is a failed check; its status is returned" \
    "[ $rc -eq 1 ] && echo \"\$out\" | grep -q '^FAIL: bash exited with status 3$' && echo \"\$out\" | grep -q '^status 3$'"

expect_case "scratch directory and on_exit"
child scratch 'echo "dir $TMP"; [ -d "$TMP" ] && ok "TMP exists"; on_exit "echo cleanup ran"; finish'
d=$(echo "$out" | sed -n 's/^dir //p')
check "TMP was a directory under /tmp while the child ran ($d)" "[ $rc -eq 0 ] && case '$d' in /tmp/ote_scratch.*) true;; *) false;; esac"
check "TMP is removed when the child exits" "[ -n '$d' ] && [ ! -e '$d' ]"
check "on_exit commands run at exit" "echo \"\$out\" | grep -q '^cleanup ran$'"
finish
