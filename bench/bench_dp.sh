#!/usr/bin/env bash
# bench_dp.sh - data-parallel training throughput (issue 18): `mpirun -np 2 ote train` with 1
# OpenMP thread per rank against `mpirun -np 1 ote train --threads 2`, same data and settings.
#
#   bench/bench_dp.sh [BUILD_DIR=build]
#   env: RUNS=3 (runs of each, alternating A B A B ...), SIZE=320x320 (model.input_size),
#        BATCH=8, TRAIN=64 (demo training images), EPOCHS=1 (learning_parameters.num_iters)
#
# The figure is the trainer's own "img/s train" of the last epoch line (training images over the
# time spent in training iterations, rank 0's clock; validation excluded), median over the runs.
# Prints the CPU model, core count and load before and after, so a busy machine shows. This is a
# benchmark, not a test: nothing is asserted. Needs openmpi-bin and an MPI build (OTE_MPI).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
RUNS=${RUNS:-3}
SIZE=${SIZE:-320x320}
BATCH=${BATCH:-8}
TRAIN=${TRAIN:-64}
EPOCHS=${EPOCHS:-1}
OTE="$BUILD_DIR/ote"
MPIRUN=${MPIRUN:-$(command -v mpirun || true)}
[ -x "$OTE" ] || { echo "bench_dp: $OTE not built" >&2; exit 1; }
[ -n "$MPIRUN" ] || { echo "bench_dp: mpirun not found (apt-get install openmpi-bin)" >&2; exit 1; }
"$OTE" version | grep -q "MPI: Open MPI built in" || { echo "bench_dp: $OTE built without MPI" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_vader_single_copy_mechanism=none
TMP=$(mktemp -d /tmp/bench_dp.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

echo "bench_dp: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings: input $SIZE, batch $BATCH, $TRAIN demo training images, $EPOCHS epoch(s), $RUNS runs each"
"$OTE" make-demo-data "$TMP/demo" --train "$TRAIN" --val 4 >/dev/null
D="$TMP/demo"
ARGS=(models/templates/gen3_mobilenetV2_ATSS/template.yaml
      --train-ann-files "$D/annotations/train.json" --train-data-roots "$D/train"
      --val-ann-files "$D/annotations/val.json" --val-data-roots "$D/val")
PARAMS=(params --model.input_size "$SIZE" --learning_parameters.batch_size "$BATCH"
        --learning_parameters.num_iters "$EPOCHS")

# one run: prints the last epoch's training img/s
run() { # NP THREADS TAG
    local out="$TMP/out_$3"
    rm -rf "$out"
    OMP_NUM_THREADS=$2 "$MPIRUN" -np "$1" --oversubscribe --bind-to none -x OMP_NUM_THREADS \
        "$OTE" train "${ARGS[@]}" --save-model-to "$out" --threads "$2" "${PARAMS[@]}" >"$TMP/log_$3" 2>&1 ||
        { echo "bench_dp: run $3 failed:" >&2; tail -5 "$TMP/log_$3" >&2; exit 1; }
    grep "done: val mAP" "$TMP/log_$3" | tail -1 | sed 's/.*, \([0-9.]*\) img\/s train.*/\1/'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

A=() B=()
for r in $(seq 1 "$RUNS"); do
    a=$(run 2 1 "a$r")
    b=$(run 1 2 "b$r")
    A+=("$a") B+=("$b")
    echo "run $r: -np 2 x 1 thread $a img/s, -np 1 x 2 threads $b img/s (load $(cut -d' ' -f1 /proc/loadavg))"
done
ma=$(printf '%s\n' "${A[@]}" | median)
mb=$(printf '%s\n' "${B[@]}" | median)
echo
echo "| configuration | train img/s (median of $RUNS) | runs |"
echo "|---|---|---|"
echo "| mpirun -np 2 x 1 thread (data-parallel) | $ma | ${A[*]} |"
echo "| mpirun -np 1 x 2 threads | $mb | ${B[*]} |"
awk -v a="$ma" -v b="$mb" 'BEGIN { if (b > 0) printf "ratio (-np 2 / -np 1): %.3f\n", a / b }'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
