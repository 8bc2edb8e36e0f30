#!/bin/bash
# What checkpointing costs: the standard benchmark (60000x784 teacher data,
# 784-512-256-10, batch 128 per rank, SGD) trained for a few epochs without
# checkpoints, with --checkpoint-dir at the default interval (each epoch's end,
# and every --checkpoint-minutes 10), and with mid-epoch checkpoints every N
# steps. Runs are interleaved (one of each variant per round); prints the
# median wall time per variant, its ratio to no checkpoints, and the cost of
# one checkpoint write. With --compare BIN, BIN (e.g. an nn_dist built before
# the stop-signal flag and the watchdog) runs without checkpoints too: the
# hot loop's own overhead.
# Usage: scripts/bench_checkpoint.sh [--ranks 2] [--epochs 4] [--repeats 5] [--every "100 20"] [--compare BIN]
set -euo pipefail
source "$(dirname "$0")/common.sh"
RANKS=2 EPOCHS=4 REPEATS=5 EVERY="100 20" COMPARE=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --ranks) RANKS=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --every) EVERY=$2; shift 2 ;;
    --compare) COMPARE=$2; shift 2 ;;
    *) echo "bench_checkpoint.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
nn_bench_data
export OMP_NUM_THREADS=1
nn_mpirun_flags "$RANKS"
CK="$WORK/checkpoints"
train=(--data "$DATA" --hidden 512,256 --batch-size 128 --epochs "$EPOCHS" --quiet)
steps_per_epoch=$(( (60000 / RANKS + 127) / 128 ))

variants=("none" "default")
for n in $EVERY; do variants+=("every-$n"); done
[[ -n $COMPARE ]] && variants+=("compare")
declare -A times writes
for ((r = 1; r <= REPEATS; r++)); do
  for v in "${variants[@]}"; do
    rm -rf "$CK"
    bin="$NN_BUILD/nn_dist" flags=()
    case $v in
      none) ;;
      default) flags=(--checkpoint-dir "$CK") ;;
      every-*) flags=(--checkpoint-dir "$CK" --checkpoint-every-steps "${v#every-}" --keep-checkpoints 3) ;;
      compare) bin=$COMPARE ;;
    esac
    start=$(date +%s.%N)
    mpirun "${MPIRUN_FLAGS[@]}" --bind-to none "$bin" "${train[@]}" "${flags[@]}" >/dev/null
    t=$(echo "$(date +%s.%N) - $start" | bc)
    times[$v]+="$t "
    case $v in
      default) writes[$v]=$EPOCHS ;;  # one at each epoch's end
      every-*)  # the mid-epoch ones, beyond the epoch ends
        n=${v#every-} count=0
        for ((g = n; g <= EPOCHS * steps_per_epoch; g += n)); do ((g % steps_per_epoch)) && count=$((count + 1)); done
        writes[$v]=$count ;;
      *) writes[$v]=0 ;;
    esac
  done
  echo "round $r/$REPEATS done" >&2
done
rm -rf "$CK"
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
base=$(echo "${times[none]}" | median)
printf '%-10s %12s %9s %18s %s\n' variant median_s vs_none ms_per_checkpoint "all runs (s)"
for v in "${variants[@]}"; do
  m=$(echo "${times[$v]}" | median)
  ratio=$(echo "scale=4; $m / $base" | bc)
  per="-"
  if [[ $v == every-* ]]; then  # the mid-epoch writes, against the default's epoch-end ones
    def=$(echo "${times[default]}" | median)
    per=$(echo "scale=2; 1000 * ($m - $def) / ${writes[$v]}" | bc)
  elif [[ $v == default ]]; then
    per=$(echo "scale=2; 1000 * ($m - $base) / $EPOCHS" | bc)
  fi
  printf '%-10s %12s %9s %18s %s\n' "$v" "$m" "$ratio" "$per" "${times[$v]}"
done
echo "($RANKS ranks, $EPOCHS epochs of $steps_per_epoch steps, $REPEATS interleaved rounds; wall time of the whole run)"
