#!/usr/bin/env bash
# test_train_e2e.sh - `ote train` end to end on ../shared/data/airport at a small input size:
#   1. training (2 epochs) writes weights.pth and label_schema.json and prints the best model's
#      validation VOC mAP@0.5 (exact value in parentheses) and the 12 COCO stats;
#   2. `ote eval` with those weights on the validation set prints the same mAP, compared on the
#      exact printed value (%.17g: bit-for-bit, since evaluation is the same code on the same
#      weights), and --save-performance writes it;
#      the default initialisation is the shipped pretrained backbone (one init line);
#   3. training again from --load-weights (1 epoch, OUT given as a .pth path) works and reports
#      that it loaded the weights; best.label_schema.json lands beside OUT = best.pth.
# Under ASan/UBSan (OTE_SANITIZED=1) the input size is 128x96 to stay fast (at 128x64 the stride-32
# maps are 2 rows high and oneDNN offers no JIT backward-weights kernel for the 960-channel depthwise conv).
# One line per check; exit 1 on any failure.
set -u
. "$(dirname "$0")/lib.sh"
OTE="${OTE_BIN:-build/ote}"
SRC="${OTE_SRC:-.}"
SHARED="${OTE_SHARED:-../shared}"
TPL="$SRC/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
D="$SHARED/data/airport"
SIZE=256x160
[ "${OTE_SANITIZED:-0}" = 1 ] && SIZE=128x96
DATA=(--train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train"
      --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val")

OUT="$TMP/model"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$OUT" params --model.input_size "$SIZE" \
    --learning_parameters.num_iters 2 --learning_parameters.batch_size 4 \
    --learning_parameters.learning_rate_warmup_iters 2 >"$TMP/train.log" 2>"$TMP/train.err"
rc=$?
[ $rc -eq 0 ] && ok "ote train at $SIZE, 2 epochs: exit 0" || { bad "ote train exit $rc: $(head -3 "$TMP/train.err")"; }
[ -s "$OUT/weights.pth" ] && ok "weights.pth written" || bad "no $OUT/weights.pth"
[ -s "$OUT/label_schema.json" ] && grep -q '"name": "person"' "$OUT/label_schema.json" && ok "label_schema.json written (lists 'person')" || bad "label_schema.json"
[ -z "$(find "$OUT" -name '*.tmp*')" ] && ok "no temporary files left" || bad "temporary files left in $OUT"
grep -q "^epoch 1/2 iter 1/.*loss .*(cls .* box .* ctr .*)  lr .* img/s  eta " "$TMP/train.log" && ok "progress line: epoch, iteration, loss parts, lr, img/s, ETA" || bad "no progress line"
grep -q "epoch 2/2 done: val mAP@0.5" "$TMP/train.log" && ok "per-epoch validation mAP printed" || bad "no per-epoch validation"
n_stats=$(grep -c "Average \(Precision\|Recall\)" "$TMP/train.log")
[ "$n_stats" = 12 ] && ok "12 COCO stats of the best model printed" || bad "COCO stats: $n_stats lines"
grep -q "^init: backbone from .*models/templates/gen3_mobilenetV2_ATSS/../../pretrained/mobilenet_v2_1.0_224_ptq.tflite (.* TFLite imported in memory, folded BatchNorm re-estimated" "$TMP/train.log" \
    && ok "default initialisation: the shipped pretrained backbone, one line" || bad "no 'init: backbone from' line for the default"
train_map=$(sed -n 's/^validation VOC mAP@0.5 of the best model: [0-9.]*  (\(.*\))$/\1/p' "$TMP/train.log")
[ -n "$train_map" ] && ok "training printed the best validation mAP: $train_map" || bad "no best mAP line"

"$OTE" eval "$TPL" --test-ann-files "$D/annotation_example_val.json" --test-data-roots "$D/val" \
    --load-weights "$OUT/weights.pth" --save-performance "$TMP/perf.json" >"$TMP/eval.log" 2>"$TMP/eval.err"
rc=$?
[ $rc -eq 0 ] && ok "ote eval with the saved weights: exit 0" || bad "ote eval exit $rc: $(head -3 "$TMP/eval.err")"
grep -q "at input size $SIZE" "$TMP/eval.log" && ok "ote eval uses the checkpoint's input size $SIZE" || bad "eval input size"
eval_map=$(sed -n "s/^VOC mAP@0.5 .*: [0-9.]*  (\(.*\))$/\1/p" "$TMP/eval.log")
[ -n "$train_map" ] && [ "$eval_map" = "$train_map" ] && ok "ote eval reproduces the training mAP exactly ($eval_map)" \
    || bad "eval mAP '$eval_map' != training mAP '$train_map'"
grep -q '"voc_map_050"' "$TMP/perf.json" 2>/dev/null && ok "--save-performance wrote voc_map_050" || bad "no performance JSON"
n_eval_stats=$(grep -c "Average \(Precision\|Recall\)" "$TMP/eval.log")
[ "$n_eval_stats" = 12 ] && ok "ote eval prints the 12 COCO stats" || bad "eval COCO stats: $n_eval_stats"
# The best epoch's COCO AP printed by training equals eval's (same maxDets 100,300,1000).
t_ap=$(grep -m1 "Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all" "$TMP/train.log")
e_ap=$(grep -m1 "Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all" "$TMP/eval.log")
[ -n "$t_ap" ] && [ "$t_ap" = "$e_ap" ] && ok "COCO AP line identical in train and eval" || bad "COCO AP: '$t_ap' vs '$e_ap'"

OUT2="$TMP/again/best.pth"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$OUT2" --load-weights "$OUT/weights.pth" \
    params --model.input_size "$SIZE" --learning_parameters.num_iters 1 --learning_parameters.batch_size 4 \
    >"$TMP/train2.log" 2>"$TMP/train2.err"
rc=$?
[ $rc -eq 0 ] && ok "training again from --load-weights: exit 0" || bad "second training exit $rc: $(head -3 "$TMP/train2.err")"
grep -q "^init: all weights from $OUT/weights.pth (ote layout)" "$TMP/train2.log" && ok "second run reports the loaded checkpoint" || bad "no 'loaded weights' line"
grep -q "re-initialised" "$TMP/train2.log" && bad "same classes must not re-initialise atss_cls" || ok "same class count: nothing re-initialised"
[ -s "$OUT2" ] && [ -s "$TMP/again/best.label_schema.json" ] && ok "OUT.pth and OUT's best.label_schema.json beside it" || bad "second run outputs"
finish
