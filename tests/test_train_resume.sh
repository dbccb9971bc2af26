#!/usr/bin/env bash
# test_train_resume.sh - issue 14 §1: OUT/last.pth and `ote train --resume-from` on the airport
# sample (10 + 10 images) at 128x96, 4 epochs of 3 iterations, one thread:
#   1. an uninterrupted reference run: last.pth is a finished training state torch opens (model,
#      config.resume, one momentum buffer per trained parameter), and `ote eval` takes it;
#   2. run A killed with kill -9 inside epoch 2: last.pth keeps the last finished epoch (at most the
#      epoch in progress is lost); the same command without --resume-from is refused (exit 2, exact
#      line, nothing touched); mismatched resumes (changed lr, changed training data, another
#      folder's state) are refused with the exact line (exit 2);
#   3. resumed with OTE_TEST_SAVE_PAUSE_MS (io/pth.h) and killed while a save's temporary file
#      exists: the previous last.pth stays valid; resumed again (the temporary is removed) and killed
#      inside epoch 4 (after its iteration-10 progress line); resumed to the end;
#   4. A's final weights.pth and last.pth (weights and momentum) equal the reference bit for bit
#      (tests/compare_checkpoints.py, which is shown to fail on a checkpoint that differs);
#   5. --resume-from a finished training: "nothing to do", exit 0, files untouched; the same command
#      without the flag on a finished training: a note and a new training (identical result);
#   6. --enable-hpo whose search is skipped (--hpo-time-ratio 1): kill -9 in the final training, run
#      the same command again: the final training continues and ends equal to the reference.
# One line per check; exit 1 on any failure.
. "$(dirname "$0")/lib.sh"
OTE="${OTE_BIN:-build/ote}"
SRC="${OTE_SRC:-.}"
SHARED="${OTE_SHARED:-../shared}"
TPL="$SRC/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
D="$SHARED/data/airport"
PY=/usr/bin/python3
CMP="$SRC/tests/compare_checkpoints.py"
pids=""
on_exit 'for p in $pids; do kill -9 $p 2>/dev/null; done'
export OMP_NUM_THREADS=1
DATA=(--train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train"
      --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val")
P=(params --model.input_size 128x96 --learning_parameters.num_iters 4 --learning_parameters.batch_size 4
   --learning_parameters.learning_rate_warmup_iters 2)
# EXEC=exec in a background call makes $! the pid of ote itself (kill -9 must hit ote, not a shell)
train() { ${EXEC:-} "$OTE" train "$TPL" "${DATA[@]}" "$@"; }
# state FILE KEY: config.resume.KEY of a state file ("" if unreadable)
state() { "$PY" -c "import sys, torch; print(torch.load(sys.argv[1])['config']['resume'][sys.argv[2]])" "$1" "$2" 2>/dev/null; }
# wait_for FILE PATTERN PID: until PATTERN is in FILE (or the process ended); 1 if it never came
wait_for() {
    while ! grep -q "$2" "$1" 2>/dev/null; do kill -0 "$3" 2>/dev/null || return 1; sleep 0.02; done
}
kill9() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# --- 1. reference ------------------------------------------------------------------------------
REF="$TMP/ref"
train --save-model-to "$REF" "${P[@]}" >"$TMP/ref.log" 2>"$TMP/ref.err"; rc=$?
check "reference run: exit 0 (rc=$rc $(head -1 "$TMP/ref.err"))" "[ $rc -eq 0 ] && [ -s '$REF/weights.pth' ] && [ -s '$REF/last.pth' ]"
"$PY" - "$REF/last.pth" <<'PY'; check "last.pth: torch opens it; finished state of 4 epochs, 12 iterations; a non-zero momentum buffer per trained parameter" "[ $? -eq 0 ]"
import sys, torch
c = torch.load(sys.argv[1])
r = c["config"]["resume"]
assert r["format"] == "ote-c training state" and r["finished"] == "true" and r["stop"] == "done", r
assert r["epochs_done"] == "4" and r["iter"] == "12" and r["sgd"]["steps"] == "12" and r["rng"]["next_pass"] == "4", r
m, o = c["model"], c["optimizer"]
trained = [k for k in m if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
assert list(o) == trained, (len(o), len(trained))
for k in o:
    assert o[k].shape == m[k].shape and o[k].dtype == torch.float32, k
assert sum(int(o[k].abs().sum() > 0) for k in o) == len(o), "zero momentum buffers"
PY
"$OTE" eval "$TPL" --test-ann-files "$D/annotation_example_val.json" --test-data-roots "$D/val" \
    --load-weights "$REF/last.pth" >"$TMP/eval.log" 2>&1; rc=$?
check "ote eval --load-weights OUT/last.pth: exit 0 (rc=$rc)" "[ $rc -eq 0 ] && grep -q '^VOC mAP@0.5' '$TMP/eval.log'"
ref_map=$(sed -n 's/^validation VOC mAP@0.5 of the best model: [0-9.]*  (\(.*\))$/\1/p' "$TMP/ref.log")

# --- 2. kill -9 inside epoch 2 ------------------------------------------------------------------
A="$TMP/a"
EXEC=exec train --save-model-to "$A" "${P[@]}" >"$TMP/a1.log" 2>&1 &
pid=$!; pids="$pids $pid"
wait_for "$TMP/a1.log" "epoch 1/4 done" $pid && sleep 0.3
kill9 $pid
done1=$(grep -c "^epoch [0-9]/4 done" "$TMP/a1.log"); ed=$(state "$A/last.pth" epochs_done)
echo "   killed after $done1 printed epoch(s); last.pth: epochs_done $ed"
check "kill -9 inside an epoch: last.pth loads and holds the last finished epoch ($ed of $done1 printed; at most the epoch in progress lost)" \
    "[ -n '$ed' ] && [ '$ed' -ge 1 ] && { [ '$ed' -eq $done1 ] || [ '$ed' -eq $((done1 - 1)) ]; }"
cp "$A/last.pth" "$TMP/a_partial.pth"
sum_before=$(md5sum "$A/last.pth" "$A/weights.pth" | md5sum)

train --save-model-to "$A" "${P[@]}" >"$TMP/same.out" 2>"$TMP/same.err"; rc=$?
want="ote train: $A/last.pth holds an interrupted training ($ed of 4 epochs done): continue it with --resume-from $A/last.pth, or remove that file (or use another --save-model-to) to start over"
check "same command without --resume-from: exit 2, exact line, nothing touched (rc=$rc: $(cat "$TMP/same.err"))" \
    "[ $rc -eq 2 ] && [ \"\$(cat '$TMP/same.err')\" = \"\$want\" ] && [ \"\$(md5sum '$A/last.pth' '$A/weights.pth' | md5sum)\" = '$sum_before' ]"

train --save-model-to "$A" --resume-from "$A/last.pth" "${P[@]}" --learning_parameters.learning_rate 0.004 \
    >"$TMP/lr.out" 2>"$TMP/lr.err"; rc=$?
want="ote train: --resume-from $A/last.pth: learning_parameters.learning_rate differs: 0.008 in the interrupted training, 0.004 now (a resume continues the same training)"
check "resume with a changed lr: exit 2, exact line (rc=$rc: $(cat "$TMP/lr.err"))" \
    "[ $rc -eq 2 ] && [ \"\$(cat '$TMP/lr.err')\" = \"\$want\" ]"
"$OTE" train "$TPL" --train-ann-files "$D/annotation_example_val.json" --train-data-roots "$D/val" \
    --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" \
    --save-model-to "$A" --resume-from "$A/last.pth" "${P[@]}" >"$TMP/data.out" 2>"$TMP/data.err"; rc=$?
pat="^ote train: --resume-from $A/last.pth: the training data differs: 10 images, 41 boxes (fingerprint [0-9a-f]\{16\}) in the interrupted training, 10 images, 42 boxes (fingerprint [0-9a-f]\{16\}) now (a resume continues the same training)\$"
check "resume with changed training data: exit 2, exact line (rc=$rc: $(cat "$TMP/data.err"))" \
    "[ $rc -eq 2 ] && [ \$(wc -l <'$TMP/data.err') -eq 1 ] && grep -q \"\$pat\" '$TMP/data.err'"
train --save-model-to "$TMP/other" --resume-from "$A/last.pth" "${P[@]}" >"$TMP/other.out" 2>"$TMP/other.err"; rc=$?
want="ote train: --resume-from $A/last.pth is not the training state of --save-model-to ($TMP/other/last.pth): a training resumes into its own folder"
check "resume into another folder: exit 2, exact line (rc=$rc)" "[ $rc -eq 2 ] && [ \"\$(cat '$TMP/other.err')\" = \"\$want\" ] && [ ! -e '$TMP/other' ]"
check "refused resumes touched nothing" "[ \"\$(md5sum '$A/last.pth' '$A/weights.pth' | md5sum)\" = '$sum_before' ]"

# --- 3. kill -9 during a save, then inside epoch 4 ------------------------------------------------
OTE_TEST_SAVE_PAUSE_MS=3000 EXEC=exec train --save-model-to "$A" --resume-from "$A/last.pth" "${P[@]}" >"$TMP/a2.log" 2>&1 &
pid=$!; pids="$pids $pid"
# the state save (OTE_TEST_SAVE_PAUSE_MS holds its complete temporary before the rename); other
# temporaries (a figure's, or one left by the first kill) do not count
while [ -z "$(find "$A" -name "last.pth.tmp-$pid" 2>/dev/null)" ] && kill -0 $pid 2>/dev/null; do sleep 0.02; done
tmpf=$(find "$A" -name "last.pth.tmp-$pid" | head -1)
kill9 $pid
ed2=$(state "$A/last.pth" epochs_done)
echo "   killed during the save of $(basename "$tmpf"); last.pth: epochs_done $ed2"
check "kill -9 during a save: a temporary was being written ($(basename "$tmpf")), last.pth still loads ($ed2 epochs done)" \
    "[ -n '$tmpf' ] && [ -e '$tmpf' ] && [ -n '$ed2' ] && [ '$ed2' -ge '$ed' ]"
grep -q "^resumed from $A/last.pth: $ed of 4 epochs done" "$TMP/a2.log" && ok "resume line names the state and the epochs done" || bad "no 'resumed from' line"

EXEC=exec train --save-model-to "$A" --resume-from "$A/last.pth" "${P[@]}" >"$TMP/a3.log" 2>&1 &
pid=$!; pids="$pids $pid"
wait_for "$TMP/a3.log" "^epoch 4/4 iter 10/12" $pid
kill9 $pid
ed3=$(state "$A/last.pth" epochs_done)
check "stale temporaries removed at the next start" "grep -q '^removed [1-9][0-9]* temporary file' '$TMP/a3.log' && [ -z \"\$(find '$A' -name '*.tmp-*')\" ]"
check "kill -9 inside epoch 4 (after iteration 10): last.pth holds 3 epochs (epoch 4 lost) (got $ed3)" "[ '$ed3' = 3 ]"

train --save-model-to "$A" --resume-from "$A/last.pth" "${P[@]}" >"$TMP/a4.log" 2>"$TMP/a4.err"; rc=$?
check "final resume runs to the end: exit 0, 4 of 4 epochs, 12 iterations (rc=$rc)" \
    "[ $rc -eq 0 ] && grep -q '^training finished: 4 of 4 epochs, 12 iterations, 40 images' '$TMP/a4.log'"
a_map=$(sed -n 's/^validation VOC mAP@0.5 of the best model: [0-9.]*  (\(.*\))$/\1/p' "$TMP/a4.log")
check "best mAP after 3 kills equals the reference's exactly ($a_map vs $ref_map)" "[ -n '$ref_map' ] && [ '$a_map' = '$ref_map' ]"

# --- 4. bit for bit -------------------------------------------------------------------------------
for f in weights.pth last.pth; do
    r=$("$PY" "$CMP" "$REF/$f" "$A/$f"); rc=$?
    check "$f after kill -9 x3 and resumes vs uninterrupted: $r" "[ $rc -eq 0 ]"
done
r=$("$PY" "$CMP" "$REF/last.pth" "$TMP/a_partial.pth"); rc=$?
check "the comparison fails on a state that differs (epoch $ed vs 4): $r" "[ $rc -eq 1 ] && echo '$r' | grep -q '^differ: largest absolute difference'"

# metrics.csv after the kills: one row per epoch 1..4, the mAP column equal to the reference's
m_a=$(cut -d, -f1,9 "$A/metrics.csv" | tail -n +2 | tr '\n' ' '); m_r=$(cut -d, -f1,9 "$REF/metrics.csv" | tail -n +2 | tr '\n' ' ')
check "metrics.csv after kill -9 x3 and resumes: epochs 1-4 once each, same mAP column as the reference ($m_a)" \
    "[ \"\$(cut -d, -f1 '$A/metrics.csv' | tail -n +2 | tr '\n' ' ')\" = '1 2 3 4 ' ] && [ '$m_a' = '$m_r' ]"

# --- 5. finished trainings ------------------------------------------------------------------------
sum_a=$(md5sum "$A/last.pth" "$A/weights.pth" | md5sum)
train --save-model-to "$A" --resume-from "$A/last.pth" "${P[@]}" >"$TMP/fin.out" 2>"$TMP/fin.err"; rc=$?
check "--resume-from a finished training: exit 0, one 'nothing to do' line, files untouched (rc=$rc: $(cat "$TMP/fin.out"))" \
    "[ $rc -eq 0 ] && [ \$(wc -l <'$TMP/fin.out') -eq 1 ] && grep -q '^nothing to do: the training in $A/last.pth has finished (4 of 4 epochs, stop: done); best epoch [0-9]' '$TMP/fin.out' && [ \"\$(md5sum '$A/last.pth' '$A/weights.pth' | md5sum)\" = '$sum_a' ]"
cp "$REF/last.pth" "$TMP/ref_last.pth"
train --save-model-to "$REF" "${P[@]}" >"$TMP/again.log" 2>&1; rc=$?
check "same command on a finished training: a note, a new training (exit $rc), same weights" \
    "[ $rc -eq 0 ] && grep -q '^note: $REF/last.pth is a finished training (4 of 4 epochs done): starting a new one' '$TMP/again.log' && grep -q '^init: backbone from' '$TMP/again.log' && '$PY' '$CMP' '$TMP/ref_last.pth' '$REF/last.pth' >/dev/null"

# --- 6. HPO's final training ----------------------------------------------------------------------
H="$TMP/h"
EXEC=exec train --save-model-to "$H" --enable-hpo --hpo-time-ratio 1 "${P[@]}" </dev/null >"$TMP/h1.log" 2>&1 &
pid=$!; pids="$pids $pid"
wait_for "$TMP/h1.log" "^epoch 2/4 done" $pid && sleep 0.3
kill9 $pid
edh=$(state "$H/last.pth" epochs_done)
train --save-model-to "$H" --enable-hpo --hpo-time-ratio 1 "${P[@]}" </dev/null >"$TMP/h2.log" 2>&1; rc=$?
check "--enable-hpo killed in the final training ($edh epochs kept), same command again: the final training continues (rc=$rc)" \
    "[ $rc -eq 0 ] && [ -n '$edh' ] && grep -q '^the final training continues the interrupted one in $H/last.pth' '$TMP/h2.log' && grep -q '^resumed from $H/last.pth: $edh of 4 epochs done' '$TMP/h2.log'"
r=$("$PY" "$CMP" "$REF/last.pth" "$H/last.pth"); rc=$?
check "HPO final training resumed vs uninterrupted: $r" "[ $rc -eq 0 ]"
finish
