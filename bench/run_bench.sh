#!/usr/bin/env bash
# run_bench.sh - ote-c vs PyTorch, side by side, in one run.
#
#   bench/run_bench.sh [BUILD_DIR=build] [STEPS=5]
#   env: CONFIGS="320x320 512x512 736x992" BATCHES="1 8" MODES="fast default" RUNS=1
#        RESULTS=file (append the raw results there and print the table of everything in it)
#
# RUNS=R repeats the whole sweep R times; the table then shows, per cell, the median over the runs,
# and each ratio is the median of the per-run ratios (both sides of a ratio come from the same run,
# minutes apart at most). Raw lines: "<who> <run> <json>".
#
# For every configuration (H x W, batch) it runs, back to back so they see the same machine load:
#   ote-c      BUILD_DIR/bench_detector --only HxW --batch N
#   torch fast bench/bench_torch.py --mode fast   (the tuned peer: channels_last, LD_PRELOAD=libjemalloc.so.2,
#              MALLOC_CONF=oversize_threshold:1,background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1)
#   torch def  bench/bench_torch.py --mode default (NCHW, glibc malloc)
# each in its own process (peak RSS per configuration), then prints a markdown table of the medians
# and the ote-c / torch-fast ratios. Needs libjemalloc2 (tools/scripts/install-deps.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
STEPS=${2:-5}
CONFIGS=${CONFIGS:-"320x320 512x512 736x992"}
BATCHES=${BATCHES:-"1 8"}
MODES=${MODES:-"fast default"}
RUNS=${RUNS:-1}
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
TUNED=oversize_threshold:1,background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1
[ -x "$BUILD_DIR/bench_detector" ] || { echo "run_bench: $BUILD_DIR/bench_detector not built" >&2; exit 1; }
[ -f "$JEMALLOC" ] || { echo "run_bench: $JEMALLOC missing (apt-get install libjemalloc2)" >&2; exit 1; }
if [ -n "${RESULTS:-}" ]; then
  OUT=$RESULTS
  touch "$OUT"
else
  OUT=$(mktemp)
  trap 'rm -f "$OUT"' EXIT
fi
echo "run_bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), steps $STEPS"
[ -x "$BUILD_DIR/ote" ] && echo "run_bench: $("$BUILD_DIR/ote" --version | tr '\n' ';')"
echo "run_bench: torch fast = channels_last + LD_PRELOAD=$JEMALLOC MALLOC_CONF=$TUNED; torch default = NCHW, glibc malloc"
RUN0=$(cut -d' ' -f2 "$OUT" | grep -E '^[0-9]+$' | sort -n | tail -1 || true)
RUN0=${RUN0:-0}
for r in $(seq 1 "$RUNS"); do
  run=$((RUN0 + r))
  for hw in $CONFIGS; do
    for n in $BATCHES; do
      "$BUILD_DIR/bench_detector" --only "$hw" --batch "$n" --steps "$STEPS" | sed -n "s/^RESULT /ote $run /p" | tee -a "$OUT"
      case " $MODES " in *" fast "*)
        LD_PRELOAD=$JEMALLOC MALLOC_CONF=$TUNED /usr/bin/python3 bench/bench_torch.py --mode fast --only "$hw" --batch "$n" --steps "$STEPS" \
          | sed -n "s/^RESULT /fast $run /p" | tee -a "$OUT" ;;
      esac
      case " $MODES " in *" default "*)
        /usr/bin/python3 bench/bench_torch.py --mode default --only "$hw" --batch "$n" --steps "$STEPS" \
          | sed -n "s/^RESULT /default $run /p" | tee -a "$OUT" ;;
      esac
    done
  done
done
/usr/bin/python3 - "$OUT" <<'EOF'
import json, statistics, sys
runs = {}  # (h, w, n) -> who -> run -> result
for line in open(sys.argv[1]):
    parts = line.split(' ', 2)
    if len(parts) < 3 or not parts[1].isdigit():
        continue  # a line of the older format (no run number)
    who, run, r = parts[0], int(parts[1]), json.loads(parts[2])
    runs.setdefault((r['h'], r['w'], r['n']), {}).setdefault(who, {})[run] = r

def med(d, who, k):
    v = [r[k] for r in d.get(who, {}).values() if k in r]
    return statistics.median(v) if v else None

def ratio(d, k):
    both = set(d.get('ote', {})) & set(d.get('fast', {}))
    v = [d['ote'][i][k] / d['fast'][i][k] for i in both]
    return '%.2fx' % statistics.median(v) if v else 'n/a'

def f(x, fmt='%.2f'):
    return 'n/a' if x is None else fmt % x

print()
print('| H x W | N | runs | train img/s ote-c | torch fast | torch default | ote-c / fast | infer img/s ote-c | torch fast |'
      ' ote-c / fast | conv GFLOP/s ote-c (step) | ote-c (in convs) | torch fast (step) | CPU s/step ote-c | torch fast |'
      ' peak RSS MB ote-c | torch fast | torch default |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for (h, w, n), d in sorted(runs.items(), key=lambda kv: (kv[0][0] * kv[0][1], kv[0][2])):
    nr = max(len(v) for v in d.values())
    print('| %dx%d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
        h, w, n, nr, f(med(d, 'ote', 'train_ips')), f(med(d, 'fast', 'train_ips')), f(med(d, 'default', 'train_ips')),
        ratio(d, 'train_ips'), f(med(d, 'ote', 'infer_ips')), f(med(d, 'fast', 'infer_ips')), ratio(d, 'infer_ips'),
        f(med(d, 'ote', 'gflops'), '%.0f'), f(med(d, 'ote', 'conv_gflops_in'), '%.0f'), f(med(d, 'fast', 'gflops'), '%.0f'),
        f(med(d, 'ote', 'cpu_step')), f(med(d, 'fast', 'cpu_step')), f(med(d, 'ote', 'rss_mb'), '%.0f'),
        f(med(d, 'fast', 'rss_mb'), '%.0f'), f(med(d, 'default', 'rss_mb'), '%.0f')))
EOF
