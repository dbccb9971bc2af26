#!/usr/bin/env bash
# `cmake --install` (issue 12 item 5): into a temporary prefix it puts bin/ote and
# share/ote-c/models/{templates,pretrained}; the installed binary runs, and the installed template
# finds the installed pretrained backbone through its relative path: a 1-epoch training on 4
# airport images from the installed template prints "init: backbone from <prefix>/share/...".
set -u
. "$(dirname "$0")/lib.sh"
SHARED="${OTE_SHARED:-../shared}"
BUILD="${OTE_BUILD:-build}"
P="$TMP/prefix"
cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1
check "cmake --install exits 0" "[ $? -eq 0 ]"
check "bin/ote installed and runs" "'$P/bin/ote' --version >/dev/null 2>&1"
TPL="$P/share/ote-c/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
check "template.yaml and hpo_config.yaml installed" "[ -s '$TPL' ] && [ -s '$(dirname "$TPL")/hpo_config.yaml' ]"
check "pretrained backbone and its LICENSE installed" \
  "[ -s '$P/share/ote-c/models/pretrained/mobilenet_v2_1.0_224_ptq.tflite' ] && [ -s '$P/share/ote-c/models/pretrained/LICENSE' ]"
D="$SHARED/data/airport"
python3 - "$D/annotation_example_train.json" "$TMP/four.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
keep = {im["id"] for im in d["images"][:4]}
d["images"] = [im for im in d["images"] if im["id"] in keep]
d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
json.dump(d, open(sys.argv[2], "w"))
PY
"$P/bin/ote" train "$TPL" --train-ann-files "$TMP/four.json" --train-data-roots "$D/train" \
    --val-ann-files "$TMP/four.json" --val-data-roots "$D/train" --save-model-to "$TMP/out" \
    params --model.input_size 128x96 --learning_parameters.num_iters 1 --learning_parameters.batch_size 2 \
    >"$TMP/train.log" 2>"$TMP/train.err"
rc=$?
check "1-epoch training from the installed template: exit 0 (got $rc: $(head -2 "$TMP/train.err" | tr '\n' ' '))" "[ $rc -eq 0 ]"
check "it starts from the installed backbone" "grep -q '^init: backbone from $P/share/ote-c/models/templates/gen3_mobilenetV2_ATSS/../../pretrained/mobilenet_v2_1.0_224_ptq.tflite' '$TMP/train.log'"
finish
