#!/usr/bin/env bash
# Configures and builds ote-c into build/ (or $1), installing missing Debian packages first.
#   build.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/scripts/install-deps.sh ${OTE_DEPS_FLAGS:-}
dir=${1:-build}; shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
# the progress lines are dropped; the build's own exit status decides (grep's "no line left" does not)
rc=0
cmake --build "$dir" -j2 -- --no-print-directory > "$dir/build.log" 2>&1 || rc=$?
grep -vE '^\[ *[0-9]+%\]' "$dir/build.log" || true
[ "$rc" -eq 0 ] || { echo "build.sh: the build in $dir failed (exit $rc)" >&2; exit "$rc"; }
