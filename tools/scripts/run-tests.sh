#!/usr/bin/env bash
# Installs what is missing, builds ote-c twice (ASan+UBSan, then release with -Werror) and runs the
# whole test suite on both builds; in between, each file reader's libFuzzer harness runs for 20 s
# (build-fuzz, clang-14). The last line printed is ctest's summary of the release run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OTE_DEPS_FLAGS=--test
jobs=${OTE_TEST_JOBS:-1}
bash tools/scripts/build.sh build-asan -DOTE_WERROR=ON -DOTE_SANITIZE=ON
echo "== test suite under ASan + UBSan =="
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
   OTE_SANITIZED=1 ctest --output-on-failure -j"$jobs")
bash tools/scripts/build.sh build-fuzz -DCMAKE_C_COMPILER=clang-14 -DOTE_FUZZ=ON
echo "== fuzzing: each file reader's libFuzzer harness for 20 s (fuzz/README.md) =="
(cd build-fuzz && ctest --output-on-failure)
bash tools/scripts/build.sh build -DOTE_WERROR=ON
echo "== test suite (release) =="
cd build && ctest --output-on-failure -j"$jobs"
