#!/usr/bin/env bash
# export_map_check.sh - issue 16's face-mask figure: `ote eval` VOC mAP@0.5 of a model's
# weights.pth and of its `ote export` model.onnx (OpenCV dnn) on ../shared/data/facemask_coco val;
# they must agree to 1e-4. A script figure, not a test (it needs a trained face-mask model).
#   bash bench/export_map_check.sh WEIGHTS.pth [BUILD_DIR]     env: OUT (/tmp/ote_export_map_check)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:?usage: export_map_check.sh WEIGHTS.pth [BUILD_DIR]}
BUILD=${2:-build}
OTE=$BUILD/ote
D=${OTE_SHARED:-../shared}/data/facemask_coco
TPL=models/templates/gen3_mobilenetV2_ATSS/template.yaml
OUT=${OUT:-/tmp/ote_export_map_check}
rm -rf "$OUT"; mkdir -p "$OUT"
"$OTE" export "$TPL" --load-weights "$W" --save-model-to "$OUT/export"
ev() { "$OTE" eval "$TPL" --load-weights "$1" --test-ann-files "$D/annotations/custom_val.json" --test-data-roots "$D/val2017"; }
ev "$W" >"$OUT/eval_pth.log"
ev "$OUT/export/model.onnx" >"$OUT/eval_onnx.log"
m1=$(grep -m1 'VOC mAP@0.5' "$OUT/eval_pth.log" | sed 's/.*(\(.*\))$/\1/')
m2=$(grep -m1 'VOC mAP@0.5' "$OUT/eval_onnx.log" | sed 's/.*(\(.*\))$/\1/')
echo "weights.pth: VOC mAP@0.5 $m1 ($(grep -m1 'detections:' "$OUT/eval_pth.log" | sed 's/.*detections: //') detections)"
echo "model.onnx:  VOC mAP@0.5 $m2 ($(grep -m1 'detections:' "$OUT/eval_onnx.log" | sed 's/.*detections: //') detections)"
python3 -c "import sys; d = abs($m1 - $m2); print('difference %.3g: %s' % (d, 'ok (<= 1e-4)' if d <= 1e-4 else 'FAIL')); sys.exit(d > 1e-4)"
