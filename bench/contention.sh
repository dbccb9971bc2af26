#!/usr/bin/env bash
# contention.sh - training speed quiet and beside one busy process, per OpenMP wait policy.
#
#   bench/contention.sh [BUILD_DIR=build]
#   env: CONFIGS="320x320:1 320x320:8" RUNS=3 STEPS=5
#        POLICIES="ote libgomp OMP_WAIT_POLICY=passive" (each: "ote" = what ote-c chooses by itself,
#        engine/eng.h eng_omp_policy; "libgomp" = libgomp's default spinning; or NAME=VALUE for the env)
#
# For each run r and each configuration: for each policy, bench_detector quiet, then the same with
# a CPU-bound busy loop (one process, started and stopped here) beside it. Runs alternate
# (quiet/busy, policy by policy) so drifting load hits all alike. Prints the CPU, the load before,
# every figure, and a table of medians: train img/s quiet, busy, busy/quiet, and quiet vs libgomp's.
# Needs a machine with nothing else running (check `uptime`).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
CONFIGS=${CONFIGS:-"320x320:1 320x320:8"}
RUNS=${RUNS:-3}
STEPS=${STEPS:-5}
POLICIES=${POLICIES:-"ote libgomp OMP_WAIT_POLICY=passive"}
B=$BUILD_DIR/bench_detector
[ -x "$B" ] || { echo "contention: $B not built" >&2; exit 1; }
OUT=$(mktemp)
BUSY=
cleanup() { [ -n "$BUSY" ] && kill "$BUSY" 2>/dev/null || true; rm -f "$OUT"; }
trap cleanup EXIT
echo "contention: $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "contention: ISA $("$BUILD_DIR/ote" --version | sed -n 's/^ISA: //p'), $RUNS runs, $STEPS steps"
one() { # policy config state
  local pol=$1 hw=${2%%:*} n=${2##*:} st=$3 envs=()
  case $pol in
    ote) envs=() ;;
    libgomp) envs=(OTE_OMP_POLICY=libgomp) ;;
    *) envs=("$pol") ;;
  esac
  local ips
  ips=$(env "${envs[@]}" "$B" --only "$hw" --batch "$n" --steps "$STEPS" | sed -n 's/^RESULT .*"train_ips": \([0-9.]*\).*/\1/p')
  echo "$pol $2 $st $ips" | tee -a "$OUT"
}
for r in $(seq 1 "$RUNS"); do
  for c in $CONFIGS; do
    for pol in $POLICIES; do
      one "$pol" "$c" quiet
      ( while :; do :; done ) &
      BUSY=$!
      one "$pol" "$c" busy
      kill "$BUSY"; wait "$BUSY" 2>/dev/null || true; BUSY=
    done
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import statistics, sys
d = {}
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 4 and p[3]:
        d.setdefault((p[0], p[1], p[2]), []).append(float(p[3]))
pols = list(dict.fromkeys(k[0] for k in d))
cfgs = list(dict.fromkeys(k[1] for k in d))
m = lambda k: statistics.median(d[k]) if k in d else float('nan')
print('\n| config (HxW:batch) | policy | train img/s quiet | beside a busy process | busy / quiet | quiet / libgomp quiet |')
print('|---|---|---|---|---|---|')
for c in cfgs:
    for p in pols:
        q, b, g = m((p, c, 'quiet')), m((p, c, 'busy')), m(('libgomp', c, 'quiet'))
        print('| %s | %s | %.2f | %.2f | %.0f%% | %s |' % (c, p, q, b, 100 * b / q, '%.0f%%' % (100 * q / g) if g == g else 'n/a'))
PY
