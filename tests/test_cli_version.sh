#!/usr/bin/env bash
# The ote binary: --version reports oneDNN 2.6, an ISA and the thread count; bad usage exits 2.
set -u
. "$(dirname "$0")/lib.sh"
out=$("$OTE_BIN" --version); rc=$?
check "--version exits 0" "[ $rc -eq 0 ]"
check "--version names oneDNN 2.6" "echo \"\$out\" | grep -q '^oneDNN 2\.6\.'"
check "--version names an ISA" "echo \"\$out\" | grep -q '^ISA: '"
check "--version prints threads" "echo \"\$out\" | grep -qE '^threads: [0-9]+$'"
t=$(OMP_NUM_THREADS=1 "$OTE_BIN" --version | sed -n 's/^threads: //p')
check "OMP_NUM_THREADS=1 gives 1 thread" "[ \"$t\" = 1 ]"
"$OTE_BIN" --help >/dev/null; check "--help exits 0" "[ $? -eq 0 ]"
"$OTE_BIN" no-such-command 2>/dev/null; check "unknown command exits 2" "[ $? -eq 2 ]"
"$OTE_BIN" 2>/dev/null; check "no command exits 2" "[ $? -eq 2 ]"
finish
