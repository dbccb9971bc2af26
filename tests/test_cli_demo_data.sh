#!/usr/bin/env bash
# ote make-demo-data: writes a valid COCO set (every PNG exists with the JSON size, boxes inside images and
# disjoint, 1-3 per image, 3 classes),
# deterministically for a seed; bad usage exits 2.
set -u
. "$(dirname "$0")/lib.sh"
"$OTE_BIN" make-demo-data "$TMP/a" --train 6 --val 3 --seed 3 >/dev/null; check "exit 0" "[ $? -eq 0 ]"
"$OTE_BIN" make-demo-data "$TMP/b" --train 6 --val 3 --seed 3 >/dev/null
check "deterministic for a seed" "diff -r '$TMP/a' '$TMP/b' >/dev/null"
"$OTE_BIN" make-demo-data "$TMP/c" --train 6 --val 3 --seed 4 >/dev/null
check "another seed differs" "! diff -r '$TMP/a' '$TMP/c' >/dev/null"
/usr/bin/python3 - "$TMP/a" <<'PY'; check "annotations are consistent" "[ $? -eq 0 ]"
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
        w, h = struct.unpack_from(">II", b, 16)  # PNG IHDR
        assert b[:8] == b"\x89PNG\r\n\x1a\n" and (w, h) == (im["width"], im["height"]), im
    per_img = {}
    for a in j["annotations"]:
        im = ids[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"], a
        assert min(w, h) >= 20, a  # shapes are drawn 40-120 px a side (a triangle's box is its extent)
        per_img.setdefault(a["image_id"], []).append((x, y, x + w, y + h))
    for boxes in per_img.values():  # shapes never overlap
        assert 1 <= len(boxes) <= 3, boxes
        for i in range(len(boxes)):
            for k in range(i):
                a, b = boxes[i], boxes[k]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
PY
"$OTE_BIN" make-demo-data 2>/dev/null; check "missing DIR exits 2" "[ $? -eq 2 ]"
"$OTE_BIN" make-demo-data "$TMP/d" --bogus 2>/dev/null; check "unknown option exits 2" "[ $? -eq 2 ]"
"$OTE_BIN" make-demo-data /proc/nonexistent/x 2>/dev/null; check "unwritable DIR exits 1" "[ $? -eq 1 ]"
finish
