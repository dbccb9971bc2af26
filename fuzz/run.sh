#!/usr/bin/env bash
# fuzz/run.sh BUILD_DIR SECONDS [NAME...] - runs the libFuzzer harnesses BUILD_DIR/fuzz/fuzz_NAME
# (default: all six) for SECONDS each, one after the other, and fails on the first finding.
#   BUILD_DIR is a build configured with -DOTE_FUZZ=ON -DCMAKE_C_COMPILER=clang-14.
#   Seeds: BUILD_DIR/fuzz-seeds/NAME, made once by fuzz/seeds.py from the real files (../shared,
#   or $OTE_SHARED). New inputs are kept in BUILD_DIR/fuzz-corpus/NAME, so a later run goes on
#   from there; fuzz/regressions/NAME/ (inputs that were findings once) are replayed too. A crash, leak, UB report, timeout (> 20 s per input) or an allocation beyond 2 GB
#   leaves the input in BUILD_DIR/fuzz-artifacts/ and exits 1.
# Prints one line per harness: executions, coverage (edges), features, corpus size.
# ctest runs it for 20 s per harness (OTE_FUZZ_SECONDS); the long run is
#   bash fuzz/run.sh build-fuzz 600         (six harnesses x 10 min = one hour)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: fuzz/run.sh BUILD_DIR SECONDS [NAME...]" >&2; exit 2; }
build=$(cd "$1" && pwd); secs=$2; shift 2
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(coco results template hpo_config pth tflite)
src=$(cd "$(dirname "$0")/.." && pwd)
shared=${OTE_SHARED:-$src/../shared}
seeds=$build/fuzz-seeds
if [ ! -d "$seeds" ]; then
  rm -rf "$seeds.tmp.$$"
  /usr/bin/python3 "$src/fuzz/seeds.py" "$seeds.tmp.$$" "$shared" >/dev/null
  mv "$seeds.tmp.$$" "$seeds"
fi
mkdir -p "$build/fuzz-artifacts"
status=0
for n in "${names[@]}"; do
  bin=$build/fuzz/fuzz_$n
  [ -x "$bin" ] || { echo "fuzz/run.sh: no harness $bin (build with -DOTE_FUZZ=ON)" >&2; exit 2; }
  [ -d "$seeds/$n" ] || { echo "fuzz/run.sh: no seeds in $seeds/$n" >&2; exit 2; }
  corpus=$build/fuzz-corpus/$n
  log=$build/fuzz-artifacts/$n.log
  mkdir -p "$corpus"
  regress=()  # inputs that once were findings (fuzz/regressions/NAME): replayed first, as seeds
  [ -d "$src/fuzz/regressions/$n" ] && regress=("$src/fuzz/regressions/$n")
  rc=0
  "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
         -artifact_prefix="$build/fuzz-artifacts/$n-" "$corpus" "$seeds/$n" "${regress[@]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  files=$(find "$corpus" -type f | wc -l)
  if [ $rc -ne 0 ]; then
    echo "fuzz_$n: FINDING after ${execs:-?} executions (exit $rc); log $log:" >&2
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -8 >&2 || tail -20 "$log" >&2
    status=1
    break
  fi
  echo "fuzz_$n: ${secs} s, ${execs:-?} executions, cov ${cov:-?} edges, ft ${ft:-?}, corpus $files files: no finding"
done
exit $status
