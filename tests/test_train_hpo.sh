#!/usr/bin/env bash
# ote train --enable-hpo end to end on the airport sample (10 + 10 images) at a small input size:
#  1. an unknown hyper-parameter name in hpo_config.yaml: exit 2, the message names file and line;
#  2. the template's own hpo_config.yaml, --hpo-time-ratio 2: the plan, OTE's table header, the best
#     values (= the status file's best trial, applied to the final training), hpopt_status.json and
#     hpopt_trial_<id>.json fields, weights.pth;
#  3. with a template copy fixing num_trials 2: kill -9 while trial 1 runs, resume with
#     --hpo-resume yes (finished trials kept byte for byte, the search completes), rerun without a
#     terminal (reuse: no trial runs, no trial file changes), a changed hp_space (reruns from
#     scratch without asking), a corrupt hpopt_status.json (exit 1, clear error, moved aside);
#  after 2: hpo/trials.csv matches the status and trial files; hpo/history.png and hpo/space.png decode.
# OTE_SANITIZED=1 (ASan build): the smallest input and one epoch everywhere.
set -u
. "$(dirname "$0")/lib.sh"
D="$OTE_SHARED/data/airport"
TPL="$OTE_SRC/models/templates/gen3_mobilenetV2_ATSS"
if [ "${OTE_SANITIZED:-0}" = 1 ]; then SIZE=128x96; NI=1; else SIZE=192x128; NI=2; fi
PY=/usr/bin/python3

# train TEMPLATE_DIR OUT EXTRA... (params go last). EXEC=exec in a background subshell makes $! the
# pid of ote itself, so that kill -9 hits ote and not a shell around it.
train() {
    local t="$1" o="$2"; shift 2
    ${EXEC:-} "$OTE_BIN" train "$t/template.yaml" --train-ann-files "$D/annotation_example_train.json" \
        --train-data-roots "$D/train" --val-ann-files "$D/annotation_example_val.json" --val-data-roots "$D/val" \
        --save-model-to "$o" --enable-hpo "$@"
}

# A template copy keeps the shipped pretrained backbone (a relative path is relative to the template).
fix_backbone() { sed -i "s|^  pretrained_backbone: .*|  pretrained_backbone: $(realpath "$TPL")/../../pretrained/mobilenet_v2_1.0_224_ptq.tflite|" "$1"; }

# --- 1. unknown hyper-parameter name -------------------------------------------------------------
mkdir -p "$TMP/bad"; cp "$TPL/template.yaml" "$TMP/bad/"; fix_backbone "$TMP/bad/template.yaml"
printf 'metric: mAP\nsearch_algorithm: smbo\nhp_space:\n  learning_parameters.learning_rate:\n    param_type: quniform\n    range: [0.001, 0.01, 0.001]\n  learning_parameters.bogus_rate:\n    param_type: uniform\n    range: [1, 2]\n' > "$TMP/bad/hpo_config.yaml"
train "$TMP/bad" "$TMP/bad_out" </dev/null >"$TMP/bad.out" 2>"$TMP/bad.err"; rc=$?
check "unknown hyper-parameter: exit 2 (got $rc)" "[ $rc -eq 2 ]"
check "unknown hyper-parameter: message names file, line and name" \
    "grep -q 'hpo_config.yaml:7:.*bogus_rate' '$TMP/bad.err'"
check "unknown hyper-parameter: no trial ran" "[ ! -e '$TMP/bad_out/hpo' ] && ! grep -q 'HPO trial' '$TMP/bad.out'"

# --- 1b. hp_space outside the template's limits: refused at load (issue 13 item 13), before calibration
printf 'metric: mAP\nsearch_algorithm: smbo\nhp_space:\n  learning_parameters.learning_rate:\n    param_type: quniform\n    range: [0.001, 0.5, 0.001]\n' > "$TMP/bad/hpo_config.yaml"
train "$TMP/bad" "$TMP/bad_out" </dev/null >"$TMP/bad.out" 2>"$TMP/bad.err"; rc=$?
check "lr range above the template's max: exit 2, names file, line, key and limit" \
    "[ $rc -eq 2 ] && grep -q 'hpo_config.yaml:4: hp_space learning_parameters.learning_rate: 0.5 is above the template.s max_value 0.1' '$TMP/bad.err' && ! grep -q 'HPO: timing' '$TMP/bad.out'"
printf 'metric: mAP\nsearch_algorithm: smbo\nhp_space:\n  learning_parameters.batch_size:\n    param_type: quniform\n    range: [4, 8, 0.5]\n' > "$TMP/bad/hpo_config.yaml"
train "$TMP/bad" "$TMP/bad_out" </dev/null >"$TMP/bad.out" 2>"$TMP/bad.err"; rc=$?
check "non-integer quantum for an INTEGER parameter: exit 2 naming it" \
    "[ $rc -eq 2 ] && grep -q 'hp_space learning_parameters.batch_size: an INTEGER parameter needs' '$TMP/bad.err'"

# --- 2. the main run: template hpo_config.yaml, --hpo-time-ratio 2 -------------------------------
t0=$(date +%s)
train "$TPL" "$TMP/a/model" --hpo-time-ratio 2 params --model.input_size $SIZE \
    --learning_parameters.num_iters $NI </dev/null >"$TMP/a.out" 2>"$TMP/a.err"; rc=$?
echo "main run: $(( $(date +%s) - t0 )) s"
check "main run exits 0 (got $rc; $(tail -1 "$TMP/a.err"))" "[ $rc -eq 0 ]"
check "plan printed before the first trial" \
    "awk '/^HPO plan: [0-9]+ trials x [0-9]+ epochs, subset [0-9]+ of 10 training images .*trial input [0-9]+x[0-9]+ .*expected HPO time/{p=NR} /^HPO trial 0:/{t=NR} END{exit !(p && t && p < t)}' '$TMP/a.out'"
check "OTE table header" \
    "grep -qxF '|  #  | learning_parameters.learning_rate  | learning_parameters.batch_size  |        score        |' '$TMP/a.out'"
check "weights.pth written" "[ -s '$TMP/a/model/weights.pth' ] && [ -s '$TMP/a/model/label_schema.json' ]"
$PY - "$TMP/a/model/hpo" "$TMP/a.out" <<'PY'; check "status/trial files, best values printed and used" "[ $? -eq 0 ]"
import ast, json, os, re, sys
d, out = sys.argv[1], open(sys.argv[2]).read().splitlines()
st = json.load(open(os.path.join(d, "hpopt_status.json")))
for k in ("search_algorithm", "search_space", "metric", "subset_ratio", "image_resize", "early_stop",
          "max_iterations", "full_dataset_size", "config_list", "num_gen_config", "best_config_id"):
    assert k in st, k
assert st["search_algorithm"] == "smbo" and st["metric"] == "mAP" and st["early_stop"] == "None"
assert st["full_dataset_size"] == 10 and 0 < st["subset_ratio"] <= 1 and 0 < st["image_resize"] <= 1
assert st["search_space"]["learning_parameters.learning_rate"] == {"type": "quniform", "range": [0.001, 0.1, 0.001, 2]}
cl = st["config_list"]
assert len(cl) >= 1 and st["num_gen_config"] == len(cl)
lr0 = cl[0]["config"]
assert lr0 == {"learning_parameters.batch_size": 8, "learning_parameters.learning_rate": 0.008}, lr0  # trial 0 = defaults
for i, e in enumerate(cl):
    assert set(e) >= {"trial_id", "config", "status", "score"} and e["trial_id"] == i, e
    t = json.load(open(os.path.join(d, "hpopt_trial_%d.json" % i)))
    assert set(t) >= {"status", "scores", "median"}, t
    assert t["status"] == e["status"]
    if e["status"] == 2:
        assert t["scores"] and len(t["scores"]) <= st["max_iterations"], t
        assert e["score"] == max(t["scores"]), (e, t)
        m = [sum(t["scores"][:k + 1]) / (k + 1) for k in range(len(t["scores"]))]
        assert all(abs(a - b) < 1e-12 for a, b in zip(m, t["median"])), t
scored = [e for e in cl if e["score"] is not None]
best = max(scored, key=lambda e: e["score"])
assert best["score"] == cl[st["best_config_id"]]["score"], (best, st["best_config_id"])
i = out.index("Best Hyper-parameters")
printed = ast.literal_eval(out[i + 1])
assert printed == cl[st["best_config_id"]]["config"], (printed, cl[st["best_config_id"]])
rows = [l for l in out if re.match(r"^\|\s+\d+ \|", l)]
assert len(rows) == len(scored), rows
final = [l for l in out if l.startswith("training: ")][-1]
bs, lr = printed["learning_parameters.batch_size"], printed["learning_parameters.learning_rate"]
assert ("batches of %d =" % bs) in final and ("lr %g," % lr) in final, final
PY
grep -E '^HPO|^\|' "$TMP/a.out" | head -40
# issue 14: hpo/trials.csv (one row per trial, as the status file) and the figures beside the JSON files
$PY - "$TMP/a/model/hpo" <<'PY'; check "hpo/trials.csv: one row per trial, values/status/score as hpopt_status.json" "[ $? -eq 0 ]"
import csv, json, os, sys
d = sys.argv[1]
st = json.load(open(os.path.join(d, "hpopt_status.json")))
rows = list(csv.DictReader(open(os.path.join(d, "trials.csv"))))
names = {0: "ready", 1: "running", 2: "stop", 7: "failed"}
assert len(rows) == len(st["config_list"]), (len(rows), len(st["config_list"]))
for r, e in zip(rows, st["config_list"]):
    assert int(r["trial_id"]) == e["trial_id"], (r, e)
    for k, v in e["config"].items():
        assert float(r[k]) == v, (k, r, e)
    assert r["status"] == names.get(e["status"], r["status"]), (r, e)
    assert (r["score"] == "") == (e["score"] is None) and (e["score"] is None or abs(float(r["score"]) - e["score"]) < 1e-9), (r, e)
    t = json.load(open(os.path.join(d, "hpopt_trial_%d.json" % e["trial_id"])))
    assert int(r["epochs"]) == len(t["scores"]) and abs(float(r["seconds"]) - sum(t["seconds"])) < 2e-3, (r, t)
    assert int(r["best"]) == (e["trial_id"] == st["best_config_id"]), r
print("trials.csv: %d rows match" % len(rows))
PY
check "hpo/history.png decodes, 1000x600, not blank" "$PY '$OTE_SRC/tests/png_check.py' '$TMP/a/model/hpo/history.png' 1000 600 8"
check "hpo/space.png decodes, 950x750, not blank" "$PY '$OTE_SRC/tests/png_check.py' '$TMP/a/model/hpo/space.png' 950 750 8"
check "no HPO figure warning" "! grep -q 'HPO: warning: ' '$TMP/a.out'"
[ -n "${OTE_KEEP_HPO:-}" ] && cp -r "$TMP/a/model" "$OTE_KEEP_HPO"

# --- 2b. a budget too small for trials that rank anything: said, no trial, one training with the template's values
train "$TPL" "$TMP/s/model" --hpo-time-ratio 1.01 params --model.input_size $SIZE \
    --learning_parameters.num_iters $NI </dev/null >"$TMP/s.out" 2>"$TMP/s.err"; rc=$?
check "tiny budget: exit 0 (got $rc)" "[ $rc -eq 0 ]"
check "tiny budget: says the search is skipped and why" "grep -q '^HPO: skipped - the budget (--hpo-time-ratio 1.01: .*too small for trials that can rank configurations' '$TMP/s.out'"
check "tiny budget: no trial ran, template values trained, weights written" \
    "! grep -q '^HPO trial' '$TMP/s.out' && grep -q '^training: .*batches of 8 = .*lr 0.008,' '$TMP/s.out' && [ -s '$TMP/s/model/weights.pth' ]"

# --- 2c. trials fixed too small by hpo_config.yaml within an ample budget: the message names the file, not the budget
mkdir -p "$TMP/small"; cp "$TPL/template.yaml" "$TPL/hpo_config.yaml" "$TMP/small/"
fix_backbone "$TMP/small/template.yaml"
printf 'num_trials: 2\nimage_resize: 0.3\n' >> "$TMP/small/hpo_config.yaml"
train "$TMP/small" "$TMP/sm/model" --hpo-time-ratio 50 params --model.input_size $SIZE \
    --learning_parameters.num_iters $NI </dev/null >"$TMP/sm.out" 2>"$TMP/sm.err"; rc=$?
check "fixed small trials: exit 0 (got $rc)" "[ $rc -eq 0 ]"
check "fixed small trials: blames hpo_config.yaml's values, not the budget" \
    "grep -q '^HPO: skipped - the trials fixed by hpo_config.yaml (2 trials of .*image_resize 0.30).*from 0.10 of them and an image_resize of 0.50' '$TMP/sm.out' && ! grep -q 'HPO: skipped - the budget' '$TMP/sm.out'"
check "fixed small trials: no trial ran, weights written" "! grep -q '^HPO trial' '$TMP/sm.out' && [ -s '$TMP/sm/model/weights.pth' ]"

# --- 3. resume after kill -9, reuse, changed hp_space, corrupt status ----------------------------
mkdir -p "$TMP/tpl"; cp "$TPL/template.yaml" "$TPL/hpo_config.yaml" "$TMP/tpl/"
fix_backbone "$TMP/tpl/template.yaml"
printf 'num_trials: 2\nimage_resize: 0.5\n' >> "$TMP/tpl/hpo_config.yaml"
R="$TMP/r/model"; H="$R/hpo"
run_r() { train "$TMP/tpl" "$R" --hpo-time-ratio 50 "$@" params --model.input_size 128x96 --learning_parameters.num_iters 1; }
wait_for() { # wait_for PID CONDITION: polls until the condition holds or the process ended
    local pid=$1 i; for i in $(seq 1 2400); do eval "$2" && return 0; kill -0 "$pid" 2>/dev/null || return 1; sleep 0.25; done; return 1
}
(EXEC=exec run_r </dev/null >"$TMP/b.out" 2>&1) & pid=$!
wait_for $pid "[ -e '$H/hpopt_trial_1.json' ]"; found=$?
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
check "killed (-9) while trial 1 ran" "[ $found -eq 0 ] && ! grep -q best_config_id '$H/hpopt_status.json'"
$PY - "$H" > "$TMP/kept_before.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1] + "/hpopt_status.json"))
print(json.dumps({e["trial_id"]: [e["config"], e["score"]] for e in st["config_list"] if e["status"] == 2}, sort_keys=True))
PY
cp "$H/hpopt_trial_0.json" "$TMP/trial0_before.json"
check "trial 0 had finished before the kill" "grep -q '\"0\"' '$TMP/kept_before.json'"

run_r --hpo-resume yes </dev/null >"$TMP/c.out" 2>&1; rc=$?
check "resume: exit 0 (got $rc)" "[ $rc -eq 0 ]"
check "resume: announced" "grep -q 'Resuming HPO' '$TMP/c.out'"
check "resume: trial 0 not rerun" "! grep -q '^HPO trial 0:' '$TMP/c.out' && grep -q '^HPO trial 1:' '$TMP/c.out'"
$PY - "$H" "$TMP/kept_before.json" <<'PY'; check "resume: finished trials kept (config and score), search complete" "[ $? -eq 0 ]"
import json, sys
st = json.load(open(sys.argv[1] + "/hpopt_status.json"))
before = json.load(open(sys.argv[2]))
now = {str(e["trial_id"]): [e["config"], e["score"]] for e in st["config_list"]}
assert before and all(now[k] == v for k, v in before.items()), (before, now)
assert len(st["config_list"]) == 2 and all(e["status"] == 2 for e in st["config_list"]), st["config_list"]
assert "best_config_id" in st
PY
check "resume: trial 0 file unchanged" "cmp -s '$TMP/trial0_before.json' '$H/hpopt_trial_0.json'"
check "resume: weights written" "[ -s '$R/weights.pth' ]"

md5sum "$H"/hpopt_*.json > "$TMP/md5_before"
run_r </dev/null >"$TMP/d.out" 2>&1; rc=$?
check "reuse: exit 0 (got $rc)" "[ $rc -eq 0 ]"
check "reuse: says so (stdin is not a terminal)" "grep -q 'Reusing previously found hyper-parameters' '$TMP/d.out'"
check "reuse: no trial ran" "! grep -q '^HPO trial' '$TMP/d.out' && grep -qF 'Best Hyper-parameters' '$TMP/d.out'"
check "reuse: status and trial files unchanged" "md5sum -c --quiet '$TMP/md5_before'"

sed -i 's/      - 0.1$/      - 0.05/' "$TMP/tpl/hpo_config.yaml"
(EXEC=exec run_r </dev/null >"$TMP/e.out" 2>&1) & pid=$!
wait_for $pid "grep -q '^HPO trial 0:' '$TMP/e.out'"
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
check "changed hp_space: reruns without asking" "grep -q 'configuration changed' '$TMP/e.out' && grep -q '^HPO trial 0:' '$TMP/e.out'"
check "changed hp_space: new status records the new range" "grep -q '0.05' '$H/hpopt_status.json' && ! grep -q 'best_config_id' '$H/hpopt_status.json'"

printf '{"search_algorithm": "smbo", "search_sp' > "$H/hpopt_status.json"
run_r </dev/null >"$TMP/f.out" 2>"$TMP/f.err"; rc=$?
check "corrupt status: exit 1 (got $rc)" "[ $rc -eq 1 ]"
check "corrupt status: clear error" "grep -q 'hpopt_status.json: corrupt.*moved aside' '$TMP/f.err'"
check "corrupt status: moved aside, not overwritten" \
    "[ ! -e '$H/hpopt_status.json' ] && grep -qF 'search_sp' \"\$(ls '$H'/hpopt_status.json.corrupt-* | head -1)\""
check "corrupt status: no trial ran" "! grep -q '^HPO trial' '$TMP/f.out'"
finish
