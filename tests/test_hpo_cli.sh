#!/bin/bash
# test_hpo_cli.sh - `ote hpo --objective-cmd` end to end with tiny shell/awk objectives: the table,
# the files, failed trials, mode min, usage errors (exit 2), and kill -9 during a trial followed by
# --hpo-resume yes keeping every finished trial. JSON is inspected with /usr/bin/python3.
set -u
. "$(dirname "$0")/lib.sh"
OTE=${OTE_BIN:?OTE_BIN not set}

cat > "$TMP/cfg.yaml" <<'Y'
metric: loss
mode: min
num_trials: 7
hp_space:
  learning_parameters.learning_rate:
    param_type: quniform
    range: [0.001, 0.1, 0.001]
  learning_parameters.batch_size:
    param_type: qloguniform
    range: [4, 8, 2]
Y
# objective: (100 lr - 3)^2 + (bs - 6)^2 / 4, printed after some chatter
cat > "$TMP/obj.sh" <<'S'
#!/bin/sh
echo "epoch 1 ..."
echo "$@" | awk '{for(i=1;i<=NF;i++){if($i=="--learning_parameters.learning_rate")lr=$(i+1); if($i=="--learning_parameters.batch_size")bs=$(i+1)}; printf "%.12g\n", (100*lr-3)^2 + (bs-6)^2/4}'
S
chmod +x "$TMP/obj.sh"

# 1. plain run: table, files, mode min
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/obj.sh" --work-dir "$TMP/w1" > "$TMP/out1" 2> "$TMP/err1"
rc=$?
check "plain run exits 0 (rc=$rc)" "[ $rc -eq 0 ]"
check "table header printed verbatim" "grep -qxF '|  #  | learning_parameters.learning_rate  | learning_parameters.batch_size  |        score        |' '$TMP/out1'"
check "7 table rows" "[ \$(grep -cE '^\|  +[0-9]+ \|' '$TMP/out1') -eq 7 ]"
check "Best Hyper-parameters + dict" "grep -A1 -x 'Best Hyper-parameters' '$TMP/out1' | grep -qE \"^\\{'learning_parameters.batch_size': [468], 'learning_parameters.learning_rate': 0\\.[0-9]+\\}\$\""
check "status and 7 trial files written" "[ -f '$TMP/w1/hpopt_status.json' ] && [ \$(ls '$TMP/w1'/hpopt_trial_*.json | wc -l) -eq 7 ]"
/usr/bin/python3 - "$TMP/w1" <<'P' && ok "mode min: best_config_id is the smallest score; fields present; scores recomputed" || bad "mode min / fields"
import json, sys
d = sys.argv[1]
s = json.load(open(d + '/hpopt_status.json'))
for k in ['search_algorithm', 'search_space', 'metric', 'subset_ratio', 'image_resize', 'early_stop',
          'max_iterations', 'full_dataset_size', 'config_list', 'num_gen_config', 'best_config_id']:
    assert k in s, k
cl = s['config_list']
assert s['mode'] == 'min' and len(cl) == 7
for e in cl:
    c = e['config']
    want = (100 * c['learning_parameters.learning_rate'] - 3) ** 2 + (c['learning_parameters.batch_size'] - 6) ** 2 / 4
    assert abs(e['score'] - want) < 1e-9 * max(1, want), (e, want)
    t = json.load(open('%s/hpopt_trial_%d.json' % (d, e['trial_id'])))
    assert t['status'] == 2 and len(t['scores']) == 1 and t['median'] == t['scores'] and len(t['seconds']) == 1
best = min(range(7), key=lambda i: cl[i]['score'])
assert s['best_config_id'] == best, (s['best_config_id'], best)
keys = [tuple(sorted(e['config'].items())) for e in cl]
assert len(set(keys)) == 7, 'duplicate proposal'
P

# 2. failing commands: call 3 exits 3, call 5 prints a non-number; the search goes on
cat > "$TMP/flaky.sh" <<S
#!/bin/sh
n=\$(cat "$TMP/count" 2>/dev/null || echo 0); n=\$((n + 1)); echo \$n > "$TMP/count"
[ \$n -eq 3 ] && { echo "diverged" >&2; exit 3; }
[ \$n -eq 5 ] && { echo "nan?"; echo "not a number"; exit 0; }
exec "$TMP/obj.sh" "\$@"
S
chmod +x "$TMP/flaky.sh"
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/flaky.sh" --work-dir "$TMP/w2" > "$TMP/out2" 2> "$TMP/err2"
rc=$?
check "run with failing trials exits 0 (rc=$rc)" "[ $rc -eq 0 ]"
/usr/bin/python3 - "$TMP/w2" <<'P' && ok "trials 2 and 4 FAILED (7) with score null and reasons; others STOP" || bad "failed trials recorded"
import json, sys
d = sys.argv[1]
cl = json.load(open(d + '/hpopt_status.json'))['config_list']
assert len(cl) == 7
for e in cl:
    if e['trial_id'] in (2, 4):
        assert e['status'] == 7 and e['score'] is None, e
    else:
        assert e['status'] == 2 and e['score'] is not None, e
assert 'exited with status 3' in json.load(open(d + '/hpopt_trial_2.json'))['stop_reason']
assert 'not a number' in json.load(open(d + '/hpopt_trial_4.json'))['stop_reason']
P
check "5 table rows (failed trials have no score)" "[ \$(grep -cE '^\|  +[0-9]+ \|' '$TMP/out2') -eq 5 ]"

# 3. usage errors exit 2
"$OTE" hpo > /dev/null 2>&1; rc=$?; check "no arguments -> exit 2 (rc=$rc)" "[ $rc -eq 2 ]"
"$OTE" hpo --bogus 1 > /dev/null 2> "$TMP/e"; rc=$?
check "unknown option -> exit 2 with one line (rc=$rc)" "[ $rc -eq 2 ] && [ \$(wc -l < '$TMP/e') -eq 1 ] && grep -q \"unknown option '--bogus'\" '$TMP/e'"
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd true > /dev/null 2>&1; rc=$?
check "missing --work-dir -> exit 2 (rc=$rc)" "[ $rc -eq 2 ]"
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd true --work-dir "$TMP/x" --hpo-resume maybe > /dev/null 2>&1; rc=$?
check "bad --hpo-resume -> exit 2 (rc=$rc)" "[ $rc -eq 2 ]"
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd true --work-dir "$TMP/x" --num-trials 0 > /dev/null 2>&1; rc=$?
check "bad --num-trials -> exit 2 (rc=$rc)" "[ $rc -eq 2 ]"
printf 'hp_space:\n  a:\n    param_type: uniform\n    range: [0, 1]\n    step: 2\n' > "$TMP/bad.yaml"
"$OTE" hpo --hpo-config "$TMP/bad.yaml" --objective-cmd true --work-dir "$TMP/x" > /dev/null 2> "$TMP/e"; rc=$?
check "config error names file:line -> exit 2 (rc=$rc)" "[ $rc -eq 2 ] && grep -q 'bad.yaml:5: .*unknown key .step.' '$TMP/e'"
"$OTE" hpo --hpo-config "$TMP/missing.yaml" --objective-cmd true --work-dir "$TMP/x" > /dev/null 2> "$TMP/e"; rc=$?
check "missing config file -> exit 1 (rc=$rc)" "[ $rc -eq 1 ] && grep -q 'missing.yaml' '$TMP/e'"
"$OTE" hpo --help > "$TMP/h"; rc=$?
check "--help exits 0 and documents --objective-cmd" "[ $rc -eq 0 ] && grep -q -- '--objective-cmd' '$TMP/h'"

# 4. kill -9 during trial 3, then --hpo-resume yes
cat > "$TMP/slow.sh" <<S
#!/bin/sh
n=\$(cat "$TMP/count4" 2>/dev/null || echo 0); n=\$((n + 1)); echo \$n > "$TMP/count4"
if [ \$n -eq 4 ]; then echo \$\$ > "$TMP/hang.pid"; exec sleep 60; fi
exec "$TMP/obj.sh" "\$@"
S
chmod +x "$TMP/slow.sh"
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/slow.sh" --work-dir "$TMP/w4" > "$TMP/out4" 2>&1 &
pid=$!
for i in $(seq 1 200); do [ -f "$TMP/hang.pid" ] && break; sleep 0.05; done
sleep 0.1
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ -f "$TMP/hang.pid" ] && kill "$(cat "$TMP/hang.pid")" 2>/dev/null
cp "$TMP/w4/hpopt_status.json" "$TMP/before.json"
/usr/bin/python3 - "$TMP/before.json" <<'P' && ok "after kill -9: trials 0-2 STOP, trial 3 RUNNING, no best" || bad "state after kill -9"
import json, sys
s = json.load(open(sys.argv[1]))
cl = s['config_list']
assert [e['status'] for e in cl] == [2, 2, 2, 1], [e['status'] for e in cl]
assert 'best_config_id' not in s
P
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/obj.sh" --work-dir "$TMP/w4" --hpo-resume yes > "$TMP/out5" 2>&1
rc=$?
check "resume after kill -9 exits 0 (rc=$rc)" "[ $rc -eq 0 ]"
check "resume announced" "grep -q 'Resuming HPO (--hpo-resume yes)' '$TMP/out5'"
check "only trials 3-6 ran on resume" "[ \$(grep -c '^HPO trial' '$TMP/out5') -eq 4 ] && grep -q '^HPO trial 3:' '$TMP/out5' && ! grep -q '^HPO trial [012]:' '$TMP/out5'"
/usr/bin/python3 - "$TMP/before.json" "$TMP/w4/hpopt_status.json" <<'P' && ok "finished trials kept unchanged; interrupted trial rerun with same values; 7 trials; best set" || bad "resume result"
import json, sys
b = json.load(open(sys.argv[1]))['config_list']
s = json.load(open(sys.argv[2]))
a = s['config_list']
assert a[:3] == b[:3], 'finished trials changed'
assert a[3]['config'] == b[3]['config'] and a[3]['status'] == 2
assert len(a) == 7 and all(e['status'] == 2 for e in a) and 'best_config_id' in s
P
"$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/obj.sh" --work-dir "$TMP/w4" < /dev/null > "$TMP/out6" 2>&1
check "finished run reused without a trial (stdin not a terminal)" "grep -q 'Reusing previously found hyper-parameters' '$TMP/out6' && ! grep -q '^HPO trial' '$TMP/out6' && grep -qx 'Best Hyper-parameters' '$TMP/out6'"
ls "$TMP/w4" | grep -q '\.tmp-[0-9]*$' && bad "temporary files left behind" || ok "no temporary files left"

# 5. kill -9 at arbitrary moments (also during file writes): the status file always parses, and
# resuming after each kill finishes with every finished trial kept
cat > "$TMP/quick.sh" <<S
#!/bin/sh
sleep 0.03
exec "$TMP/obj.sh" "\$@"
S
chmod +x "$TMP/quick.sh"
printf 'metric: loss\nmode: min\nnum_trials: 12\nhp_space:\n  x:\n    param_type: uniform\n    range: [0, 1]\n  learning_parameters.batch_size:\n    param_type: choice\n    range: [4, 6, 8]\n' > "$TMP/cfg5.yaml"
ok5=1
for k in 1 2 3 4 5 6; do
    [ -f "$TMP/w5/hpopt_status.json" ] && cp "$TMP/w5/hpopt_status.json" "$TMP/prev5.json"
    "$OTE" hpo --hpo-config "$TMP/cfg5.yaml" --objective-cmd "$TMP/quick.sh" --work-dir "$TMP/w5" --hpo-resume yes > /dev/null 2>&1 &
    p5=$!
    sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
    kill -9 $p5 2>/dev/null
    wait $p5 2>/dev/null
    if [ -f "$TMP/w5/hpopt_status.json" ]; then
        /usr/bin/python3 - "$TMP/w5" "$TMP/prev5.json" <<'P' || ok5=0
import json, os, sys
d, prev = sys.argv[1], sys.argv[2]
s = json.load(open(d + '/hpopt_status.json'))           # must parse: old or new, never half
if os.path.exists(prev):
    p = json.load(open(prev))['config_list']
    a = s['config_list']
    for e in p:                                          # finished trials survive every kill
        if e['status'] == 2:
            assert a[e['trial_id']] == e, ('finished trial changed', e)
for e in s['config_list']:
    if e['status'] == 2:
        json.load(open('%s/hpopt_trial_%d.json' % (d, e['trial_id'])))
P
    fi
done
"$OTE" hpo --hpo-config "$TMP/cfg5.yaml" --objective-cmd "$TMP/quick.sh" --work-dir "$TMP/w5" --hpo-resume yes > /dev/null 2>&1
rc=$?
/usr/bin/python3 - "$TMP/w5" <<'P' || ok5=0
import json, sys
s = json.load(open(sys.argv[1] + '/hpopt_status.json'))
assert len(s['config_list']) == 12 and all(e['status'] == 2 for e in s['config_list']) and 'best_config_id' in s
P
check "6 random kill -9s: status always valid, finished trials kept, resume completes 12 trials (rc=$rc)" "[ $ok5 -eq 1 ] && [ $rc -eq 0 ]"

# issue 13 item 6: a hanging objective cannot hang the search: the budget and --trial-timeout kill
# the trial's whole process group, the trial is recorded failed, the search ends in time
cat > "$TMP/hang.sh" <<'S'
#!/bin/sh
echo $$ >> "$HANG_PIDS"
sleep 1000 &
echo $! >> "$HANG_PIDS"
wait
S
chmod +x "$TMP/hang.sh"
t0=$(date +%s.%N)
HANG_PIDS="$TMP/hang_pids" timeout 60 "$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/hang.sh" --work-dir "$TMP/w6" \
    --hpo-resume no --budget-seconds 2 >"$TMP/out6" 2>&1
rc=$?
el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
# (a killed grandchild is reaped by init a moment later: allow 3 s)
for _ in $(seq 1 30); do alive=0; for p in $(cat "$TMP/hang_pids" 2>/dev/null); do kill -0 "$p" 2>/dev/null && alive=1; done; [ $alive -eq 0 ] && break; sleep 0.1; done
check "hanging objective, --budget-seconds 2: ends in $el s (< 10), trial killed, nothing left running ($(wc -l <"$TMP/hang_pids") pids) (rc=$rc)" \
    "[ $rc -ne 124 ] && awk -v e=$el 'BEGIN{exit !(e < 10)}' && [ $alive -eq 0 ] && grep -q 'killed after .*(the --budget-seconds budget ended)' '$TMP/out6'"
t0=$(date +%s.%N)
HANG_PIDS="$TMP/hang_pids2" timeout 60 "$OTE" hpo --hpo-config "$TMP/cfg.yaml" --objective-cmd "$TMP/hang.sh" --work-dir "$TMP/w7" \
    --hpo-resume no --num-trials 2 --trial-timeout 1 >"$TMP/out7" 2>&1
rc=$?
el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
check "--trial-timeout 1: both trials killed after ~1 s, recorded failed, ends in $el s (< 10) (rc=$rc)" \
    "[ $rc -ne 124 ] && awk -v e=$el 'BEGIN{exit !(e < 10)}' && [ \$(grep -c 'killed after 1 s (--trial-timeout)' '$TMP/out7') -eq 2 ]"

finish
