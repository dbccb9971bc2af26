#!/usr/bin/env bash
# test_train_cli.sh - bad input to `ote train` (and `ote eval`'s model form) through the CLI.
# Each case must exit with the right code (2 usage, 1 runtime), print exactly one line on stderr
# that names the culprit, and leave no file behind in the output folder. Nothing here trains:
# every case fails before the first iteration. One line per check; exit 1 on any failure.
set -u
. "$(dirname "$0")/lib.sh"
OTE="${OTE_BIN:-build/ote}"
SRC="${OTE_SRC:-.}"
SHARED="${OTE_SHARED:-../shared}"
TPL="$SRC/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
D="$SHARED/data/airport"
DATA=(--train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train"
      --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val")

# expect NAME CODE PATTERN OUTDIR -- ARGS...
expect() {
    local name="$1" code="$2" pat="$3" out="$4"
    shift 5
    "$OTE" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    local rc=$? lines
    lines=$(wc -l <"$TMP/stderr")
    local left=""
    if [ -e "$out" ]; then left=$(find "$out" -type f | head -3); fi
    if [ "$rc" -eq "$code" ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" "$TMP/stderr" && [ -z "$left" ]; then
        ok "$name: exit $rc: $(cat "$TMP/stderr")"
    else
        bad "$name: exit $rc (want $code), $lines stderr lines, pattern '$pat', files left: '$left'"
        sed 's/^/    /' "$TMP/stderr" | head -5
    fi
}

OUT="$TMP/out"
expect "missing option" 2 "missing required option --val-data-roots" "$OUT" -- \
    train "$TPL" --train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train" \
    --val-ann-files "$D/annotation_example_val.json" --save-model-to "$OUT"
expect "unknown option" 2 "unknown option '--colour'" "$OUT" -- train "$TPL" "${DATA[@]}" --save-model-to "$OUT" --colour red
expect "ambiguous prefix" 2 "ambiguous option: --val" "$OUT" -- train "$TPL" "${DATA[@]}" --save-model-to "$OUT" --val x
expect "option without value" 2 "option --save-model-to needs a value" "$OUT" -- train "$TPL" "${DATA[@]}" --save-model-to
expect "missing template" 2 "template not found" "$OUT" -- train "$TMP/nope/template.yaml" "${DATA[@]}" --save-model-to "$OUT"
expect "unknown params key" 2 "unknown key 'learning_parameters.batchsize'" "$OUT" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$OUT" params --learning_parameters.batchsize 4
expect "value above max" 2 "learning_parameters.learning_rate: value '0.5' is above max_value 0.1" "$OUT" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$OUT" params --learning_parameters.learning_rate 0.5
expect "value below min (prefix options, --opt=value)" 2 "template.yaml:[0-9]*: learning_parameters.batch_size: value '0' is below min_value 1" "$OUT" -- \
    train "$TPL" --train-ann-file="$D/annotation_example_train.json" --train-data-root "$D/train" \
    --val-ann "$D/annotation_example_val.json" --val-data "$D/val" --save-model "$OUT" \
    params --learning_parameters.batch_size=0
expect "bad type" 2 "expected an integer, got 'four'" "$OUT" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$OUT" params --learning_parameters.num_iters four
expect "bad input size" 2 "model.input_size: expected WxH" "$OUT" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$OUT" params --model.input_size 300x200
mkdir -p "$TMP/tpl"
cp "$TPL" "$TMP/tpl/template.yaml"
expect "missing hpo_config.yaml with --enable-hpo" 2 "hpo_config.yaml not found" "$OUT" -- \
    train "$TMP/tpl/template.yaml" "${DATA[@]}" --save-model-to "$OUT" --enable-hpo
# the copy's relative model.pretrained_backbone points nowhere: refused before any work, naming the key
expect "copied template, pretrained backbone not found" 2 "model.pretrained_backbone: cannot read $TMP/tpl/../../pretrained/" "$OUT" -- \
    train "$TMP/tpl/template.yaml" "${DATA[@]}" --save-model-to "$OUT"
expect "bad --hpo-time-ratio" 2 "hpo-time-ratio 'x'" "$OUT" -- train "$TPL" "${DATA[@]}" --save-model-to "$OUT" --hpo-time-ratio x
expect "--hpo-time-ratio above the cap (issue 13 item 8)" 2 "hpo-time-ratio 1e9: at most 1e+06" "$OUT" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$OUT" --hpo-time-ratio 1e9
expect "missing annotation file" 1 "$TMP/missing.json" "$OUT" -- \
    train "$TPL" --train-ann-files "$TMP/missing.json" --train-data-roots "$D/train" \
    --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" --save-model-to "$OUT"
expect "missing --load-weights file" 1 "cannot read $TMP/none.pth" "$OUT" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$OUT" --load-weights "$TMP/none.pth"
echo "not a directory" >"$TMP/afile"
expect "output folder cannot be created" 1 "save-model-to: cannot create directory $TMP/afile/out" "$TMP/afile/out" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$TMP/afile/out"
# /proc is an existing directory in which nobody, not even root, can create a file.
expect "output folder not writable (/proc)" 1 "output folder /proc is not writable" "$TMP/none" -- \
    train "$TPL" "${DATA[@]}" --save-model-to /proc
if [ "$(id -u)" != 0 ]; then
    # (root ignores directory permissions, so this case only runs as a normal user)
    mkdir -p "$TMP/ro" && chmod 555 "$TMP/ro"
    expect "output folder not writable" 1 "not writable" "$TMP/ro" -- train "$TPL" "${DATA[@]}" --save-model-to "$TMP/ro"
    chmod 755 "$TMP/ro"
fi
[ -e "$OUT" ] && bad "a failed run created $OUT" || ok "no output folder was created by the failed runs"
# A pretrained backbone with a tensor of the right element count but another shape: refused
# before training by the checkpoint shape check, naming the key and both shapes.
/usr/bin/python3 -c "import sys, torch; torch.save({'backbone.features.init_block.conv.weight': torch.zeros(32, 27, 1, 1)}, sys.argv[1])" "$TMP/bb.pth"
expect "mis-shaped pretrained backbone" 1 "init_block.conv.weight (checkpoint \[32, 27, 1, 1\] vs model \[32, 3, 3, 3\])" "$TMP/out_bb" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$TMP/out_bb" params --model.pretrained_backbone "$TMP/bb.pth"
# The pretrained function needs the padding its weights were trained with.
expect "pretrained backbone without TF padding" 1 "was trained with TF SAME padding: set model.tf_padding: true" "$TMP/out_pad" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$TMP/out_pad" params --model.tf_padding false
[ ! -e "$TMP/out_pad" ] && ok "a run failing after the output folder was made removes that empty folder (issue 13 item 21)" \
    || bad "$TMP/out_pad left behind by a failed run"
# issue 13 item 12: an existing directory named X.pth is refused before any work
mkdir -p "$TMP/isdir.pth"
expect "--save-model-to an existing directory X.pth" 1 "isdir.pth is an existing directory, not a weights file" "$TMP/isdir.pth" -- \
    train "$TPL" "${DATA[@]}" --save-model-to "$TMP/isdir.pth" --enable-hpo
# issue 13 item 20: temporaries of a killed save (dead pid) are removed at start; a live pid's stay
mkdir -p "$TMP/out_none"
dead=999999; while kill -0 $dead 2>/dev/null; do dead=$((dead + 1)); done
: >"$TMP/out_none/weights.pth.tmp-$dead"; : >"$TMP/out_none/label_schema.json.tmp-$dead"; : >"$TMP/out_none/weights.pth.tmp-$$"
# `none` trains from scratch and says so.
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$TMP/out_none" params --model.pretrained_backbone none \
    --model.input_size 128x96 --learning_parameters.num_iters 1 --learning_parameters.batch_size 4 >"$TMP/none.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q '^init: random (model.pretrained_backbone: none)$' "$TMP/none.log"; then
    ok "model.pretrained_backbone none: trains from random initialisation and says so"
else
    bad "model.pretrained_backbone none: exit $rc, $(grep -m1 '^init' "$TMP/none.log")"
fi
if [ ! -e "$TMP/out_none/weights.pth.tmp-$dead" ] && [ ! -e "$TMP/out_none/label_schema.json.tmp-$dead" ] \
   && [ -e "$TMP/out_none/weights.pth.tmp-$$" ] && grep -q '^removed 2 temporary file(s) left by an interrupted earlier run' "$TMP/none.log"; then
    ok "stale temporaries of a dead pid removed at start (and said), a live pid's kept"
else
    bad "stale temporaries: $(ls "$TMP/out_none")"
fi
# issue 13 item 16: a training set without boxes is refused before training, naming the file
/usr/bin/python3 -c "import json, sys; d = json.load(open(sys.argv[1])); d['annotations'] = []; json.dump(d, open(sys.argv[2], 'w'))" \
    "$D/annotation_example_train.json" "$TMP/noboxes.json"
expect "training set without boxes" 1 "noboxes.json: no (non-crowd) boxes in 10 images" "$TMP/out_nob" -- \
    train "$TPL" --train-ann-files "$TMP/noboxes.json" --train-data-roots "$D/train" \
    --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" --save-model-to "$TMP/out_nob"
# issue 13 item 5: when label_schema.json cannot be written, weights.pth is not replaced either
cp "$TMP/out_none/weights.pth" "$TMP/weights_before.pth"; rm -f "$TMP/out_none/weights.pth.tmp-$$"
rm -f "$TMP/out_none/label_schema.json"; mkdir "$TMP/out_none/label_schema.json"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$TMP/out_none" params --model.pretrained_backbone none \
    --model.input_size 128x96 --learning_parameters.num_iters 1 --learning_parameters.batch_size 4 --model.seed 7 >"$TMP/pair.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && cmp -s "$TMP/weights_before.pth" "$TMP/out_none/weights.pth" && [ -z "$(find "$TMP/out_none" -name '*.tmp-*')" ]; then
    ok "labels cannot be written: exit 1, the old weights.pth untouched, no temporaries"
else
    bad "labels write failure: exit $rc, weights $(cmp -s "$TMP/weights_before.pth" "$TMP/out_none/weights.pth" && echo kept || echo replaced), $(ls "$TMP/out_none")"
fi
# issue 13 items 14, 15: a truncated JPEG and an annotation size that is not the file's are said, not silently trained on
mkdir -p "$TMP/trunc_imgs"; cp "$D"/train/* "$TMP/trunc_imgs/"
/usr/bin/python3 - "$D/annotation_example_train.json" "$TMP/trunc.json" "$TMP/trunc_imgs" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
a, b = d["images"][0], d["images"][1]
p = os.path.join(sys.argv[3], a["file_name"]); data = open(p, "rb").read(); open(p, "wb").write(data[:len(data) // 2])
b["width"], b["height"] = 640, 480
json.dump(d, open(sys.argv[2], "w"))
PY
"$OTE" train "$TPL" --train-ann-files "$TMP/trunc.json" --train-data-roots "$TMP/trunc_imgs" \
    --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" --save-model-to "$TMP/out_trunc" \
    params --model.input_size 128x96 --learning_parameters.num_iters 1 --learning_parameters.batch_size 4 >"$TMP/trunc.log" 2>&1
if grep -q '^warning: training images: 1 truncated image file(s), decoded with the missing part filled in (first: .*trunc_imgs/' "$TMP/trunc.log" \
   && grep -q "1 image(s) whose size differs from the annotation's width/height, boxes may be off (first: .*: annotation 640x480, file 1920x1080)" "$TMP/trunc.log"; then
    ok "truncated JPEG and annotation/file size mismatch are reported once after the epoch"
else
    bad "no warnings for a truncated JPEG / a size mismatch: $(grep -m2 warning "$TMP/trunc.log")"
fi
echo "garbage" >"$TMP/bad.pth"
expect "eval: unreadable checkpoint" 1 "$TMP/bad.pth" "$TMP/none" -- \
    eval "$TPL" --test-ann-files "$D/annotation_example_val.json" --test-data-roots "$D/val" --load-weights "$TMP/bad.pth"
expect "eval: missing template" 2 "template not found" "$TMP/none" -- \
    eval "$TMP/nope.yaml" --test-ann-files "$D/annotation_example_val.json" --test-data-roots "$D/val" --load-weights "$TMP/bad.pth"

"$OTE" train --help >"$TMP/help" 2>&1 && grep -q -- "--save-model-to" "$TMP/help" && grep -q "params" "$TMP/help" \
    && ok "train --help exits 0 and lists the options" || bad "train --help"
finish
