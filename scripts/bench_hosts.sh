#!/bin/bash
# Gradient sums across emulated hosts (cluster/emulated/hosts.sh): for each
# host layout and --allreduce mode, nn_dist's standard benchmark step
# (784-512-256-10, batch 128 per rank) with --profile; prints samples/s, the
# step time and the exposed sum time (the wait after backprop) per step, as a
# table and as BENCH_JSON lines. Needs root. On a 2-core machine more than 2
# ranks share cores: the numbers compare the sums, they are not a cluster's.
# Usage: scripts/bench_hosts.sh [--steps 300] [--layouts "nnh1:1,nnh2:1 nnh1:2,nnh2:2"] [--modes "hierarchical mpi ring"]
set -euo pipefail
source "$(dirname "$0")/common.sh"
STEPS=300
LAYOUTS="nnh1:1,nnh2:1 nnh1:2,nnh2:2 nnh1:1,nnh2:1,nnh3:1 nnh1:2,nnh2:2,nnh3:2"
MODES="hierarchical mpi ring"
while [[ $# -gt 0 ]]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --layouts) LAYOUTS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    *) echo "bench_hosts.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
HOSTS="$NN_ROOT/cluster/emulated/hosts.sh"
nn_bench_data
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
"$HOSTS" down >/dev/null 2>&1 || true
trap '"$HOSTS" down >/dev/null 2>&1' EXIT
"$HOSTS" up 3
printf '%-26s %-13s %12s %9s %14s\n' layout mode samples/s step_ms exposed_sum_ms
for layout in $LAYOUTS; do
  np=0
  for h in ${layout//,/ }; do np=$((np + ${h#*:})); done
  for mode in $MODES; do
    out=$("$HOSTS" mpirun -np "$np" --host "$layout" --oversubscribe -x OMPI_ALLOW_RUN_AS_ROOT \
            -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x OMP_NUM_THREADS "$NN_BUILD/nn_dist" --data "$DATA" \
            --hidden 512,256 --batch-size 128 --epochs 1 --max-steps "$STEPS" --warmup-steps 30 --profile \
            --quiet --allreduce "$mode" 2>&1 | grep BENCH_JSON || true)
    num() { echo "$out" | grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }
    printf '%-26s %-13s %12s %9s %14s\n' "$layout" "$mode" "$(num samples_per_sec)" "$(num step_ms)" "$(num sync_wait_ms)"
    echo "$out" | sed "s/^BENCH_JSON {/BENCH_JSON {\"layout\":\"$layout\",/" >>"$WORK/hosts.jsonl"
  done
done
