#!/usr/bin/env bash
# Installs what is missing, builds ote-c and runs the main job on built-in demo data:
#   1. `ote make-demo-data` writes a small synthetic COCO set: 128 training and 32 validation
#      images (disjoint), 1-3 rectangles / ellipses / triangles each, on noisy backgrounds with
#      distractor lines and dots;
#   2. `ote train --enable-hpo` starts from the ImageNet MobileNetV2 shipped in models/pretrained/,
#      searches learning rate and batch size (OTE's hpo_config.yaml, --hpo-time-ratio 2: the search
#      gets about one training's time; trials in OUT/model/hpo/), then trains with the best values
#      at 192x160 for 6 epochs;
#   3. `ote eval` scores the saved weights on the validation images;
#   4. `ote predict` draws the model's boxes on the validation images (OUT/predictions/), and the
#      training has drawn 8 of them with the ground truth (OUT/model/samples/).
# About 1-2 minutes on 2 cores after the build; the validation VOC mAP@0.5 ends near 0.97.
#   run-demo.sh [OUT_DIR]   (default: demo-run/; env DEMO_SIZE, DEMO_ITERS, DEMO_HPO_RATIO override)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-demo-run}
SIZE=${DEMO_SIZE:-192x160}
ITERS=${DEMO_ITERS:-6}
HPO_RATIO=${DEMO_HPO_RATIO:-2}
TPL=models/templates/gen3_mobilenetV2_ATSS/template.yaml
bash tools/scripts/build.sh build
./build/ote --version
t0=$(date +%s)
mkdir -p "$OUT/data"
./build/ote make-demo-data "$OUT/data"
./build/ote train "$TPL" \
    --train-ann-files "$OUT/data/annotations/train.json" --train-data-roots "$OUT/data/train" \
    --val-ann-files "$OUT/data/annotations/val.json" --val-data-roots "$OUT/data/val" \
    --save-model-to "$OUT/model" --enable-hpo --hpo-time-ratio "$HPO_RATIO" --hpo-resume no \
    params --model.input_size "$SIZE" --learning_parameters.num_iters "$ITERS" \
    --learning_parameters.learning_rate_warmup_iters 10
./build/ote eval "$TPL" --test-ann-files "$OUT/data/annotations/val.json" --test-data-roots "$OUT/data/val" \
    --load-weights "$OUT/model/weights.pth" --save-performance "$OUT/model/performance.json" | tee "$OUT/eval.log"
./build/ote predict "$TPL" --load-weights "$OUT/model/weights.pth" --images "$OUT/data/val" \
    --save-images "$OUT/predictions" --save-detections "$OUT/predictions/detections.json" | tail -1
secs=$(( $(date +%s) - t0 ))
map=$(sed -n 's/^VOC mAP@0.5[^:]*: \([0-9.]*\).*/\1/p' "$OUT/eval.log")
cat <<EOF

demo done in ${secs} s (after the build): validation VOC mAP@0.5 ${map}
  (1.0 = every shape found with its class; 32 validation images the training never saw)
outputs:
  $OUT/data/                   the demo images (train/, val/) and COCO annotations
  $OUT/model/weights.pth       the trained detector (a PyTorch checkpoint, mmdetection names)
  $OUT/model/label_schema.json the class names in the model's output order
  $OUT/model/performance.json  the evaluation above (VOC mAP, per-class AP, COCO stats)
  $OUT/model/hpo/              the search: one hpopt_trial_<id>.json per trial, hpopt_status.json
  $OUT/model/samples/          8 validation images: predictions (class colour, score) and ground truth (green)
  $OUT/predictions/            all 32 validation images with the model's boxes, and detections.json

open these to see what the model found:
$(ls "$OUT"/model/samples/*.png | head -3 | sed 's/^/  /')
  ... and the rest of $OUT/model/samples/ and $OUT/predictions/
next: ./build/ote predict $TPL --load-weights $OUT/model/weights.pth --images YOUR_IMAGES/ --save-images OUT_DIR
EOF
