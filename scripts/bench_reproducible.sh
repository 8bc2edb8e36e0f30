#!/bin/bash
# What --reproducible costs: the standard benchmark (60000x784 teacher data,
# 784-512-256-10, SGD with momentum, batch 128 per rank) at 1 and 2 ranks,
# the normal step against --reproducible with one block of 128 rows per rank
# and with four blocks of 32, runs interleaved (one of each per round).
# Reports --profile's median step time after the first 50 steps, samples/s,
# and each mode's ratio to the normal step of the same round (the goal: within
# 1.10), with the load average before and after.
# Usage: scripts/bench_reproducible.sh [--repeats 3] [--steps 600] [--ranks 1,2]
set -euo pipefail
source "$(dirname "$0")/common.sh"
REPEATS=3 STEPS=600 RANKS=1,2
while [[ $# -gt 0 ]]; do
  case $1 in
    --repeats) REPEATS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    *) echo "bench_reproducible.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
nn_bench_data
export OMP_NUM_THREADS=1
IFS=, read -r -a rank_counts <<<"$RANKS"
modes=(normal "block 128" "block 32")
declare -A step ratio
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Prints --profile's step_ms of one run.
run() {
  local ranks=$1 mode=$2 extra=()
  case $mode in
    "block 128") extra=(--reproducible --block-size 128) ;;
    "block 32") extra=(--reproducible --block-size 32) ;;
  esac
  nn_mpirun_flags "$ranks"
  mpirun "${MPIRUN_FLAGS[@]}" --bind-to core "$NN_BUILD/nn_dist" --data "$DATA" --hidden 512,256 --batch-size 128 \
    --momentum 0.9 --epochs 2 --max-steps "$STEPS" --warmup-steps 50 --profile --quiet "${extra[@]}" 2>&1 |
    grep -o '"step_ms":[0-9.]*' | cut -d: -f2
}
for ((r = 1; r <= REPEATS; r++)); do
  for p in "${rank_counts[@]}"; do
    base=""
    for m in "${modes[@]}"; do
      ms=$(run "$p" "$m")
      step[$p,$m]+="$ms "
      [[ -z $base ]] && base=$ms
      ratio[$p,$m]+="$(echo "scale=4; $ms / $base" | bc) "
    done
  done
  echo "round $r/$REPEATS done" >&2
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-6s %-10s %8s %10s %12s  %s\n' ranks mode step_ms samples/s "step/normal" "rounds: step ms"
for p in "${rank_counts[@]}"; do
  for m in "${modes[@]}"; do
    s=$(echo "${step[$p,$m]}" | median)
    printf '%-6s %-10s %8s %10.0f %12s  %s\n' "$p" "$m" "$s" "$(echo "128 * $p * 1000 / $s" | bc -l)" \
      "$(echo "${ratio[$p,$m]}" | median)" "${step[$p,$m]}"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "($REPEATS interleaved rounds of $STEPS steps; $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -c ^processor /proc/cpuinfo) CPUs)"
