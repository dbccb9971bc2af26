#!/usr/bin/env bash
# pretrain_check.sh - a learning figure, not a test: validation VOC mAP@0.5 and COCO AP on
# ../shared/data/facemask_coco after EPOCHS epochs with the template's default initialisation (the
# shipped ImageNet MobileNetV2, models/pretrained/) and with `model.pretrained_backbone: none`
# (random init), identical settings otherwise (the template's torchvision variant + TF padding,
# 320x320, num_iters EPOCHS, batch 8, lr 0.008, warm-up 50). Runs one after the other.
#   bash bench/pretrain_check.sh [BUILD_DIR]    env: EPOCHS (5), SIZE (320x320), OUT (/tmp/ote_pretrain_check)
# Target (issue 11): the default reaches VOC mAP@0.5 >= 0.19 after 5 epochs (a from-scratch
# PyTorch training of the same model reaches 0.176 after 11 epochs). Results: bench/README.md.
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
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
data=(--train-ann-files "$D/annotations/custom_train.json" --train-data-roots "$D/train2017"
      --val-ann-files "$D/annotations/custom_val.json" --val-data-roots "$D/val2017")
p=(--model.input_size "$SIZE" --learning_parameters.num_iters "$EPOCHS" --learning_parameters.learning_rate_warmup_iters 50
   --learning_parameters.batch_size 8 --learning_parameters.learning_rate 0.008)
for run in default none; do
  extra=()
  [ $run = none ] && extra=(--model.pretrained_backbone none)
  t0=$(date +%s)
  "$OTE" train "$TPL" "${data[@]}" --save-model-to "$OUT/$run" params "${p[@]}" "${extra[@]}" > "$OUT/$run.log"
  per_epoch=$(sed -n 's/^epoch \([0-9]*\)\/[0-9]* done: val mAP@0.5 \([0-9.]*\).*/\2/p' "$OUT/$run.log" | paste -sd' ')
  ap=$(grep -m1 'Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all' "$OUT/$run.log" | sed 's/.*= //')
  echo "$run: $(grep -m1 '^init:' "$OUT/$run.log" | cut -c1-60)..."
  echo "$run: $(grep 'validation VOC mAP@0.5 of the best model' "$OUT/$run.log"), COCO AP $ap, $(( $(date +%s) - t0 )) s; per epoch: $per_epoch"
done
