#!/usr/bin/env bash
# run_bench.sh - ote-c vs PyTorch, side by side, in one run.
#
#   bench/run_bench.sh [BUILD_DIR=build] [STEPS=5]
#   env: CONFIGS="320x320 512x512 736x992" BATCHES="1 8" MODES="fast default"
#        RESULTS=file (append the raw results there and print the table of everything in it)
#
# For every configuration (H x W, batch) it runs, back to back so they see the same machine load:
#   ote-c      BUILD_DIR/bench_detector --only HxW --batch N
#   torch fast bench/bench_torch.py --mode fast   (channels_last, LD_PRELOAD=libjemalloc.so.2)
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
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
[ -x "$BUILD_DIR/bench_detector" ] || { echo "run_bench: $BUILD_DIR/bench_detector not built" >&2; exit 1; }
[ -f "$JEMALLOC" ] || { echo "run_bench: $JEMALLOC missing (apt-get install libjemalloc2)" >&2; exit 1; }
if [ -n "${RESULTS:-}" ]; then
  OUT=$RESULTS
  touch "$OUT"
else
  OUT=$(mktemp)
  trap 'rm -f "$OUT"' EXIT
fi
echo "run_bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), steps $STEPS"
for hw in $CONFIGS; do
  for n in $BATCHES; do
    "$BUILD_DIR/bench_detector" --only "$hw" --batch "$n" --steps "$STEPS" | sed -n 's/^RESULT /ote /p' | tee -a "$OUT"
    case " $MODES " in *" fast "*)
      LD_PRELOAD=$JEMALLOC /usr/bin/python3 bench/bench_torch.py --mode fast --only "$hw" --batch "$n" --steps "$STEPS" \
        | sed -n 's/^RESULT /fast /p' | tee -a "$OUT" ;;
    esac
    case " $MODES " in *" default "*)
      /usr/bin/python3 bench/bench_torch.py --mode default --only "$hw" --batch "$n" --steps "$STEPS" \
        | sed -n 's/^RESULT /default /p' | tee -a "$OUT" ;;
    esac
  done
done
/usr/bin/python3 - "$OUT" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    who, js = line.split(' ', 1)
    r = json.loads(js)
    rows.setdefault((r['h'], r['w'], r['n']), {})[who] = r  # a later run of the same row replaces an earlier one
print()
print('| H x W | N | train img/s ote-c | torch fast | torch default | ote-c / fast | infer img/s ote-c | torch fast |'
      ' ote-c / fast | conv GFLOP/s ote-c | torch fast | CPU s/step ote-c | torch fast | peak RSS MB ote-c | torch fast |'
      ' torch default |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
def g(d, who, k, fmt='%.2f'):
    return fmt % d[who][k] if who in d else 'n/a'
for (h, w, n), d in sorted(rows.items(), key=lambda kv: (kv[0][0] * kv[0][1], kv[0][2])):
    rt = '%.2fx' % (d['ote']['train_ips'] / d['fast']['train_ips']) if 'ote' in d and 'fast' in d else 'n/a'
    ri = '%.2fx' % (d['ote']['infer_ips'] / d['fast']['infer_ips']) if 'ote' in d and 'fast' in d else 'n/a'
    def c(who):
        return '%.2f' % d[who]['cpu_step'] if who in d and 'cpu_step' in d[who] else 'n/a'
    print('| %dx%d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
        h, w, n, g(d, 'ote', 'train_ips'), g(d, 'fast', 'train_ips'), g(d, 'default', 'train_ips'), rt,
        g(d, 'ote', 'infer_ips'), g(d, 'fast', 'infer_ips'), ri, g(d, 'ote', 'gflops', '%.0f'),
        g(d, 'fast', 'gflops', '%.0f'), c('ote'), c('fast'), g(d, 'ote', 'rss_mb', '%.0f'), g(d, 'fast', 'rss_mb', '%.0f'),
        g(d, 'default', 'rss_mb', '%.0f')))
EOF
