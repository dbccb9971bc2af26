#!/usr/bin/env bash
# learning_check.sh - a learning figure, not a test: trains on ../shared/data/facemask_coco at
# 320x320 for a fixed number of epochs with `ote train`, then the PyTorch reference model
# (tests/reference/detector_ref.py via bench/learning_check_torch.py) under identical settings on
# the identical batch stream (`ote dump-batches`), one after the other (never concurrently, so the
# wall times compare), and prints validation VOC mAP@0.5, COCO AP and wall time for both.
#
#   bash bench/learning_check.sh [BUILD_DIR]     env: NUM_ITERS (default 2), WARMUP (50), SIZE (320x320),
#                                                      BATCH (8), LR (0.008), OUT (/tmp/ote_learning_check)
# NUM_ITERS is OTE's num_iters (epochs before the adaptive repeat; facemask's 677 training images
# give repeat 8, so NUM_ITERS <= 8 means NUM_ITERS epochs of one pass each).
#
# Measured 2026-11-29 on 2 shared CPUs (NUM_ITERS 2: 2 epochs x 85 iterations, batch 8, lr 0.008,
# warm-up 50, 320x320; identical batches for both; from random initialisation, no ImageNet backbone):
#   ote:     epoch 1 val mAP@0.5 0.0013 (COCO AP 0.000, AP50 0.002, AR100 0.016);
#            epoch 2 val mAP@0.5 0.0057 (COCO AP 0.002); 2 epochs incl. validation 331 s
#            (~10 img/s training while the machine was otherwise idle, 0.5 img/s under load 10).
#   PyTorch: epoch 1 val mAP@0.5 0.0005 (COCO AP 0.000, AP50 0.001, AR100 0.012), epoch 1 took
#            ~2880 s under load 10; the reference trained at ~0.7 img/s at load ~5 in the second
#            attempt (not profiled), so neither attempt reached epoch 2 before the deadline.
# Training losses on the same batches follow the same course (cls ~1.1 -> ~0.55-0.6 by iteration
# 60-80 in both). One epoch from random init is still the near-zero mAP regime: this shows both
# learn at a similar pace, not final accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OTE=$BUILD/ote
SHARED=${OTE_SHARED:-../shared}
D=$SHARED/data/facemask_coco
TPL=models/templates/gen3_mobilenetV2_ATSS/template.yaml
NUM_ITERS=${NUM_ITERS:-2}
WARMUP=${WARMUP:-50}
SIZE=${SIZE:-320x320}
BATCH=${BATCH:-8}
LR=${LR:-0.008}
OUT=${OUT:-/tmp/ote_learning_check}
mkdir -p "$OUT"
[ -x "$OTE" ] || { echo "learning_check: build $OTE first (bash tools/scripts/build.sh $BUILD)" >&2; exit 1; }

echo "== ote train: facemask_coco, $SIZE, num_iters $NUM_ITERS, batch $BATCH, lr $LR, warm-up $WARMUP =="
t0=$(date +%s.%N)
"$OTE" train "$TPL" --train-ann-files "$D/annotations/custom_train.json" --train-data-roots "$D/train2017" \
    --val-ann-files "$D/annotations/custom_val.json" --val-data-roots "$D/val2017" --save-model-to "$OUT/ote" \
    params --model.input_size "$SIZE" --learning_parameters.num_iters "$NUM_ITERS" \
    --learning_parameters.batch_size "$BATCH" --learning_parameters.learning_rate "$LR" \
    --learning_parameters.learning_rate_warmup_iters "$WARMUP" | tee "$OUT/ote_train.log"
t1=$(date +%s.%N)
ote_secs=$(echo "$t1 - $t0" | bc)
ote_map=$(sed -n 's/^validation VOC mAP@0.5 of the best model: [0-9.]*  (\(.*\))$/\1/p' "$OUT/ote_train.log")
ote_ap=$(grep -m1 "Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all" "$OUT/ote_train.log" | sed 's/.*= //')

echo "== PyTorch reference (tests/reference/detector_ref.py), same settings and batches =="
/usr/bin/python3 bench/learning_check_torch.py --ote "$OTE" --template "$TPL" \
    --train-ann "$D/annotations/custom_train.json" --train-roots "$D/train2017" \
    --val-ann "$D/annotations/custom_val.json" --val-roots "$D/val2017" --size "$SIZE" \
    --num-iters "$NUM_ITERS" --batch "$BATCH" --lr "$LR" --warmup "$WARMUP" --out "$OUT/torch" | tee "$OUT/torch_train.log"
res=$(tail -1 "$OUT/torch_train.log")
t_map=$(echo "$res" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["best_map"])')
t_ap=$(echo "$res" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["best_coco_ap"])')
t_secs=$(echo "$res" | /usr/bin/python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["seconds"])')

echo
echo "== learning check: facemask_coco, $SIZE, num_iters $NUM_ITERS (batch $BATCH, lr $LR, warm-up $WARMUP), $(nproc) CPUs =="
printf "%-28s %12s %10s %12s\n" "" "val mAP@0.5" "COCO AP" "wall time s"
printf "%-28s %12.4f %10s %12.1f\n" "ote (C, oneDNN)" "$ote_map" "$ote_ap" "$ote_secs"
printf "%-28s %12.4f %10s %12s\n" "PyTorch reference" "$t_map" "$t_ap" "$t_secs"
