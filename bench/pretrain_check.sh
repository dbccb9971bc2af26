#!/usr/bin/env bash
# pretrain_check.sh - a learning figure, not a test: validation mAP on ../shared/data/facemask_coco
# with and without the ImageNet backbone imported from TFLite (`ote import-backbone`), identical
# settings otherwise (torchvision variant + TF padding in both, 320x320, num_iters EPOCHS, batch 8,
# lr 0.008, warm-up 50). Runs one after the other and prints both results.
#   bash bench/pretrain_check.sh [BUILD_DIR]    env: EPOCHS (5), SIZE (320x320), OUT (/tmp/ote_pretrain_check)
#
# Measured 2026-11-29 (quiet 2-core machine, EPOCHS=5): pretrained val mAP@0.5 0.1970 (COCO AP
# 0.084), 320 s; from scratch 0.0792 (COCO AP 0.032), 353 s. Per epoch, pretrained 0.004 / 0.078 /
# 0.165 / 0.183 / 0.197, scratch 0.000 / 0.007 / 0.029 / 0.056 / 0.079; ~11 img/s training.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OTE=$BUILD/ote
SHARED=${OTE_SHARED:-../shared}
D=$SHARED/data/facemask_coco
TPL=models/templates/gen3_mobilenetV2_ATSS/template.yaml
EPOCHS=${EPOCHS:-5}
SIZE=${SIZE:-320x320}
OUT=${OUT:-/tmp/ote_pretrain_check}
mkdir -p "$OUT"
"$OTE" import-backbone "$SHARED/weights/mobilenet_v2_1.0_224_tflite/tf2_mobilenet_v2_1.0_224_ptq.tflite" \
    --save-model-to "$OUT/backbone.pth" --input-range unit
data=(--train-ann-files "$D/annotations/custom_train.json" --train-data-roots "$D/train2017"
      --val-ann-files "$D/annotations/custom_val.json" --val-data-roots "$D/val2017")
p=(--model.input_size "$SIZE" --learning_parameters.num_iters "$EPOCHS" --learning_parameters.learning_rate_warmup_iters 50
   --model.backbone torchvision --model.tf_padding true)
for run in pretrained scratch; do
  extra=()
  [ $run = pretrained ] && extra=(--model.pretrained_backbone "$(realpath "$OUT/backbone.pth")")
  t0=$(date +%s)
  "$OTE" train "$TPL" "${data[@]}" --save-model-to "$OUT/$run" params "${p[@]}" "${extra[@]}" > "$OUT/$run.log"
  echo "$run: $(grep 'validation VOC mAP@0.5 of the best model' "$OUT/$run.log"), $(( $(date +%s) - t0 )) s"
done
