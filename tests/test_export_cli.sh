#!/usr/bin/env bash
# test_export_cli.sh - `ote export` end to end (issue 16): a 1-epoch model trained on the airport
# sample at 128x96 is exported; the files are there (model.onnx, label_schema.json copied from the
# weights, README.md naming the input and pre-processing); python3-onnx's
# onnx.checker.check_model(full_check=True) passes (skipped, with the reason printed, only if
# python3-onnx is missing); `ote eval` of model.onnx (OpenCV dnn) gives the same VOC mAP@0.5 and
# detection count as `ote eval` of weights.pth. Bad input - a --load-weights that is not a
# checkpoint, an input size that is not a multiple of 32, a DIR that cannot be created - exits 2
# with one stderr line naming it and leaves no model.onnx (nor a temporary). Also `ote eval` of a
# model.onnx with a different model.input_size is refused, and `ote predict` of model.onnx draws the
# same boxes as of weights.pth. One line per check; exit 1 on failure.
. "$(dirname "$0")/lib.sh"
OTE="${OTE_BIN:-build/ote}"
SRC="${OTE_SRC:-.}"
SHARED="${OTE_SHARED:-../shared}"
TPL="$SRC/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
D="$SHARED/data/airport"

"$OTE" train "$TPL" --train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train" \
    --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" --save-model-to "$TMP/w" \
    params --model.input_size 128x96 --learning_parameters.num_iters 1 --learning_parameters.batch_size 4 \
    >"$TMP/train.log" 2>&1 || { echo "FAIL - tiny training: $(tail -1 "$TMP/train.log")"; exit 1; }

"$OTE" export "$TPL" --load-weights "$TMP/w/weights.pth" --save-model-to "$TMP/x" >"$TMP/export.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -s "$TMP/x/model.onnx" ] && cmp -s "$TMP/w/label_schema.json" "$TMP/x/label_schema.json" \
   && grep -q '1x3x96x128' "$TMP/x/README.md" && grep -q 'RGB' "$TMP/x/README.md" && grep -q 'divide by 255' "$TMP/x/README.md" \
   && [ -z "$(find "$TMP/x" -name '*.tmp*')" ]; then
    ok "export: model.onnx, the weights' label_schema.json, README.md (1x3x96x128, RGB, /255); $(cat "$TMP/export.log")"
else
    bad "export: exit $rc: $(cat "$TMP/export.log"); files: $(ls "$TMP/x" 2>&1 | tr '\n' ' ')"
fi

if /usr/bin/python3 -c 'import onnx' 2>/dev/null; then
    out=$(/usr/bin/python3 - "$TMP/x/model.onnx" <<'PY'
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
outs = [o.name for o in m.graph.output]
assert outs == ["%s_p%d" % (k, l) for k in ("cls", "reg", "ctr") for l in range(3, 8)], outs
assert [(o.domain, o.version) for o in m.opset_import] == [("", 10)], m.opset_import
dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
assert dims == [1, 3, 96, 128], dims
ops = sorted({n.op_type for n in m.graph.node})
print("opset 10, %d nodes, ops %s" % (len(m.graph.node), " ".join(ops)))
PY
    ) && ok "onnx.checker.check_model(full_check=True) passes: $out" || bad "onnx checker: $out"
else
    echo "skip - onnx.checker: python3-onnx is not installed (tools/scripts/install-deps.sh --test installs it)"
fi

# A model of 1 tiny epoch scores below the 0.05 threshold everywhere (0 detections would make the
# comparison vacuous): with torch, atss_cls.bias + 4 gives thousands of boxes through NMS.
W="$TMP/w/weights.pth" X="$TMP/x/model.onnx"
if /usr/bin/python3 - "$TMP/w" <<'PY' 2>"$TMP/hot.err"
import sys, torch
d = torch.load(sys.argv[1] + "/weights.pth", map_location="cpu")
d["model"]["bbox_head.atss_cls.bias"] += 4.0
torch.save(d, sys.argv[1] + "/hot.pth")
PY
then
    cp "$TMP/w/label_schema.json" "$TMP/w/hot.label_schema.json"
    if "$OTE" export "$TPL" --load-weights "$TMP/w/hot.pth" --save-model-to "$TMP/xh" >"$TMP/export_hot.log" 2>&1; then
        W="$TMP/w/hot.pth" X="$TMP/xh/model.onnx"
    else
        bad "export of hot.pth: $(tail -1 "$TMP/export_hot.log")"
    fi
else
    echo "note - python3-torch unavailable ($(tail -1 "$TMP/hot.err")): comparing the plain 1-epoch model"
fi
ev() { "$OTE" eval "$TPL" --load-weights "$1" --test-ann-files "$D/annotation_example_val.json" --test-data-roots "$D/val" "${@:2}"; }
ev "$W" >"$TMP/eval_pth.log" 2>&1; r1=$?
ev "$X" >"$TMP/eval_onnx.log" 2>&1; r2=$?
m1=$(grep -m1 'VOC mAP@0.5' "$TMP/eval_pth.log" | sed 's/.*(\(.*\))$/\1/')
m2=$(grep -m1 'VOC mAP@0.5' "$TMP/eval_onnx.log" | sed 's/.*(\(.*\))$/\1/')
n1=$(grep -m1 'detections:' "$TMP/eval_pth.log" | sed 's/.*detections: //')
n2=$(grep -m1 'detections:' "$TMP/eval_onnx.log" | sed 's/.*detections: //')
# everything printed after the "model ..." line (per-class APs and dets, 12 COCO stats) must match
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ -n "$m1" ] && [ -n "$n1" ] && [ "$n1" = "$n2" ] \
   && cmp -s <(tail -n +2 "$TMP/eval_pth.log") <(tail -n +2 "$TMP/eval_onnx.log") \
   && /usr/bin/python3 -c "import sys; sys.exit(0 if abs(float('$m1') - float('$m2')) <= 1e-4 else 1)"; then
    ok "ote eval: $(basename "$(dirname "$X")")/model.onnx (OpenCV dnn) VOC mAP $m2, $(basename "$W") $m1; $n2 vs $n1 detections"
else
    bad "ote eval: exit $r1/$r2, mAP '$m1' vs '$m2', detections '$n1' vs '$n2': $(tail -1 "$TMP/eval_onnx.log")"
fi
ev "$TMP/x/model.onnx" params --model.input_size 160x128 >"$TMP/eval_size.log" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q 'exported for input size 128x96' "$TMP/eval_size.log"; then
    ok "ote eval of model.onnx at another model.input_size is refused: $(tail -1 "$TMP/eval_size.log")"
else
    bad "ote eval at another size: exit $rc: $(tail -1 "$TMP/eval_size.log")"
fi

# ote predict of model.onnx (OpenCV dnn) and of its weights.pth on the same images: the same boxes
# (results files equal to 1e-3 px / 1e-5 score), drawn images of the original size, class names
# from the export's label_schema.json
pr() { "$OTE" predict "$TPL" --load-weights "$1" --images "$D/val" --save-images "$2" --save-detections "$2.json"; }
pr "$W" "$TMP/pred_pth" >"$TMP/pred_pth.log" 2>&1; r1=$?
pr "$X" "$TMP/pred_onnx" >"$TMP/pred_onnx.log" 2>&1; r2=$?
cmpres=$(/usr/bin/python3 - "$TMP/pred_pth.json" "$TMP/pred_onnx.json" <<'PY' 2>&1
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda d: (d["image_id"], d["category_id"], -d["score"])
a, b = sorted(a, key=key), sorted(b, key=key)
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
worst = 0.0
for x, y in zip(a, b):
    assert x["image_id"] == y["image_id"] and x["category_id"] == y["category_id"], (x, y)
    worst = max([worst, abs(x["score"] - y["score"]) * 100] + [abs(p - q) for p, q in zip(x["bbox"], y["bbox"])])
assert worst <= 1e-3, worst
print("%d detections, largest difference %.2g" % (len(a), worst))
PY
)
npng=$(find "$TMP/pred_onnx" -name '*.png' -o -name '*.jpg' | wc -l)
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$npng" -gt 0 ] && grep -q "^[0-9].*" <<<"$cmpres" && ! grep -q "Error" <<<"$cmpres"; then
    ok "ote predict --load-weights model.onnx: $npng drawn images, same boxes as the .pth ($cmpres)"
else
    bad "ote predict with model.onnx: exit $r1/$r2, $npng images, $cmpres; $(tail -2 "$TMP/pred_onnx.log")"
fi

# expect NAME PATTERN OUTDIR -- ARGS...: exit 2, one stderr line matching PATTERN, no model.onnx
expect() {
    local name="$1" pat="$2" out="$3"
    shift 4
    "$OTE" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    local rc=$? lines left=""
    lines=$(wc -l <"$TMP/stderr")
    if [ -e "$out" ]; then left=$(find "$out" -name 'model.onnx*' | head -3); fi
    if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" "$TMP/stderr" && [ -z "$left" ]; then
        ok "$name: exit 2: $(cat "$TMP/stderr")"
    else
        bad "$name: exit $rc (want 2), $lines stderr lines, pattern '$pat', left: '$left': $(head -3 "$TMP/stderr")"
    fi
}
echo "not a checkpoint" >"$TMP/junk.pth"
expect "--load-weights not a checkpoint" "junk.pth" "$TMP/bad1" -- export "$TPL" --load-weights "$TMP/junk.pth" --save-model-to "$TMP/bad1"
expect "--load-weights missing" "nope.pth" "$TMP/bad1" -- export "$TPL" --load-weights "$TMP/nope.pth" --save-model-to "$TMP/bad1"
expect "input size not a multiple of 32" "model.input_size" "$TMP/bad2" -- \
    export "$TPL" --load-weights "$TMP/w/weights.pth" --save-model-to "$TMP/bad2" params --model.input_size 100x96
: >"$TMP/afile"
expect "DIR cannot be created" "afile/sub" "$TMP/afile" -- export "$TPL" --load-weights "$TMP/w/weights.pth" --save-model-to "$TMP/afile/sub"
[ ! -e "$TMP/bad1" ] && [ ! -e "$TMP/bad2" ] && ok "failed exports left no output folder" || bad "failed exports left $(ls -d "$TMP"/bad* 2>/dev/null)"
finish
