#!/usr/bin/env bash
# bench_export.sh - issue 16's speed figure: images/s of an `ote export` model run by OpenCV dnn
# next to ote's own inference (batch 1, post-processing included, and the forwards alone) at
# 320x320 and 992x736, with the template's architecture (torchvision + TF padding) and random
# weights (speed does not depend on the values). Run on a quiet machine.
#   bash bench/bench_export.sh [BUILD_DIR]     env: THREADS (0 = all cores), ITERS (20), SIZES
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} "$BUILD/bench_export" --sizes "${SIZES:-320x320,992x736}" \
    --iters "${ITERS:-20}" --threads "${THREADS:-0}"
