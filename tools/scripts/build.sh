#!/usr/bin/env bash
# Configures and builds ote-c into build/ (or $1), installing missing Debian packages first.
#   build.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/scripts/install-deps.sh ${OTE_DEPS_FLAGS:-}
dir=${1:-build}; shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j2 -- --no-print-directory 2>&1 | grep -vE '^\[ *[0-9]+%\]' || true
test "${PIPESTATUS[0]}" -eq 0
