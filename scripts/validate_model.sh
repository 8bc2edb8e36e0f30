#!/bin/bash
# Checks the performance model (scripts/perf_model.py) against measurement on
# 2 emulated hosts x 1 rank (cluster/emulated/hosts.sh) whose link is shaped
# with tc tbf. The model is calibrated on this machine with the link
# unshaped only (nn_roofline, a 1-rank nn_dist --profile, nn_allreduce_bench
# in shared memory and across the 2 hosts, and the unshaped 2-host step's
# compute); then, for each rate, it predicts the step time before the step is
# measured. Writes DIR/validation.csv, DIR/model.json, DIR/perf_model.png and
# prints the table. Needs root (network namespaces).
# Usage: scripts/validate_model.sh [--rates "5gbit 1gbit 100mbit"] [--out DIR] [--repeats 3] [--quick]
# --quick: a few steps per run and sizes up to 4 MiB (tests: the harness
# works; its numbers are too short to mean much).
set -euo pipefail
source "$(dirname "$0")/common.sh"
RATES="5gbit 1gbit 100mbit"
OUT="$NN_BUILD/validate"
REPEATS=3
QUICK=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --rates) RATES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "validate_model.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "validate_model.sh: needs root (network namespaces)" >&2; exit 2; }
PY=/usr/bin/python3
MODEL="$NN_ROOT/scripts/perf_model.py"
HOSTS="$NN_ROOT/cluster/emulated/hosts.sh"
export NN_HOSTS_PREFIX=nnv NN_HOSTS_SUBNET=10.231.11
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
PASS_ENV=(-x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x OMP_NUM_THREADS)
mkdir -p "$OUT"
nn_bench_data
# steps per run: calibration, unshaped, and the bounds for the shaped runs (about 10 s each)
ROOF_REPEATS=200 CAL_STEPS=400 UNSHAPED_STEPS=300 MIN_STEPS=40 MAX_STEPS=400 BENCH=(--max-bytes 16777216) SECONDS_PER_RUN=10000
if ((QUICK)); then
  ROOF_REPEATS=20 CAL_STEPS=60 UNSHAPED_STEPS=40 MIN_STEPS=8 MAX_STEPS=40 BENCH=(--max-bytes 4194304 --min-seconds 0.02) SECONDS_PER_RUN=500
fi
TRAIN=(--data "$DATA" --hidden 512,256 --batch-size 128 --epochs 1 --profile --quiet)
"$HOSTS" down >/dev/null 2>&1 || true
trap '"$HOSTS" down >/dev/null 2>&1' EXIT
"$HOSTS" up 2 >/dev/null
log() { echo "[validate $(date +%T)] $*" >&2; }
two_hosts() { "$HOSTS" mpirun -np 2 --host nnv1:1,nnv2:1 "${PASS_ENV[@]}" "$@"; }
json_field() { grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# ---- calibration, link unshaped
log "calibrating: nn_roofline, nn_dist at 1 rank, nn_allreduce_bench (shared memory; 2 hosts unshaped)"
"$NN_BUILD/nn_roofline" --batch-size 128 --repeats "$ROOF_REPEATS" >"$OUT/roofline.log"
"$NN_BUILD/nn_dist" "${TRAIN[@]}" --max-steps "$CAL_STEPS" --warmup-steps 10 >"$OUT/profile1.log"
nn_mpirun_flags 2
mpirun "${MPIRUN_FLAGS[@]}" --bind-to none "$NN_BUILD/nn_allreduce_bench" --paths nn-shared,mpi --min-bytes 4 \
  "${BENCH[@]}" --csv "$OUT/allreduce_shm.csv" >"$OUT/allreduce_shm.log"
two_hosts "$NN_BUILD/nn_allreduce_bench" --paths mpi,nn-hierarchical,p2p-exchange,p2p-relay --min-bytes 4 \
  "${BENCH[@]}" --csv "$OUT/allreduce_net.csv" >"$OUT/allreduce_net.log"
$PY "$MODEL" calibrate --allreduce "$OUT/allreduce_shm.csv" --allreduce "$OUT/allreduce_net.csv" \
  --roofline "$OUT/roofline.log" --profile "$OUT/profile1.log" --out "$OUT/model.json" | tee "$OUT/calibration.txt" >&2
step1=$(json_field step_ms <"$OUT/profile1.log")

# One 2-host run: its BENCH_JSON line.
run_count=0
measure() {  # measure STEPS -> prints step_ms compute_ms exposed_ms, timed over STEPS steps after 10 warmup steps
  local out log="$OUT/run-$((++run_count)).log"
  two_hosts "$NN_BUILD/nn_dist" "${TRAIN[@]}" --max-steps "$(($1 + 10))" --warmup-steps 10 >"$log" 2>&1 || true
  out=$(grep BENCH_JSON "$log") || { echo "validate_model.sh: a 2-host run printed no BENCH_JSON line: $log" >&2; return 1; }
  local step fwd bwd opt data test wait
  step=$(json_field step_ms <<<"$out"); fwd=$(json_field forward_ms <<<"$out"); bwd=$(json_field backward_ms <<<"$out")
  opt=$(json_field optimizer_ms <<<"$out"); data=$(json_field data_ms <<<"$out")
  test=$(json_field sync_test_ms <<<"$out"); wait=$(json_field sync_wait_ms <<<"$out")
  echo "$step $(echo "$fwd + $bwd + $opt + $data" | bc -l) $(echo "$test + $wait" | bc -l)"
}

# The unshaped 2-host step: its compute (forward, backward, update, data) is
# what the shaped runs' predictions use; its sum is the model's in-sample check.
log "unshaped link: measuring $REPEATS x $UNSHAPED_STEPS steps"
steps="" computes="" sums=""
for ((r = 0; r < REPEATS; r++)); do
  measure "$UNSHAPED_STEPS" >"$OUT/m" || exit 1
  read -r s c e <"$OUT/m"
  steps+="$s " computes+="$c " sums+="$e "
done
compute=$(echo "$computes" | median)
echo "kind,rate,gbps,compute_ms,predicted_sum_ms,measured_sum_ms,predicted_step_ms,measured_step_ms,error_pct,measured_efficiency,runs" \
  >"$OUT/validation.csv"
row() {  # row KIND RATE GBPS STEPS_LIST SUMS_LIST
  local kind=$1 rate=$2 gbps=$3 m_step m_sum pred p_step p_sum err eff
  m_step=$(echo "$4" | median); m_sum=$(echo "$5" | median)
  if [[ $gbps == - ]]; then
    pred=$($PY "$MODEL" step --model "$OUT/model.json" --ranks 2 --cores-per-node 1 --compute-ms "$compute")
  else
    pred=$($PY "$MODEL" step --model "$OUT/model.json" --ranks 2 --cores-per-node 1 --gbps "$gbps" --compute-ms "$compute")
  fi
  p_step=$(json_field step_ms <<<"$pred"); p_sum=$(json_field sum_ms <<<"$pred")
  err=$(echo "100 * ($p_step - $m_step) / $m_step" | bc -l)
  eff=$(echo "$step1 / $m_step" | bc -l)
  printf '%s,%s,%s,%.4f,%.4f,%.4f,%.4f,%.4f,%.2f,%.4f,%s\n' "$kind" "$rate" "$gbps" "$compute" "$p_sum" "$m_sum" \
    "$p_step" "$m_step" "$err" "$eff" "$(echo $4 | tr ' ' ';')" >>"$OUT/validation.csv"
}
row unshaped none - "$steps" "$sums"

# ---- shaped: predict, then measure
for rate in $RATES; do
  case $rate in
    *gbit) gbps=${rate%gbit} ;;
    *mbit) gbps=$(printf '%g' "$(echo "${rate%mbit} / 1000" | bc -l)") ;;
    *) echo "validate_model.sh: --rates takes e.g. 5gbit or 100mbit, not $rate" >&2; exit 2 ;;
  esac
  "$HOSTS" shape nnv1 "$rate"
  "$HOSTS" shape nnv2 "$rate"
  # about 10 s of steps per run, whatever the rate
  pred=$($PY "$MODEL" step --model "$OUT/model.json" --ranks 2 --cores-per-node 1 --gbps "$gbps" --compute-ms "$compute")
  n=$(echo "$SECONDS_PER_RUN / $(json_field step_ms <<<"$pred")" | bc)
  ((n < MIN_STEPS)) && n=$MIN_STEPS
  ((n > MAX_STEPS)) && n=$MAX_STEPS
  log "$rate: predicted $(json_field step_ms <<<"$pred") ms per step; measuring $REPEATS x $n steps"
  steps="" sums=""
  for ((r = 0; r < REPEATS; r++)); do
    measure "$n" >"$OUT/m" || exit 1
    read -r s c e <"$OUT/m"
    steps+="$s " sums+="$e "
  done
  row shaped "$rate" "$gbps" "$steps" "$sums"
done
"$HOSTS" down >/dev/null 2>&1 || true

$PY "$MODEL" plot --model "$OUT/model.json" --measured "$OUT/validation.csv" --out "$OUT/perf_model.png" >&2
awk -F, '{printf "%-9s %-8s %5s %11s %17s %16s %18s %17s %10s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$OUT/validation.csv"
echo "(2 emulated hosts x 1 rank on a $(getconf _NPROCESSORS_ONLN)-core machine; 1-rank step $step1 ms; files in $OUT)"
