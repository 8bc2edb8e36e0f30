#!/bin/bash
# What an activation costs: the standard benchmark (60000x784 teacher data,
# 784-512-256-10, batch 128, SGD, one rank) with each hidden activation, runs
# interleaved (one of each per round). Two figures per run: --profile's wall
# step time after the first 50 steps, and the CPU time per step (user + system
# of a --steps run minus a 1-step run, over steps - 1), which a machine shared
# with other jobs disturbs far less than wall time. Prints each activation's
# median over the rounds and its ratio to the first activation's (gelu's
# should stay within 1.10 of relu's), and the load average before and after.
# Usage: scripts/bench_activation.sh [--repeats 5] [--steps 800] [--activations relu,gelu,...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
REPEATS=5 STEPS=800 ACTS=relu,gelu,gelu_tanh,silu,leaky_relu
while [[ $# -gt 0 ]]; do
  case $1 in
    --repeats) REPEATS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --activations) ACTS=$2; shift 2 ;;
    *) echo "bench_activation.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
nn_bench_data
export OMP_NUM_THREADS=1
IFS=, read -r -a acts <<<"$ACTS"
declare -A wall cpu
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Prints "<user+system seconds> <--profile step_ms>" of one run of `steps` steps.
run() {
  local act=$1 steps=$2 out
  out=$(/usr/bin/time -f "cpu %U %S" "$NN_BUILD/nn_dist" --data "$DATA" --hidden 512,256 --batch-size 128 --epochs 2 \
          --max-steps "$steps" --warmup-steps 50 --profile --quiet --activation "$act" 2>&1)
  echo "$(awk '/^cpu / {print $2 + $3}' <<<"$out") $(grep -o '"step_ms":[0-9.]*' <<<"$out" | cut -d: -f2)"
}
for ((r = 1; r <= REPEATS; r++)); do
  for a in "${acts[@]}"; do
    read -r cpu_one _ < <(run "$a" 1)
    read -r cpu_all step_ms < <(run "$a" "$STEPS")
    wall[$a]+="$step_ms "
    cpu[$a]+="$(echo "scale=4; 1000 * ($cpu_all - $cpu_one) / ($STEPS - 1)" | bc) "
  done
  echo "round $r/$REPEATS done" >&2
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
base_wall=$(echo "${wall[${acts[0]}]}" | median) base_cpu=$(echo "${cpu[${acts[0]}]}" | median)
printf '%-11s %12s %6s %11s %6s  %s\n' activation wall_step_ms ratio cpu_step_ms ratio "rounds: cpu ms/step"
for a in "${acts[@]}"; do
  w=$(echo "${wall[$a]}" | median) c=$(echo "${cpu[$a]}" | median)
  printf '%-11s %12s %6s %11s %6s  %s\n' "$a" "$w" "$(echo "scale=3; $w / $base_wall" | bc)" "$c" \
    "$(echo "scale=3; $c / $base_cpu" | bc)" "${cpu[$a]}"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "($REPEATS interleaved rounds of $STEPS steps; $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -c ^processor /proc/cpuinfo) CPUs)"
