#!/usr/bin/env bash
# Installs what is missing, builds ote-c and runs the main job on built-in demo data:
# `ote make-demo-data` writes a small synthetic COCO set (3 shape classes), `ote train --enable-hpo`
# searches lr and batch size (OTE's hpo_config.yaml; --hpo-time-ratio 2: the search gets about one
# training's time; results in OUT/model/hpo/) and then trains the MobileNetV2-ATSS template with the
# best values, at a small input size (a few minutes on 2 cores), and `ote eval`
# scores the saved weights on the validation split.
#   run-demo.sh [OUT_DIR]   (default: demo-run/; env DEMO_SIZE, DEMO_ITERS override the size/epochs)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-demo-run}
SIZE=${DEMO_SIZE:-256x256}
ITERS=${DEMO_ITERS:-4}
HPO_RATIO=${DEMO_HPO_RATIO:-2}   # HPO (SMBO over lr and batch size) takes about as long as the training
TPL=models/templates/gen3_mobilenetV2_ATSS/template.yaml
bash tools/scripts/build.sh build
./build/ote --version
mkdir -p "$OUT/data"
./build/ote make-demo-data "$OUT/data"
./build/ote train "$TPL" \
    --train-ann-files "$OUT/data/annotations/train.json" --train-data-roots "$OUT/data/train" \
    --val-ann-files "$OUT/data/annotations/val.json" --val-data-roots "$OUT/data/val" \
    --save-model-to "$OUT/model" --enable-hpo --hpo-time-ratio "$HPO_RATIO" --hpo-resume no \
    params --model.input_size "$SIZE" --learning_parameters.num_iters "$ITERS" \
    --learning_parameters.learning_rate_warmup_iters 10
./build/ote eval "$TPL" --test-ann-files "$OUT/data/annotations/val.json" --test-data-roots "$OUT/data/val" \
    --load-weights "$OUT/model/weights.pth" --save-performance "$OUT/model/performance.json"
echo "demo done: weights in $OUT/model/ (weights.pth, label_schema.json, performance.json)"
