#!/usr/bin/env bash
# hpo_fidelity.sh - do HPO trials rank configurations the way full trainings do? (issue 11)
# On ../shared/data/facemask_coco at 320x320 with the template's default (pretrained) backbone:
# 6 configurations of the tutorial's space (lr 0.001-0.01 x batch 4-8), each trained fully for
# EPOCHS epochs (warm-up 50 iterations) and as the trial the planner makes for --hpo-time-ratio 2
# and 4 (bench/bench_hpo_fidelity.c: same calibration, plan and trial code as `ote train
# --enable-hpo`); prints the table and Spearman's rank correlation per ratio. Target: >= 0.6 at 4.
#   bash bench/hpo_fidelity.sh [BUILD_DIR]    env: EPOCHS (5), SIZE (320x320), RATIOS (2,4)
# About 75 minutes on 2 cores. Results: bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${OTE_SHARED:-../shared}
D=$SHARED/data/facemask_coco
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bench_hpo_fidelity" models/templates/gen3_mobilenetV2_ATSS/template.yaml \
    "$D/annotations/custom_train.json" "$D/train2017" "$D/annotations/custom_val.json" "$D/val2017" "${RATIOS:-2,4}" \
    params --model.input_size "${SIZE:-320x320}" --learning_parameters.num_iters "${EPOCHS:-5}" \
    --learning_parameters.learning_rate_warmup_iters 50
