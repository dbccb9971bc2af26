#!/usr/bin/env bash
# tutorial_airport.sh - the OTE HPO tutorial (../shared/docs/reference-ote-hpo-tutorial.md) on
# ../shared/data/airport: its modified hpo_config.yaml (learning rate 0.001-0.01, step 0.001) and
#   ote train template.yaml --train-ann-files .../annotation_example_train.json --train-data-roots .../train \
#       --val-ann-files .../annotation_example_val.json --val-data-roots .../val \
#       --save-model-to best.pth --enable-hpo --hpo-time-ratio 2
# 1. exactly as written (input 992x736, num_iters 300): runs until the plan is printed, then stops
#    it (hours on 2 cores) - the calibration, the estimated training time and the plan are shown;
#    FULL=1 runs it to the end;
# 2. the same command at a smaller input size (SMALL, default 320x192), to the end: plan, trials,
#    best values, final mAP and total wall time.
#   bash bench/tutorial_airport.sh [BUILD_DIR]    env: SMALL (320x192), FULL (0), OUT (/tmp/ote_tutorial)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OTE=$(realpath "$BUILD/ote")
SHARED=$(realpath "${OTE_SHARED:-../shared}")
D=$SHARED/data/airport
OUT=${OUT:-/tmp/ote_tutorial}
SMALL=${SMALL:-320x192}
rm -rf "$OUT"; mkdir -p "$OUT/tpl"
# The tutorial edits hpo_config.yaml beside the template: do it on a copy (the copy keeps the
# shipped pretrained backbone by absolute path; relative paths are relative to the template).
src=models/templates/gen3_mobilenetV2_ATSS
cp "$src/template.yaml" "$src/hpo_config.yaml" "$OUT/tpl/"
sed -i "s|^  pretrained_backbone: .*|  pretrained_backbone: $(realpath "$src")/../../pretrained/mobilenet_v2_1.0_224_ptq.tflite|" "$OUT/tpl/template.yaml"
python3 - "$OUT/tpl/hpo_config.yaml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
old = "      - 0.001\n      - 0.1\n      - 0.001\n"
assert old in s, "unexpected hpo_config.yaml"
open(p, "w").write(s.replace(old, "      - 0.001\n      - 0.01\n      - 0.001\n"))
PY
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
cmd=("$OTE" train "$OUT/tpl/template.yaml" --train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train"
     --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val")

echo "== 1. the tutorial's command as written (input 992x736)"
if [ "${FULL:-0}" = 1 ]; then
  t0=$(date +%s)
  "${cmd[@]}" --save-model-to "$OUT/full/best.pth" --enable-hpo --hpo-time-ratio 2 --hpo-resume no </dev/null >"$OUT/full.log" 2>&1
  echo "finished in $(( $(date +%s) - t0 )) s"
  grep -E '^HPO|validation VOC mAP@0.5 of the best model' "$OUT/full.log"
else
  "${cmd[@]}" --save-model-to "$OUT/full/best.pth" --enable-hpo --hpo-time-ratio 2 --hpo-resume no </dev/null >"$OUT/full.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1200); do grep -q '^HPO: time budget' "$OUT/full.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.5; done
  kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  grep -E '^HPO' "$OUT/full.log"
  est=$(sed -n 's/.*one training (.*) ~ \([0-9]*\) s.*/\1/p' "$OUT/full.log")
  [ -n "$est" ] && echo "stopped after the plan: one training ~ ${est} s; the whole command (R = 2) ~ $(( 2 * est )) s ($(( 2 * est / 60 )) min) on this machine"
fi

echo "== 2. the same command at $SMALL (params --model.input_size $SMALL)"
t0=$(date +%s)
"${cmd[@]}" --save-model-to "$OUT/small/best.pth" --enable-hpo --hpo-time-ratio 2 --hpo-resume no \
    params --model.input_size "$SMALL" </dev/null >"$OUT/small.log" 2>&1
secs=$(( $(date +%s) - t0 ))
grep -E '^HPO (plan|done|time budget)|^HPO: (skipped|warning|time budget)|^\|' "$OUT/small.log"
grep -A1 'Best Hyper-parameters' "$OUT/small.log" | tail -1
grep -E '^training: |validation VOC mAP@0.5 of the best model' "$OUT/small.log" | tail -2
echo "total wall time ${secs} s ($(( secs / 60 )) min $(( secs % 60 )) s)"
