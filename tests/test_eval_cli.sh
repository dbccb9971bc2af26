#!/usr/bin/env bash
# ote eval --detections: converts shared evaluator fixtures (gt + detections) into a COCO gt file
# and a COCO results file, runs the CLI, and compares the printed and saved numbers with the
# fixture's expected pycocotools / mmdet values (saved numbers exactly, printed ones as rounded
# by the same format). Also: exit 2 for usage errors, 1 for runtime errors with one stderr line
# naming the file, and no output file (or temporary) left behind by a failed run.
set -u
. "$(dirname "$0")/lib.sh"
fx="${OTE_SHARED:-../shared}/fixtures/eval"
[ -d "$fx" ] || { bad "fixtures directory $fx missing"; finish; }

# fixture -> gt.json (COCO ground truth with file names) + res.json (COCO results, list order kept)
convert() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
f, out = sys.argv[1], sys.argv[2]
d = json.load(open(f))
imgs = [dict(i, file_name="%d.jpg" % i["id"]) for i in d["images"]]
json.dump({"images": imgs, "categories": d["categories"], "annotations": d["annotations"]},
          open(out + "/gt.json", "w"))
json.dump(d["detections"], open(out + "/res.json", "w"))
PY
}

# compare perf.json with the fixture: voc key, coco key (exact float equality)
compare() {
    /usr/bin/python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, sys
perf, fixture, voc_key, coco_key = sys.argv[1:5]
p = json.load(open(perf)); e = json.load(open(fixture))["expected"]
ok = p["voc_map_050"] == e[voc_key] and p["coco_stats"] == e[coco_key]
per = e["voc_ap_per_class" + ("_crowd_absent" if voc_key.endswith("crowd_absent") else "")]
for name, c in per.items():
    q = p["voc_ap_per_class"][name]
    ok = ok and q["ap"] == c["ap"] and q["num_gts"] == c["num_gts"] and q["num_dets"] == c["num_dets"]
if not ok:
    print("  got", p["voc_map_050"], p["coco_stats"], "\n  want", e[voc_key], e[coco_key])
sys.exit(0 if ok else 1)
PY
}

# the printed lines: VOC mAP to 4 decimals and the pycocotools summary lines to 3
printed() {
    /usr/bin/python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, sys
out, fixture, voc_key, coco_key = sys.argv[1:5]
text = open(out).read(); e = json.load(open(fixture))["expected"]
ok = ("): %.4f" % e[voc_key]) in text
s = e[coco_key]
ok = ok and (" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = %0.3f" % s[0]) in text
ok = ok and (" Average Precision  (AP) @[ IoU=0.50      | area=   all" in text)
ok = ok and all(("] = %0.3f" % v) in text for v in s)
ok = ok and text.count(" Average Recall     (AR) @[") == 6 and text.count(" Average Precision  (AP) @[") == 6
sys.exit(0 if ok else 1)
PY
}

for name in 04_crowd 11_random_b 08_maxdets; do
    d="$TMP/$name"; mkdir -p "$d"
    convert "$fx/$name.json" "$d"
    "$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$d/res.json" --crowd ignored \
        --save-performance "$d/perf.json" >"$d/out.txt" 2>"$d/err.txt"
    check "$name: exit 0" "[ $? -eq 0 ]"
    check "$name: saved voc_map_050 / coco_stats equal the fixture exactly" \
        "compare '$d/perf.json' '$fx/$name.json' voc_map_050 coco_stats"
    check "$name: printed VOC mAP and pycocotools summary lines" \
        "printed '$d/out.txt' '$fx/$name.json' voc_map_050 coco_stats"
    "$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$d/res.json" \
        --coco-max-dets 100,300,1000 --save-performance "$d/perf2.json" >"$d/out2.txt" 2>&1
    check "$name: default crowd mode (absent) and mmdet maxDets: exit 0" "[ $? -eq 0 ]"
    check "$name: crowd-absent VOC mAP and coco_stats_mmdet equal the fixture exactly" \
        "compare '$d/perf2.json' '$fx/$name.json' voc_map_050_crowd_absent coco_stats_mmdet"
done
# issue 13 item 22: --save-performance files get the same mode as every other output (0666 - umask)
touch "$TMP/mode_ref"
check "performance file mode $(stat -c %a "$TMP/mode_ref") like any new file (not 0600)" \
    "[ \"\$(stat -c %a '$TMP/11_random_b/perf.json')\" = \"\$(stat -c %a '$TMP/mode_ref')\" ]"
check "no temporary files left after successful saves" "[ -z \"\$(find '$TMP' -name '*.tmp-*')\" ]"

d="$TMP/11_random_b"
"$OTE_BIN" eval --help >"$TMP/help.txt"; check "--help exits 0" "[ $? -eq 0 ] && grep -q -- --detections '$TMP/help.txt'"
"$OTE_BIN" --help | grep -q "^  eval "; check "eval is listed in 'ote --help'" "[ $? -eq 0 ]"

"$OTE_BIN" eval --test-ann-files "$d/gt.json" 2>"$TMP/e"; rc=$?
check "missing --detections exits 2 with one line" "[ $rc -eq 2 ] && [ \$(wc -l <'$TMP/e') -eq 1 ]"
"$OTE_BIN" eval --detections "$d/res.json" 2>"$TMP/e"; rc=$?
check "missing --test-ann-files exits 2" "[ $rc -eq 2 ] && [ \$(wc -l <'$TMP/e') -eq 1 ]"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$d/res.json" --bogus 1 2>"$TMP/e"; rc=$?
check "unknown option exits 2 naming it" "[ $rc -eq 2 ] && grep -q -- --bogus '$TMP/e'"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections 2>"$TMP/e"; rc=$?
check "option without a value exits 2" "[ $rc -eq 2 ]"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$d/res.json" --crowd maybe 2>"$TMP/e"; rc=$?
check "bad --crowd value exits 2" "[ $rc -eq 2 ]"

out="$TMP/never.json"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$TMP/missing.json" --save-performance "$out" \
    >/dev/null 2>"$TMP/e"; rc=$?
check "missing results file exits 1 with one line naming it" \
    "[ $rc -eq 1 ] && [ \$(wc -l <'$TMP/e') -eq 1 ] && grep -q missing.json '$TMP/e'"
check "no output file after a failed run" "[ ! -e '$out' ] && [ -z \"\$(ls '$TMP' | grep never)\" ]"
"$OTE_BIN" eval --test-ann-files "$TMP/nogt.json" --detections "$d/res.json" 2>"$TMP/e"; rc=$?
check "missing ground-truth file exits 1 naming it" "[ $rc -eq 1 ] && grep -q nogt.json '$TMP/e'"
printf '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},\n {oops}]' >"$TMP/bad.json"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$TMP/bad.json" --save-performance "$out" \
    >/dev/null 2>"$TMP/e"; rc=$?
check "malformed results JSON exits 1 with one line naming the file and line" \
    "[ $rc -eq 1 ] && [ \$(wc -l <'$TMP/e') -eq 1 ] && grep -q 'bad.json.*line 2' '$TMP/e'"
check "no output file after malformed input" "[ ! -e '$out' ]"
# issue 13 item 19: the results-file form scores ground truth whose images have no file_name
/usr/bin/python3 -c "import json, sys; d = json.load(open(sys.argv[1])); [im.pop('file_name', None) for im in d['images']]; json.dump(d, open(sys.argv[2], 'w'))" \
    "$d/gt.json" "$TMP/gt_nofn.json"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$d/res.json" 2>/dev/null | grep '^VOC mAP' >"$TMP/m1"
"$OTE_BIN" eval --test-ann-files "$TMP/gt_nofn.json" --detections "$d/res.json" 2>"$TMP/e" | grep '^VOC mAP' >"$TMP/m2"; rc=${PIPESTATUS[0]}
check "ground truth without file_name: exit 0, same mAP as with names" "[ $rc -eq 0 ] && [ -s '$TMP/m1' ] && cmp -s '$TMP/m1' '$TMP/m2'"
# issue 13 items 2, 18: ground truth without categories is an error naming the file and key, not mAP 0
printf '{"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], "annotations": [], "categories": []}' >"$TMP/nocat.json"
printf '[]' >"$TMP/empty_res.json"
"$OTE_BIN" eval --test-ann-files "$TMP/nocat.json" --detections "$TMP/empty_res.json" >/dev/null 2>"$TMP/e"; rc=$?
check "ground truth with no categories exits 1 with one line naming file and key" \
    "[ $rc -eq 1 ] && [ \$(wc -l <'$TMP/e') -eq 1 ] && grep -q \"nocat.json: 'categories' is empty\" '$TMP/e'"
printf '[{"image_id": 123456, "category_id": 0, "bbox": [1, 2, 3, 4], "score": 0.5}]' >"$TMP/unk.json"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$TMP/unk.json" 2>"$TMP/e"; rc=$?
check "unknown image_id exits 1 naming entry 0" "[ $rc -eq 1 ] && grep -q 'entry 0: image_id 123456' '$TMP/e'"
"$OTE_BIN" eval --test-ann-files "$d/gt.json" --detections "$d/res.json" \
    --save-performance /proc/nonexistent/perf.json >/dev/null 2>"$TMP/e"; rc=$?
check "unwritable --save-performance exits 1" "[ $rc -eq 1 ] && [ \$(wc -l <'$TMP/e') -eq 1 ]"
"$OTE_BIN" eval template.yaml --load-weights w.pth --test-ann-files "$d/gt.json" \
    --test-data-roots "$TMP" 2>"$TMP/e"; rc=$?
check "model form with a missing template: one line, exit 2" "[ $rc -eq 2 ] && [ \$(wc -l <'$TMP/e') -eq 1 ] && grep -q 'template.yaml' '$TMP/e'"
finish
