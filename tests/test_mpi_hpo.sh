#!/usr/bin/env bash
# Parallel HPO under `mpirun -np 2 --oversubscribe` on loopback, 1 OpenMP thread per rank (issue 18):
#  1. ote train --enable-hpo on the airport sample at 128x96 (template copy: num_trials 4,
#     image_resize 0.5, num_iters 1): exit 0, the plan says 2 parallel workers, both ranks ran
#     trials (the trial files' "rank"), hpopt_status.json consistent with the trial files (count,
#     status, score = best epoch, best_config_id), weights.pth written once by rank 0;
#  2. the same with num_trials 6: kill -9 of the whole job (mpirun and every rank) once 2 trials
#     have finished, then the same command with --hpo-resume yes: the finished trials are kept
#     (count before/after, config and score, trial files byte for byte), not rerun, the search
#     completes;
#  3. ote hpo --objective-cmd under mpirun: 8 trials, both ranks ran commands, the table;
#     a missing config: every rank exits non-zero at once (no hang).
# OTE_SANITIZED=1 (ASan build): the same sizes (they are the smallest already).
set -u
. "$(dirname "$0")/lib.sh"
OTE=${OTE_BIN:?OTE_BIN not set}
MPIRUN=${OTE_MPIRUN:-mpirun}
D="$OTE_SHARED/data/airport"
TPL="$OTE_SRC/models/templates/gen3_mobilenetV2_ATSS"
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
if ! command -v "$MPIRUN" >/dev/null; then bad "no mpirun ($MPIRUN)"; finish; fi

TO=300 # every job under a timeout: a hang fails the test instead of blocking it
mpi() { timeout "$TO" "$MPIRUN" -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x LSAN_OPTIONS "$OTE" "$@"; }
train() { # train TEMPLATE_DIR OUT EXTRA... (params last)
    local t="$1" o="$2"; shift 2
    mpi train "$t/template.yaml" --train-ann-files "$D/annotation_example_train.json" \
        --train-data-roots "$D/train" --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" \
        --save-model-to "$o" --enable-hpo --hpo-time-ratio 50 "$@"
}
tpl_copy() { # tpl_copy DIR NUM_TRIALS
    mkdir -p "$1"; cp "$TPL/template.yaml" "$TPL/hpo_config.yaml" "$1/"
    sed -i "s|^  pretrained_backbone: .*|  pretrained_backbone: $(realpath "$TPL")/../../pretrained/mobilenet_v2_1.0_224_ptq.tflite|" "$1/template.yaml"
    printf 'num_trials: %d\nimage_resize: 0.5\n' "$2" >> "$1/hpo_config.yaml"
}
P=(params --model.input_size 128x96 --learning_parameters.num_iters 1)

# consistent HPO_DIR [N]: the status file against the trial files; prints "ranks: 0 1"
consistent() {
    $PY - "$@" <<'PY'
import json, os, sys
d = sys.argv[1]
st = json.load(open(os.path.join(d, "hpopt_status.json")))
cl = st["config_list"]
if len(sys.argv) > 2:
    assert len(cl) == int(sys.argv[2]), (len(cl), sys.argv[2])
assert st["num_gen_config"] == len(cl), (st["num_gen_config"], len(cl))
files = sorted(f for f in os.listdir(d) if f.startswith("hpopt_trial_") and f.endswith(".json"))
assert len(files) == len(cl), (files, len(cl))
ranks = set()
for i, e in enumerate(cl):
    assert e["trial_id"] == i and e["status"] == 2, e
    t = json.load(open(os.path.join(d, "hpopt_trial_%d.json" % i)))
    assert t["status"] == 2 and t["scores"] and e["score"] == max(t["scores"]), (e, t)
    ranks.add(t["rank"])
best = max(range(len(cl)), key=lambda i: cl[i]["score"])
assert st["best_config_id"] == best, (st["best_config_id"], best)
keys = [tuple(sorted(e["config"].items())) for e in cl]
assert len(set(keys)) == len(keys), "duplicate configuration"
print("ranks: " + " ".join(str(r) for r in sorted(ranks)))
PY
}

# --- 1. parallel ote train --enable-hpo ---------------------------------------------------------
expect_case "parallel train --enable-hpo"
tpl_copy "$TMP/t4" 4
t0=$(date +%s)
train "$TMP/t4" "$TMP/a/model" --hpo-resume no "${P[@]}" </dev/null >"$TMP/a.out" 2>"$TMP/a.err"; rc=$?
echo "parallel run: $(( $(date +%s) - t0 )) s"
check "exit 0 (got $rc; $(tail -1 "$TMP/a.err"))" "[ $rc -eq 0 ]"
check "plan: 4 trials on 2 parallel workers, wall clock" \
    "grep -q '^HPO plan: 4 trials x 1 epochs on 2 parallel workers, .*expected HPO time [0-9]* s wall clock' '$TMP/a.out'"
check "rank 0 runs trials and hands them out" \
    "grep -q '^HPO: 2 trials at a time (rank 0 and 1 worker rank)' '$TMP/a.out' && grep -q '^HPO trial [0-9]*: .* (rank 1)$' '$TMP/a.out' && grep -q '^HPO trial [0-9]*: .* (rank 0)$' '$TMP/a.out'"
ranks=$(consistent "$TMP/a/model/hpo" 4 2>"$TMP/a.py"); prc=$?
check "status file consistent with the 4 trial files (status, score, best) $(tail -1 "$TMP/a.py")" "[ $prc -eq 0 ]"
check "both ranks ran trials (trial files: $ranks)" "[ '$ranks' = 'ranks: 0 1' ]"
check "OTE table and best values printed once" "[ \$(grep -c '^Best Hyper-parameters' '$TMP/a.out') -eq 1 ]"
check "final training: weights.pth written, summary printed once" \
    "[ -s '$TMP/a/model/weights.pth' ] && [ \$(grep -c '^saved .*weights.pth' '$TMP/a.out') -eq 1 ]"

# --- 2. kill -9 of the whole job, resume --------------------------------------------------------
expect_case "kill -9 of the job, resume"
tpl_copy "$TMP/t6" 6
H="$TMP/r/model/hpo"
(exec setsid "$MPIRUN" -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x LSAN_OPTIONS "$OTE" train \
    "$TMP/t6/template.yaml" --train-ann-files "$D/annotation_example_train.json" --train-data-roots "$D/train" \
    --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" --save-model-to "$TMP/r/model" \
    --enable-hpo --hpo-time-ratio 50 --hpo-resume no "${P[@]}" </dev/null >"$TMP/b.out" 2>&1) & sid=$!
finished() { [ -e "$H/hpopt_status.json" ] && [ "$(grep -o '"status":[[:space:]]*2' "$H/hpopt_status.json" | wc -l)" -ge 2 ]; }
found=1
for i in $(seq 1 1200); do
    if finished; then found=0; break; fi
    kill -0 $sid 2>/dev/null || break
    sleep 0.1
done
job=$(ps -o pid= -s $sid | tr '\n' ' ')
kill -9 $job 2>/dev/null # mpirun and every rank (Open MPI gives each rank its own process group)
wait $sid 2>/dev/null
for i in $(seq 1 50); do [ -z "$(ps -o pid= -s $sid)" ] && break; sleep 0.1; done
left=$(ps -o pid=,stat=,comm= -s $sid | tr '\n' ' ')
check "killed (-9) with 2 trials finished, search unfinished (job: $job)" \
    "[ $found -eq 0 ] && ! grep -q best_config_id '$H/hpopt_status.json'"
check "no process of the job left ($left)" "[ -z '$left' ]"
$PY - "$H" > "$TMP/kept.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1] + "/hpopt_status.json"))
print(json.dumps({e["trial_id"]: [e["config"], e["score"]] for e in st["config_list"] if e["status"] == 2}, sort_keys=True))
PY
nkept=$($PY -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$TMP/kept.json")
mkdir -p "$TMP/kept"
for k in $($PY -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))))" "$TMP/kept.json"); do
    cp "$H/hpopt_trial_$k.json" "$TMP/kept/"
done
check "finished trials before the resume: $nkept (>= 2)" "[ $nkept -ge 2 ]"

train "$TMP/t6" "$TMP/r/model" --hpo-resume yes "${P[@]}" </dev/null >"$TMP/c.out" 2>"$TMP/c.err"; rc=$?
check "resume: exit 0 (got $rc; $(tail -1 "$TMP/c.err"))" "[ $rc -eq 0 ]"
check "resume: announced" "grep -q 'Resuming HPO' '$TMP/c.out'"
$PY - "$H" "$TMP/kept.json" <<'PY'; check "resume: the $nkept finished trials kept (config and score), none rerun, 6 trials done" "[ $? -eq 0 ]"
import json, sys
st = json.load(open(sys.argv[1] + "/hpopt_status.json"))
before = json.load(open(sys.argv[2]))
now = {str(e["trial_id"]): [e["config"], e["score"]] for e in st["config_list"] if e["status"] == 2}
assert all(now.get(k) == v for k, v in before.items()), (before, now)
assert len(st["config_list"]) == 6 and len(now) == 6 and "best_config_id" in st, st
PY
rerun=0
for f in "$TMP"/kept/*.json; do
    k=$(basename "$f" .json); k=${k#hpopt_trial_}
    cmp -s "$f" "$H/hpopt_trial_$k.json" || rerun=1
    grep -q "^HPO trial $k: " "$TMP/c.out" && rerun=1
done
check "resume: kept trial files byte for byte, not handed out again" "[ $rerun -eq 0 ]"
ranks=$(consistent "$H" 6 2>"$TMP/c.py"); prc=$?
check "resume: status consistent with the trial files ($ranks) $(tail -1 "$TMP/c.py")" "[ $prc -eq 0 ]"
check "resume: weights written" "[ -s '$TMP/r/model/weights.pth' ]"

# --- 3. ote hpo --objective-cmd under mpirun ----------------------------------------------------
expect_case "ote hpo --objective-cmd"
cat > "$TMP/cfg.yaml" <<'Y'
metric: loss
mode: min
num_trials: 8
hp_space:
  learning_parameters.learning_rate:
    param_type: quniform
    range: [0.001, 0.1, 0.001]
  learning_parameters.batch_size:
    param_type: qloguniform
    range: [4, 8, 2]
Y
cat > "$TMP/obj.sh" <<'S'
#!/bin/sh
sleep 0.2
echo "$@" | awk '{for(i=1;i<=NF;i++){if($i=="--learning_parameters.learning_rate")lr=$(i+1); if($i=="--learning_parameters.batch_size")bs=$(i+1)}; printf "%.12g\n", (100*lr-3)^2 + (bs-6)^2/4}'
S
chmod +x "$TMP/obj.sh"
mpi hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/obj.sh" --work-dir "$TMP/w" --hpo-resume no \
    >"$TMP/h.out" 2>"$TMP/h.err"; rc=$?
check "exit 0 (got $rc)" "[ $rc -eq 0 ]"
check "8 table rows" "[ \$(grep -cE '^\|  +[0-9]+ \|' '$TMP/h.out') -eq 8 ]"
$PY - "$TMP/w" <<'PY'; check "8 trials, both ranks ran commands, scores recomputed, best the smallest" "[ $? -eq 0 ]"
import json, sys
d = sys.argv[1]
s = json.load(open(d + "/hpopt_status.json"))
cl = s["config_list"]
assert len(cl) == 8
ranks = set()
for e in cl:
    c = e["config"]
    want = (100 * c["learning_parameters.learning_rate"] - 3) ** 2 + (c["learning_parameters.batch_size"] - 6) ** 2 / 4
    assert e["status"] == 2 and abs(e["score"] - want) < 1e-9 * max(1, want), (e, want)
    ranks.add(json.load(open("%s/hpopt_trial_%d.json" % (d, e["trial_id"])))["rank"])
assert ranks == {0, 1}, ranks
assert s["best_config_id"] == min(range(8), key=lambda i: cl[i]["score"])
assert len({tuple(sorted(e["config"].items())) for e in cl}) == 8, "duplicate proposal"
PY
t0=$(date +%s)
TO=60 mpi hpo --hpo-config "$TMP/missing.yaml" --objective-cmd "$TMP/obj.sh" --work-dir "$TMP/w2" \
    >"$TMP/m.out" 2>"$TMP/m.err"; rc=$?
check "missing config: non-zero exit without a hang (rc $rc, $(( $(date +%s) - t0 )) s)" "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "missing config: rank 0 names the file" "grep -q 'missing.yaml' '$TMP/m.err'"
finish
