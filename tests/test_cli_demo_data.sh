#!/usr/bin/env bash
# ote make-demo-data: writes a valid COCO set (every image exists, boxes inside images, 3 classes),
# deterministically for a seed; bad usage exits 2.
set -u
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$OTE_BIN" make-demo-data "$tmp/a" --train 6 --val 3 --seed 3 >/dev/null; check "exit 0" "[ $? -eq 0 ]"
"$OTE_BIN" make-demo-data "$tmp/b" --train 6 --val 3 --seed 3 >/dev/null
check "deterministic for a seed" "diff -r '$tmp/a' '$tmp/b' >/dev/null"
"$OTE_BIN" make-demo-data "$tmp/c" --train 6 --val 3 --seed 4 >/dev/null
check "another seed differs" "! diff -r '$tmp/a' '$tmp/c' >/dev/null"
/usr/bin/python3 - "$tmp/a" <<'PY'; check "annotations are consistent" "[ $? -eq 0 ]"
import json, os, struct, sys
d = sys.argv[1]
for split, n in (("train", 6), ("val", 3)):
    j = json.load(open(f"{d}/annotations/{split}.json"))
    assert len(j["images"]) == n, split
    assert [c["name"] for c in j["categories"]] == ["rectangle", "ellipse", "triangle"]
    ids = {i["id"]: i for i in j["images"]}
    assert len(j["annotations"]) >= n
    for im in j["images"]:
        b = open(f"{d}/{split}/{im['file_name']}", "rb").read()
        w, h = struct.unpack_from("<ii", b, 18)
        assert b[:2] == b"BM" and (w, h) == (im["width"], im["height"]), im
    for a in j["annotations"]:
        im = ids[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"], a
PY
"$OTE_BIN" make-demo-data 2>/dev/null; check "missing DIR exits 2" "[ $? -eq 2 ]"
"$OTE_BIN" make-demo-data "$tmp/d" --bogus 2>/dev/null; check "unknown option exits 2" "[ $? -eq 2 ]"
"$OTE_BIN" make-demo-data /proc/nonexistent/x 2>/dev/null; check "unwritable DIR exits 1" "[ $? -eq 1 ]"
exit $fail
