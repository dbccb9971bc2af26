#!/usr/bin/env bash
# test_train_metrics.sh - the run folder's metrics file and figures (issue 14 §2), end to end on
# ../shared/data/airport (10 + 10 images) at 128x96, batch 1 (10 iterations an epoch, so the
# progress lines at iterations 1, 10 and 20 cover each epoch completely):
#   1. 2 epochs into OUT/: metrics.csv has a header and one row per printed epoch line, and each row
#      matches the printed lines: epoch, iterations (the epoch's last progress line), lr (the lr
#      printed there), every loss part (= the iteration-weighted mean of the epoch's progress
#      lines), img/s and val mAP@0.5 (the epoch line), best (the epoch line says "best");
#      curves.png (1200x1000) and pr_curves.png (1150x750) decode (tests/png_check.py: standard
#      library zlib) and are not blank; no temporary files are left;
#   2. OUT given as DIR/best.pth: best.metrics.csv, best.curves.png, best.pr_curves.png beside it;
#   3. a figure that cannot be written (a directory where curves.png goes) is one warning line
#      naming it: the training still exits 0 with its weights and metrics.csv.
# One line per check; exit 1 on any failure.
. "$(dirname "$0")/lib.sh"
OTE="${OTE_BIN:-build/ote}"
SRC="${OTE_SRC:-.}"
SHARED="${OTE_SHARED:-../shared}"
TPL="$SRC/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
D="$SHARED/data/airport"
PY=/usr/bin/python3
DATA=(--train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train"
      --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val")
PARAMS=(params --model.input_size 128x96 --learning_parameters.batch_size 1
        --learning_parameters.learning_rate_warmup_iters 5)

# --- 1. two epochs into a folder ----------------------------------------------------------------
OUT="$TMP/model"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$OUT" "${PARAMS[@]}" --learning_parameters.num_iters 2 \
    >"$TMP/train.log" 2>"$TMP/train.err"
rc=$?
[ $rc -eq 0 ] && ok "ote train, 2 epochs of 10 iterations: exit 0" || bad "ote train exit $rc: $(head -3 "$TMP/train.err")"
[ -s "$OUT/metrics.csv" ] && ok "metrics.csv beside weights.pth" || bad "no $OUT/metrics.csv"
"$PY" - "$TMP/train.log" "$OUT/metrics.csv" <<'PYEOF' && ok "metrics.csv rows match the printed progress and epoch lines" || bad "metrics.csv does not match the log"
import csv, re, sys
log, path = sys.argv[1], sys.argv[2]
header = ("epoch,iterations,lr,loss,loss_cls,loss_bbox,loss_centerness,train_images_per_s,"
          "val_voc_map50,val_coco_ap,val_coco_ap50,epoch_seconds,wall_seconds,best")
lines = open(path).read().splitlines()
if not lines or lines[0] != header:
    sys.exit("header: %r" % (lines[:1],))
rows = list(csv.DictReader(open(path)))
prog = re.compile(r"^epoch (\d+)/\d+ iter (\d+)/\d+  loss ([\d.]+) \(cls ([\d.]+) box ([\d.]+) ctr ([\d.]+)\)  lr (\S+)  ([\d.]+) img/s")
done = re.compile(r"^epoch (\d+)/\d+ done: val mAP@0.5 ([\d.]+)(  best.*?)?  \([\d.]+ s, ([\d.]+) img/s train\)")
progress, epochs = {}, []
for l in open(log):
    m = prog.match(l)
    if m:
        progress.setdefault(int(m.group(1)), []).append([float(x) for x in m.groups()[1:7]])
    m = done.match(l)
    if m:
        epochs.append((int(m.group(1)), float(m.group(2)), m.group(3) is not None, float(m.group(4))))
if len(epochs) != 2 or len(rows) != len(epochs):
    sys.exit("%d epoch lines, %d csv rows" % (len(epochs), len(rows)))
prev_iter = 0
for (ep, vmap, best, ips), r in zip(epochs, rows):
    p = progress.get(ep, [])
    checks = {
        "epoch": int(r["epoch"]) == ep,
        "iterations = last progress line": p and int(r["iterations"]) == int(p[-1][0]),
        "lr = lr on the last progress line": p and abs(float(r["lr"]) - p[-1][5]) <= 1e-5 * p[-1][5],
        "val mAP": abs(float(r["val_voc_map50"]) - vmap) <= 5.1e-5,
        "img/s": abs(float(r["train_images_per_s"]) - ips) <= 0.051,
        "best": int(r["best"]) == int(best),
        "coco AP in [0,1]": 0 <= float(r["val_coco_ap"]) <= float(r["val_coco_ap50"]) <= 1,
        "wall >= epoch seconds": float(r["wall_seconds"]) >= float(r["epoch_seconds"]) > 0,
    }
    # the epoch's progress lines cover iterations prev_iter+1 .. last: their weighted mean is the row's
    cols = ["loss", "loss_cls", "loss_bbox", "loss_centerness"]
    last, wsum, sums = prev_iter, 0, [0.0] * 4
    for q in p:
        w = q[0] - last
        last = q[0]
        wsum += w
        for k in range(4):
            sums[k] += w * q[1 + k]
    covered = p and last == int(r["iterations"])
    checks["progress lines cover the epoch"] = covered
    for k, c in enumerate(cols):
        checks[c + " = weighted mean of the progress lines"] = covered and abs(float(r[c]) - sums[k] / wsum) <= 2e-4
    bad = [k for k, v in checks.items() if not v]
    print("  epoch %d: %s" % (ep, "all fields match" if not bad else "MISMATCH " + ", ".join(bad)))
    print("    csv: %s" % ",".join(r[h] for h in header.split(",")))
    if bad:
        sys.exit(1)
    prev_iter = int(r["iterations"])
PYEOF
"$PY" "$SRC/tests/png_check.py" "$OUT/curves.png" 1200 1000 16 && ok "curves.png decodes, 1200x1000, not blank" || bad "curves.png"
"$PY" "$SRC/tests/png_check.py" "$OUT/pr_curves.png" 1150 750 8 && ok "pr_curves.png decodes, 1150x750, not blank" || bad "pr_curves.png"
[ -z "$(find "$OUT" -name '*.tmp*')" ] && ok "no temporary files left" || bad "temporary files left: $(ls "$OUT")"
grep -q "^warning" "$TMP/train.log" && bad "unexpected warning: $(grep -m1 '^warning' "$TMP/train.log")" || ok "no warning printed"

# --- 2. DIR/X.pth: side-file names ------------------------------------------------------------
OUT2="$TMP/two/best.pth"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$OUT2" "${PARAMS[@]}" --learning_parameters.num_iters 1 \
    >"$TMP/train2.log" 2>"$TMP/train2.err"
rc=$?
[ $rc -eq 0 ] && ok "ote train into DIR/best.pth: exit 0" || bad "second training exit $rc: $(head -3 "$TMP/train2.err")"
n2=$(($(wc -l <"$TMP/two/best.metrics.csv" 2>/dev/null || echo 0) - 1))
[ "$n2" = 1 ] && ok "best.metrics.csv beside best.pth: 1 row for 1 epoch" || bad "best.metrics.csv: $n2 rows ($(ls "$TMP/two"))"
"$PY" "$SRC/tests/png_check.py" "$TMP/two/best.curves.png" 1200 1000 16 && ok "best.curves.png beside best.pth" || bad "best.curves.png"
"$PY" "$SRC/tests/png_check.py" "$TMP/two/best.pr_curves.png" 1150 750 8 && ok "best.pr_curves.png beside best.pth" || bad "best.pr_curves.png"
[ ! -e "$TMP/two/metrics.csv" ] && [ ! -e "$TMP/two/curves.png" ] && ok "no OTE-named files for a .pth path" || bad "metrics.csv or curves.png written for best.pth"

# --- 3. a figure that cannot be written: a warning, not a lost training ----------------------
OUT3="$TMP/three"
mkdir -p "$OUT3/curves.png"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$OUT3" "${PARAMS[@]}" --learning_parameters.num_iters 1 \
    >"$TMP/train3.log" 2>"$TMP/train3.err"
rc=$?
[ $rc -eq 0 ] && [ -s "$OUT3/weights.pth" ] && ok "curves.png blocked by a directory: training exits 0 with weights.pth" \
    || bad "blocked figure: exit $rc: $(head -3 "$TMP/train3.err")"
nw=$(grep -c "^warning: curves.png: .*three/curves.png" "$TMP/train3.log")
[ "$nw" = 1 ] && ok "one warning line naming curves.png: $(grep -m1 '^warning: curves.png' "$TMP/train3.log")" || bad "$nw warning lines about curves.png"
[ "$(wc -l <"$OUT3/metrics.csv")" = 2 ] && "$PY" "$SRC/tests/png_check.py" "$OUT3/pr_curves.png" 1150 750 8 >/dev/null \
    && ok "metrics.csv and pr_curves.png still written" || bad "metrics.csv / pr_curves.png after the blocked figure"
finish
