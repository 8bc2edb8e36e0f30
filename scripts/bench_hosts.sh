#!/bin/bash
# Gradient sums across emulated hosts (cluster/emulated/hosts.sh): for each
# link rate, host layout and --allreduce mode, nn_dist's standard benchmark
# step (784-512-256-10, batch 128 per rank) with --profile; prints samples/s,
# the step time and the exposed sum time per step (medians of --repeats runs,
# the modes interleaved within each repeat), as a table and as CSV. Needs
# root. On a 2-core machine more than 2 ranks share cores: the numbers
# compare the sums, they are not a cluster's.
# Usage: scripts/bench_hosts.sh [--seconds 6] [--repeats 3] [--rates "none 2gbit 300mbit"]
#          [--layouts "1,1 2,2 1,1,1 2,2,2"] [--modes "hierarchical mpi"] [--csv FILE] [-- nn_dist flags...]
# A layout lists the ranks on each host; a mode is an --allreduce value, and
# "hierarchical+accumulate4" adds --accumulate-steps 4 (any +accumulateK).
# Exposed sum: the time after backprop until the update could start (sync
# (wait) of --profile) plus the time spent driving the sum during backprop
# (sync (test)), which on TCP is the sum's own CPU work.
set -euo pipefail
source "$(dirname "$0")/common.sh"
SECONDS_PER_RUN=6
REPEATS=3
RATES="none"
LAYOUTS="1,1 2,2 1,1,1 2,2,2"
MODES="hierarchical mpi"
CSV=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --layouts) LAYOUTS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --csv) CSV=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "bench_hosts.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
EXTRA=("$@")
HOSTS="$NN_ROOT/cluster/emulated/hosts.sh"
export NN_HOSTS_PREFIX=${NN_HOSTS_PREFIX:-nnh}
nn_bench_data
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
max_hosts=0
for layout in $LAYOUTS; do
  n=$(tr ',' '\n' <<<"$layout" | wc -l)
  ((n > max_hosts)) && max_hosts=$n
done
"$HOSTS" down >/dev/null 2>&1 || true
trap '"$HOSTS" down >/dev/null 2>&1' EXIT
"$HOSTS" up "$max_hosts" >/dev/null
CSV=${CSV:-$WORK/hosts.csv}
# layouts in the CSV: ranks per host joined by + (1+1: 2 hosts x 1 rank)
echo "rate,layout,mode,samples_per_sec,step_ms,exposed_sum_ms,compute_ms,runs" >"$CSV"
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2; }

# One run: "samples/s step_ms exposed_ms compute_ms" from its BENCH_JSON line.
run() {  # run HOSTLIST NP MODE STEPS
  local mode=${3%%+*} extra=() out
  [[ $3 == *+accumulate* ]] && extra=(--accumulate-steps "${3##*+accumulate}")
  out=$("$HOSTS" mpirun -np "$2" --host "$1" --oversubscribe -x OMPI_ALLOW_RUN_AS_ROOT \
          -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x OMP_NUM_THREADS "$NN_BUILD/nn_dist" --data "$DATA" \
          --hidden 512,256 --batch-size 128 --epochs 1 --max-steps "$(($4 + 10))" --warmup-steps 10 --profile \
          --quiet --allreduce "$mode" "${extra[@]}" "${EXTRA[@]}" 2>&1 | grep BENCH_JSON) ||
    { echo "bench_hosts.sh: no BENCH_JSON from $3 on $1" >&2; return 1; }
  local f b o d t w
  f=$(field forward_ms <<<"$out"); b=$(field backward_ms <<<"$out"); o=$(field optimizer_ms <<<"$out")
  d=$(field data_ms <<<"$out"); t=$(field sync_test_ms <<<"$out"); w=$(field sync_wait_ms <<<"$out")
  echo "$(field samples_per_sec <<<"$out") $(field step_ms <<<"$out") $(echo "$t + $w" | bc -l) $(echo "$f + $b + $o + $d" | bc -l)"
}

printf '%-8s %-10s %-26s %12s %9s %14s\n' rate layout mode samples/s step_ms exposed_sum_ms
for rate in $RATES; do
  for ((i = 1; i <= max_hosts; i++)); do
    if [[ $rate == none ]]; then "$HOSTS" unshape "$NN_HOSTS_PREFIX$i"; else "$HOSTS" shape "$NN_HOSTS_PREFIX$i" "$rate"; fi
  done
  for layout in $LAYOUTS; do
    hostlist="" np=0 i=0
    for c in ${layout//,/ }; do
      i=$((i + 1)); np=$((np + c)); hostlist+="${hostlist:+,}$NN_HOSTS_PREFIX$i:$c"
    done
    declare -A res=()
    # Steps for about SECONDS_PER_RUN: one short probe run per layout and rate sets the count.
    probe=$(run "$hostlist" "$np" "${MODES%% *}" 10) || continue
    step=$(cut -d' ' -f2 <<<"$probe")
    steps=$(echo "$SECONDS_PER_RUN * 1000 / $step" | bc)
    ((steps < 20)) && steps=20
    ((steps > 400)) && steps=400
    for ((r = 0; r < REPEATS; r++)); do
      for mode in $MODES; do
        res[$mode]+="$(run "$hostlist" "$np" "$mode" "$steps" || echo "0 0 0 0");"
      done
    done
    for mode in $MODES; do
      runs=${res[$mode]}
      col() { tr ';' '\n' <<<"$runs" | grep . | cut -d' ' -f"$1" | tr '\n' ' ' | median; }
      printf '%-8s %-10s %-26s %12.0f %9.3f %14.3f\n' "$rate" "$layout" "$mode" "$(col 1)" "$(col 2)" "$(col 3)"
      echo "$rate,${layout//,/+},$mode,$(col 1),$(col 2),$(col 3),$(col 4),$(tr ' ;' '/|' <<<"$runs")" >>"$CSV"
    done
    unset res
  done
done
echo "(emulated hosts on a $(getconf _NPROCESSORS_ONLN)-core machine; CSV: $CSV)"
