#!/usr/bin/env bash
# test_mpi_train.sh - `mpirun -np 2 ote train` (data-parallel, train/trainer.h) on tiny demo data
# against the same command in one process:
#   - both exit 0; the MPI run writes one weights.pth, label_schema.json, last.pth and metrics.csv
#     (rank 0 only: no second copy, no temporary files) and says it trained data-parallel;
#   - metrics.csv has the same rows with the same epochs and iteration counts as the 1-process run
#     (same batch sequence, same schedule), and the MPI run's best epoch and early-stopping state
#     come from rank 0 (one summary);
#   - the log is printed once: one "training:" line, one "epoch N/N done" line per epoch, the
#     same number of progress lines as the 1-process run;
#   - batch_size 1 < 2 processes is a clear error (exit 1, one message, no hang).
# 2 ranks x 1 OpenMP thread on loopback (--oversubscribe --bind-to none); the launcher is
# $OTE_MPIRUN (CMake's TEST_ENV).
set -u
. "$(dirname "$0")/lib.sh"
OTE="${OTE_BIN:-build/ote}"
SRC="${OTE_SRC:-.}"
MPIRUN="${OTE_MPIRUN:-}"
TPL="$SRC/models/templates/gen3_mobilenetV2_ATSS/template.yaml"
if [ -z "$MPIRUN" ] || ! [ -x "$MPIRUN" ]; then
    bad "no MPI launcher (OTE_MPIRUN='$MPIRUN'): build with libopenmpi-dev and openmpi-bin"
    finish
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
MPI=("$MPIRUN" -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS)
for v in LSAN_OPTIONS ASAN_OPTIONS UBSAN_OPTIONS; do [ -n "${!v:-}" ] && MPI+=(-x "$v"); done

"$OTE" make-demo-data "$TMP/demo" --train 10 --val 4 >/dev/null || bad "make-demo-data failed"
D="$TMP/demo"
DATA=(--train-ann-files "$D/annotations/train.json" --train-data-roots "$D/train"
      --val-ann-files "$D/annotations/val.json" --val-data-roots "$D/val")
# batch 4 over 10 images: 3 batches per pass, the last of 2 images (1 per rank)
PARAMS=(params --model.input_size 128x96 --learning_parameters.num_iters 2 --learning_parameters.batch_size 4
        --learning_parameters.learning_rate_warmup_iters 2)

expect_case "one process"
"$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$TMP/one" "${PARAMS[@]}" >"$TMP/one.log" 2>"$TMP/one.err"
rc=$?
check "1 process: exit 0" "[ $rc -eq 0 ]" || head -5 "$TMP/one.err"

expect_case "mpirun -np 2"
"${MPI[@]}" "$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$TMP/two" "${PARAMS[@]}" >"$TMP/two.log" 2>"$TMP/two.err"
rc=$?
check "mpirun -np 2 ote train: exit 0" "[ $rc -eq 0 ]" || head -5 "$TMP/two.err"
check "weights.pth, label_schema.json, last.pth, metrics.csv written" \
    "[ -s '$TMP/two/weights.pth' ] && [ -s '$TMP/two/label_schema.json' ] && [ -s '$TMP/two/last.pth' ] && [ -s '$TMP/two/metrics.csv' ]"
n_w=$(find "$TMP/two" -name '*.pth' | wc -l)
check "exactly two .pth files (weights, last): $n_w" "[ $n_w -eq 2 ]"
check "no temporary files left" "[ -z \"\$(find '$TMP/two' -name '*.tmp*')\" ]"
check "the log says data-parallel, 2 processes x 1 thread" "grep -q '^data-parallel: 2 processes x 1 threads' '$TMP/two.log'"
check "nothing on stderr: $(head -c 200 "$TMP/two.err" | tr '\n' ' ')" "[ ! -s '$TMP/two.err' ]"

expect_case "same schedule as one process"
cut -d, -f1,2 "$TMP/one/metrics.csv" >"$TMP/one.iters"
cut -d, -f1,2 "$TMP/two/metrics.csv" >"$TMP/two.iters"
rows=$(($(wc -l <"$TMP/one.iters") - 1))
check "metrics.csv: the same $rows epoch rows with the same iteration counts ($(tr '\n' ' ' <"$TMP/two.iters"))" \
    "[ $rows -ge 2 ] && cmp -s '$TMP/one.iters' '$TMP/two.iters'"
for what in "^training: " "done: val mAP" "^epoch [0-9]*/[0-9]* iter " "^training finished: " "^best model: "; do
    n1=$(grep -c "$what" "$TMP/one.log")
    n2=$(grep -c "$what" "$TMP/two.log")
    check "log lines '$what': $n2 with 2 ranks, $n1 alone" "[ $n1 -ge 1 ] && [ $n1 -eq $n2 ]"
done
it1=$(grep "^training finished" "$TMP/one.log" | sed 's/.*epochs, \([0-9]*\) iterations, \([0-9]*\) images.*/\1 \2/')
it2=$(grep "^training finished" "$TMP/two.log" | sed 's/.*epochs, \([0-9]*\) iterations, \([0-9]*\) images.*/\1 \2/')
check "iterations and images trained: '$it2' with 2 ranks, '$it1' alone" "[ -n '$it1' ] && [ '$it1' = '$it2' ]"

expect_case "batch smaller than the process count"
"${MPI[@]}" "$OTE" train "$TPL" "${DATA[@]}" --save-model-to "$TMP/bad" params --model.input_size 128x96 \
    --learning_parameters.num_iters 1 --learning_parameters.batch_size 1 >"$TMP/bad.log" 2>"$TMP/bad.err"
rc=$?
check "batch_size 1 under -np 2: non-zero exit ($rc)" "[ $rc -ne 0 ]"
check "the message names batch_size and the 2 processes" "grep -q 'batch_size 1 is smaller than the 2 processes' '$TMP/bad.err'"
check "no weights written" "[ ! -e '$TMP/bad/weights.pth' ]"
finish
