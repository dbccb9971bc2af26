#!/usr/bin/env bash
# test_predict_cli.sh - `ote predict` and the training samples end to end (issue 14 section 3):
#   1. a 3-epoch tiny training on `ote make-demo-data` images (16 train, 6 val, 128x96) writes
#      OUT/samples/ with the validation images (6: fewer than 8), each decoding at its original width
#      and height plus the key strip;
#      a DIR/X.pth model gets DIR/X.samples/;
#   2. `ote predict --images` on a folder (5 demo images + one broken file) and one more file:
#      the drawn images exist, decode, keep the original size and differ from the input exactly
#      when boxes were drawn; the
#      results file is valid JSON whose image ids are those of the readable images (positions in
#      the sorted list); the broken and a missing file are one stderr line each naming them, the
#      others are still done, the exit code is 1; the summary line counts them;
#   3. the COCO form (--test-ann-files) predicts like `ote eval`'s path and draws the ground truth;
#   4. checked before any work (exit 2, nothing written): missing weights, missing template, an
#      empty folder, no output option, a drawn image that would replace its input.
# Image checks use python3 (zlib + struct: PNG decoding without extra modules). One line per check.
# About 25 s with one thread.
. "$(dirname "$0")/lib.sh"
OTE="${OTE_BIN:-build/ote}"
SRC="${OTE_SRC:-.}"
TPL="$SRC/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# PNG decoding without extra Python modules (zlib + the five PNG filters), for 8-bit RGB/RGBA/grey.
cat >"$TMP/png.py" <<'EOF'
import struct, sys, zlib
def decode(p):
    b = open(p, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    i, idat = 8, b""
    while i < len(b):
        n, t = struct.unpack(">I4s", b[i:i + 8])
        d = b[i + 8:i + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", d[:10])
        elif t == b"IDAT":
            idat += d
        elif t == b"IEND":
            break
        i += 12 + n
    assert depth == 8, "depth %d" % depth
    bpp = {2: 3, 6: 4, 0: 1}[ctype]
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    assert len(raw) == h * (stride + 1), "short image data"
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            c = prev[x - bpp] if x >= bpp else 0
            u = prev[x]
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + u) & 255
            elif f == 3: line[x] = (line[x] + (a + u) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(u - c), abs(a - c), abs(a + u - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else u if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows
if __name__ == "__main__":
    if sys.argv[1] == "size":          # size FILE...: "FILE W H" each; exit 1 if one does not decode
        for p in sys.argv[2:]:
            try:
                w, h, _ = decode(p)
                print(p, w, h)
            except Exception as e:
                print(p, "UNDECODABLE", e)
                sys.exit(1)
    elif sys.argv[1] == "differ":      # differ A B: exit 0 if A's top rows (B's height) differ from B's
        _, hb, rb = decode(sys.argv[3])
        _, _, ra = decode(sys.argv[2])
        sys.exit(0 if ra[:hb] != rb else 1)
EOF
png_check() { python3 "$TMP/png.py" size "$@"; }

"$OTE" make-demo-data "$TMP/data" --train 16 --val 6 >/dev/null 2>&1 || bad "make-demo-data"
D="$TMP/data"
DATA=(--train-ann-files "$D/annotations/train.json" --train-data-roots "$D/train"
      --val-ann-files "$D/annotations/val.json" --val-data-roots "$D/val")
# 3 epochs: enough for detections above the model's 0.05 score floor (1 epoch gives none)
PARAMS=(params --model.input_size 128x96 --learning_parameters.num_iters 3 --learning_parameters.batch_size 8
        --learning_parameters.learning_rate_warmup_iters 2)

# ---- 1. training writes the samples
OUT="$TMP/model"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$OUT" "${PARAMS[@]}" >"$TMP/train.log" 2>"$TMP/train.err"
rc=$?
[ $rc -eq 0 ] && ok "tiny training: exit 0" || bad "training exit $rc: $(head -3 "$TMP/train.err")"
n_samples=$(ls "$OUT/samples" 2>/dev/null | wc -l)
[ "$n_samples" = 6 ] && ok "OUT/samples/ holds the 6 validation images (at most 8)" || bad "OUT/samples has $n_samples files"
grep -q "^drew 6 validation images .* into $OUT/samples/" "$TMP/train.log" && ok "training says where the samples are" \
    || bad "no 'drew ... samples' line"
if png_check "$OUT"/samples/*.png >"$TMP/samples.txt"; then
    sizes_ok=1
    while read -r p w h; do
        f=$(basename "$p")
        want=$(python3 -c "import json,sys; d=json.load(open('$D/annotations/val.json')); im=[i for i in d['images'] if i['file_name'].endswith('$f')][0]; print(im['width'], im['height'])")
        set -- $want
        # the original image plus the key strip below it (one row of tags: 10-40 px)
        [ "$w" = "$1" ] && [ "$h" -gt $(( $2 + 10 )) ] && [ "$h" -lt $(( $2 + 40 )) ] || sizes_ok=0
    done <"$TMP/samples.txt"
    [ $sizes_ok = 1 ] && ok "every sample decodes: original width, original height + a key strip" \
        || bad "sample sizes: $(cat "$TMP/samples.txt")"
else
    bad "a sample does not decode: $(tail -1 "$TMP/samples.txt")"
fi
# the samples have the ground truth drawn: their image part differs from the validation image
f1=$(ls "$OUT/samples" | head -1)
python3 "$TMP/png.py" differ "$OUT/samples/$f1" "$D/val/$f1" && ok "a sample's image part differs from its validation image (boxes drawn)" \
    || bad "sample $f1 shows its input unchanged"

# ---- 2. --images on a folder and a file, with a broken and a missing file
IN="$TMP/in"
mkdir -p "$IN"
for i in 1 2 3 4 5; do cp "$D/val/val_000$i.png" "$IN/"; done
printf 'not an image' >"$IN/broken.png"
"$OTE" predict "$TPL" --load-weights "$OUT/weights.pth" --images "$IN" "$D/val/val_0006.png" "$TMP/missing.jpg" \
    --save-images "$TMP/drawn" --save-detections "$TMP/dets.json" >"$TMP/pred.log" 2>"$TMP/pred.err"
rc=$?
[ $rc -eq 1 ] && ok "some images unreadable: exit 1" || bad "exit $rc (expected 1): $(head -3 "$TMP/pred.err")"
[ "$(grep -c 'broken.png' "$TMP/pred.err")" = 1 ] && ok "the broken file: one line naming it" || bad "stderr: $(cat "$TMP/pred.err")"
[ "$(grep -c 'missing.jpg' "$TMP/pred.err")" = 1 ] && ok "the missing file: one line naming it" || bad "stderr: $(cat "$TMP/pred.err")"
[ "$(wc -l <"$TMP/pred.err")" = 2 ] && ok "stderr has just those two lines" || bad "stderr: $(cat "$TMP/pred.err")"
grep -q "^predicted 6 of 8 images in .* (2 failed, named above): .* boxes drawn" "$TMP/pred.log" \
    && ok "summary line: 6 of 8 predicted, 2 failed" || bad "summary: $(tail -1 "$TMP/pred.log")"
grep -q "^\[1/8\] $IN/broken.png" "$TMP/pred.log" && bad "broken file listed as predicted" || ok "broken file not listed as predicted"
n_drawn=$(ls "$TMP/drawn" 2>/dev/null | wc -l)
[ "$n_drawn" = 6 ] && ok "6 drawn images written" || bad "$n_drawn drawn images: $(ls "$TMP/drawn" 2>/dev/null)"
if png_check "$TMP"/drawn/*.png >"$TMP/drawn.txt"; then
    sizes_ok=1
    while read -r p w h; do
        f=$(basename "$p")
        src="$IN/$f"; [ -f "$src" ] || src="$D/val/$f"
        want=$(png_check "$src" | cut -d' ' -f2-)
        [ "$w $h" = "$want" ] || sizes_ok=0
    done <"$TMP/drawn.txt"
    [ $sizes_ok = 1 ] && ok "every drawn image decodes at the original size" || bad "drawn sizes: $(cat "$TMP/drawn.txt")"
else
    bad "a drawn image does not decode: $(tail -1 "$TMP/drawn.txt")"
fi
# an image listed with N > 0 boxes differs from its input, one with 0 boxes is pixel-identical
draw_ok=1; n_with=0
while read -r line; do
    src=$(echo "$line" | sed -n 's/^\[[0-9]*\/8\] \(.*\): \([0-9]*\) box.*/\1/p')
    nb=$(echo "$line" | sed -n 's/^\[[0-9]*\/8\] .*: \([0-9]*\) box.*/\1/p')
    [ -n "$src" ] || continue
    python3 "$TMP/png.py" differ "$TMP/drawn/$(basename "$src")" "$src"
    d=$?
    if [ "$nb" -gt 0 ]; then n_with=$((n_with + 1)); [ $d -eq 0 ] || draw_ok=0; else [ $d -eq 1 ] || draw_ok=0; fi
done <"$TMP/pred.log"
[ $draw_ok = 1 ] && ok "drawn images differ from their inputs exactly when boxes were drawn ($n_with of 6 with boxes)" \
    || bad "drawn pixels do not match the listed box counts: $(cat "$TMP/pred.log")"
# sorted folder: broken.png (1), val_0001..5 (2..6), then val_0006 (7), missing.jpg (8)
python3 - "$TMP/dets.json" <<'EOF' && ok "results JSON valid; image ids are the readable images' positions (2..7)" || bad "results JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, list) and d, "empty or not a list"
ids = {x["image_id"] for x in d}
assert ids <= {2, 3, 4, 5, 6, 7} and len(ids) >= 3, "ids %s" % sorted(ids)
for x in d:
    assert x["category_id"] in (1, 2, 3) and len(x["bbox"]) == 4 and 0 <= x["score"] <= 1, x
    assert x["bbox"][2] >= 0 and x["bbox"][3] >= 0, x
EOF

# ---- 3. the COCO form: same detections as the COCO images give, ground truth drawn
"$OTE" predict "$TPL" --load-weights "$OUT/weights.pth" --test-ann-files "$D/annotations/val.json" \
    --test-data-roots "$D/val" --save-images "$TMP/gt" --save-detections "$TMP/dets_coco.json" >"$TMP/coco.log" 2>&1
rc=$?
[ $rc -eq 0 ] && ok "COCO form: exit 0" || bad "COCO form exit $rc: $(tail -2 "$TMP/coco.log")"
[ "$(ls "$TMP/gt" 2>/dev/null | wc -l)" = 6 ] && ok "COCO form: 6 drawn images" || bad "COCO form images: $(ls "$TMP/gt")"
cmp -s "$TMP/gt/val_0001.png" "$OUT/samples/val_0001.png" 2>/dev/null || [ ! -f "$OUT/samples/val_0001.png" ] \
    && ok "COCO form draws as the training samples do (identical file when both have the image)" || bad "COCO form image differs from the sample"

# ---- 4. checked before any work
"$OTE" predict "$TPL" --load-weights "$TMP/nope.pth" --images "$IN" --save-images "$TMP/x1" >/dev/null 2>"$TMP/e1"
rc=$?
[ $rc -eq 2 ] && grep -q "nope.pth" "$TMP/e1" && [ ! -e "$TMP/x1" ] && ok "missing weights: exit 2, named, nothing written" \
    || bad "missing weights: exit $rc: $(cat "$TMP/e1")"
"$OTE" predict "$TMP/none.yaml" --load-weights "$OUT/weights.pth" --images "$IN" --save-images "$TMP/x2" >/dev/null 2>"$TMP/e2"
rc=$?
[ $rc -eq 2 ] && grep -q "none.yaml" "$TMP/e2" && [ ! -e "$TMP/x2" ] && ok "missing template: exit 2, named" || bad "missing template: exit $rc: $(cat "$TMP/e2")"
mkdir -p "$TMP/empty"
"$OTE" predict "$TPL" --load-weights "$OUT/weights.pth" --images "$TMP/empty" --save-images "$TMP/x3" >/dev/null 2>"$TMP/e3"
rc=$?
[ $rc -eq 2 ] && grep -q "no image files .* $TMP/empty" "$TMP/e3" && ok "folder without images: exit 2, named" || bad "empty folder: exit $rc: $(cat "$TMP/e3")"
"$OTE" predict "$TPL" --load-weights "$OUT/weights.pth" --images "$IN" >/dev/null 2>"$TMP/e4"
rc=$?
[ $rc -eq 2 ] && grep -q "nothing to write" "$TMP/e4" && ok "no output option: exit 2" || bad "no output: exit $rc: $(cat "$TMP/e4")"
"$OTE" predict "$TPL" --load-weights "$OUT/weights.pth" --images "$IN/val_0001.png" --save-images "$IN" >/dev/null 2>"$TMP/e5"
rc=$?
[ $rc -eq 2 ] && grep -q "would replace the input image" "$TMP/e5" && cmp -s "$IN/val_0001.png" "$D/val/val_0001.png" \
    && ok "output over the input refused (exit 2), input untouched" || bad "overwrite: exit $rc: $(cat "$TMP/e5")"
"$OTE" --help | grep -q "^  predict .*test helper" && bad "'ote --help' still calls predict a test helper" \
    || ok "'ote --help' lists predict as a user command"

# ---- 5. DIR/X.pth gets DIR/X.samples/
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$TMP/two/tiny.pth" --load-weights "$OUT/weights.pth" \
    params --model.input_size 128x96 --learning_parameters.num_iters 1 --learning_parameters.batch_size 8 \
    >"$TMP/train2.log" 2>&1
[ "$(ls "$TMP/two/tiny.samples" 2>/dev/null | wc -l)" = 6 ] && [ ! -e "$TMP/two/samples" ] \
    && ok "DIR/X.pth: samples in DIR/X.samples/" || bad "X.samples: $(ls "$TMP/two")"
finish
