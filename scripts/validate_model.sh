#!/bin/bash
# Checks the performance model (scripts/perf_model.py) against measurement on
# emulated hosts (cluster/emulated/hosts.sh): every layout (ranks per host)
# at every link rate (tc tbf on every host), for each mode (nn_dist's
# hierarchical sum, and with --accumulate-steps K). The model is calibrated
# on this machine with 1 host and 2 unshaped hosts x 1 rank only (nn_roofline,
# a 1-rank nn_dist --profile, nn_allreduce_bench in shared memory and across
# the 2 hosts, and the unshaped 2 x 1 step's compute); then every cell is
# predicted (DIR/predictions.csv, written before any cell is measured), then
# measured. Writes DIR/validation.csv, DIR/model.json, DIR/perf_model.png and
# prints the table. Needs root (network namespaces). Cells with more ranks
# than the machine's cores share them; the model is told (--machine-cores).
# Usage: scripts/validate_model.sh [--rates "none 2gbit 300mbit"] [--layouts "1,1 2,2 1,1,1 2,2,2"]
#          [--modes "hierarchical accumulate4"] [--out DIR] [--repeats 3] [--seconds 8] [--quick]
# --quick: a few steps per run and sizes up to 4 MiB (tests: the harness
# works; its numbers are too short to mean much).
set -euo pipefail
source "$(dirname "$0")/common.sh"
RATES="none 2gbit 300mbit"
LAYOUTS="1,1 2,2 1,1,1 2,2,2"
MODES="hierarchical accumulate4"
SECONDS_PER_RUN=8
OUT="$NN_BUILD/validate"
REPEATS=3
QUICK=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --rates) RATES=$2; shift 2 ;;
    --layouts) LAYOUTS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
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
ROOF_REPEATS=200 CAL_STEPS=400 UNSHAPED_STEPS=300 MIN_STEPS=30 MAX_STEPS=400 BENCH=(--max-bytes 16777216)
if ((QUICK)); then
  ROOF_REPEATS=20 CAL_STEPS=60 UNSHAPED_STEPS=40 MIN_STEPS=8 MAX_STEPS=40 BENCH=(--max-bytes 4194304 --min-seconds 0.02)
  SECONDS_PER_RUN=0.5
fi
hosts_needed=2
for layout in $LAYOUTS; do
  n=$(tr ',' '\n' <<<"$layout" | wc -l)
  ((n > hosts_needed)) && hosts_needed=$n
done
TRAIN=(--data "$DATA" --hidden 512,256 --batch-size 128 --epochs 1 --profile --quiet)
"$HOSTS" down >/dev/null 2>&1 || true
trap '"$HOSTS" down >/dev/null 2>&1' EXIT
"$HOSTS" up "$hosts_needed" >/dev/null
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

# One run on the emulated hosts: "step_ms compute_ms exposed_ms" of its BENCH_JSON line, timed over STEPS
# steps after 10 warmup steps. exposed: the sum's time after backprop (wait) and driving it during (test).
run_count=0
measure() {  # measure HOSTLIST NP STEPS [nn_dist flags...]
  local hostlist=$1 np=$2 steps=$3 out log="$OUT/run-$((++run_count)).log"
  shift 3
  "$HOSTS" mpirun -np "$np" --host "$hostlist" --oversubscribe "${PASS_ENV[@]}" "$NN_BUILD/nn_dist" "${TRAIN[@]}" \
    --max-steps "$((steps + 10))" --warmup-steps 10 "$@" </dev/null >"$log" 2>&1 || true
  out=$(grep BENCH_JSON "$log") || { echo "validate_model.sh: a run printed no BENCH_JSON line: $log" >&2; return 1; }
  local step fwd bwd opt data test wait
  step=$(json_field step_ms <<<"$out"); fwd=$(json_field forward_ms <<<"$out"); bwd=$(json_field backward_ms <<<"$out")
  opt=$(json_field optimizer_ms <<<"$out"); data=$(json_field data_ms <<<"$out")
  test=$(json_field sync_test_ms <<<"$out"); wait=$(json_field sync_wait_ms <<<"$out")
  echo "$step $(echo "$fwd + $bwd + $opt + $data" | bc -l) $(echo "$test + $wait" | bc -l)"
}
cell_hosts() {  # "2,2" -> "nnv1:2,nnv2:2 4"
  local list="" np=0 i=0 c
  for c in ${1//,/ }; do i=$((i + 1)); np=$((np + c)); list+="${list:+,}${NN_HOSTS_PREFIX}$i:$c"; done
  echo "$list $np"
}
mode_flags() { [[ $1 == accumulate* ]] && echo "--accumulate-steps ${1#accumulate}" || true; }
mode_k() { [[ $1 == accumulate* ]] && echo "${1#accumulate}" || echo 1; }
gbps_of() {
  case $1 in
    none) echo - ;;
    *gbit) echo "${1%gbit}" ;;
    *mbit) printf '%g\n' "$(echo "${1%mbit} / 1000" | bc -l)" ;;
    *) echo "validate_model.sh: --rates takes none or e.g. 2gbit or 300mbit, not $1" >&2; exit 2 ;;
  esac
}

# The unshaped 2 x 1 step's compute (forward, backward, update, data: 2 ranks, each on a core): what every
# prediction uses, stretched by the model where ranks share the machine's cores.
log "unshaped 2 x 1: measuring the compute, $REPEATS x $UNSHAPED_STEPS steps"
computes=""
for ((r = 0; r < REPEATS; r++)); do
  measure "${NN_HOSTS_PREFIX}1:1,${NN_HOSTS_PREFIX}2:1" 2 "$UNSHAPED_STEPS" >"$OUT/m" || exit 1
  read -r s c e <"$OUT/m"
  computes+="$c "
done
compute=$(echo "$computes" | median)
CORES=$(getconf _NPROCESSORS_ONLN)

# ---- every cell predicted, before any is measured
# layouts in the CSV files: ranks per host joined by + (1+1: 2 hosts x 1 rank)
echo "rate,gbps,layout,ranks,ranks_per_node,mode,accumulate,compute_ms,predicted_sum_ms,predicted_step_ms" >"$OUT/predictions.csv"
for rate in $RATES; do
  gbps=$(gbps_of "$rate")
  for layout in $LAYOUTS; do
    read -r hostlist np <<<"$(cell_hosts "$layout")"
    per_node=${layout%%,*}
    for mode in $MODES; do
      k=$(mode_k "$mode")
      args=(--ranks "$np" --cores-per-node "$per_node" --compute-ms "$compute" --machine-cores "$CORES" --accumulate-steps "$k")
      [[ $gbps == - ]] || args+=(--gbps "$gbps")
      pred=$($PY "$MODEL" step --model "$OUT/model.json" "${args[@]}")
      echo "$rate,$gbps,${layout//,/+},$np,$per_node,$mode,$k,$(json_field compute_ms <<<"$pred"),$(json_field sum_ms <<<"$pred"),$(json_field step_ms <<<"$pred")" >>"$OUT/predictions.csv"
    done
  done
done
log "predicted $(($(wc -l <"$OUT/predictions.csv") - 1)) cells (predictions.csv); measuring them"

# ---- measured: each rate's shaping on every host, then its cells
echo "rate,gbps,layout,ranks,mode,accumulate,in_sample,oversubscribed,compute_ms,predicted_sum_ms,measured_sum_ms,predicted_step_ms,measured_step_ms,error_pct,runs" \
  >"$OUT/validation.csv"
for rate in $RATES; do
  for ((i = 1; i <= hosts_needed; i++)); do
    if [[ $rate == none ]]; then "$HOSTS" unshape "${NN_HOSTS_PREFIX}$i"; else "$HOSTS" shape "${NN_HOSTS_PREFIX}$i" "$rate"; fi
  done
  while IFS=, read -r p_rate gbps layout np per_node mode k c_ms p_sum p_step; do
    [[ $p_rate == "$rate" ]] || continue
    read -r hostlist np <<<"$(cell_hosts "${layout//+/,}")"
    n=$(echo "$SECONDS_PER_RUN * 1000 / $p_step" | bc)
    ((n < MIN_STEPS)) && n=$MIN_STEPS
    ((n > MAX_STEPS)) && n=$MAX_STEPS
    log "$rate, $layout, $mode: predicted $p_step ms a step; measuring $REPEATS x $n steps"
    steps="" sums=""
    for ((r = 0; r < REPEATS; r++)); do
      # shellcheck disable=SC2046
      measure "$hostlist" "$np" "$n" $(mode_flags "$mode") >"$OUT/m" || exit 1
      read -r s c e <"$OUT/m"
      steps+="$s " sums+="$e "
    done
    m_step=$(echo "$steps" | median); m_sum=$(echo "$sums" | median)
    in_sample=$([[ $rate == none && $layout == 1+1 && $k == 1 ]] && echo yes || echo no)
    # More ranks than the machine has cores: they take turns on them (see cluster/perf-model.md).
    oversubscribed=$( ((np > CORES)) && echo yes || echo no)
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%.4f,%s,%.4f,%.2f,%s\n' "$rate" "$gbps" "$layout" "$np" "$mode" "$k" "$in_sample" \
      "$oversubscribed" \
      "$c_ms" "$p_sum" "$m_sum" "$p_step" "$m_step" "$(echo "100 * ($p_step - $m_step) / $m_step" | bc -l)" \
      "$(echo $steps | tr ' ' ';')" >>"$OUT/validation.csv"
  done < <(tail -n +2 "$OUT/predictions.csv")
done
"$HOSTS" down >/dev/null 2>&1 || true

$PY "$MODEL" plot --model "$OUT/model.json" --measured "$OUT/validation.csv" --out "$OUT/perf_model.png" >&2
awk -F, '{printf "%-8s %-8s %-16s %9s %14s %11s %11s %12s %12s %8s\n", $1, $3, $5, $7, $8, $10, $11, $12, $13, $14}' "$OUT/validation.csv"
echo "(emulated hosts on a $CORES-core machine; 1-rank step $step1 ms; 2 x 1 compute $compute ms; files in $OUT)"
awk -F, 'NR > 1 { e = ($14 < 0 ? -$14 : $14); n[$8]++; if (e <= 20) ok[$8]++ }
  END { printf "within 20%%: %d of %d cells that fit the cores; %d of %d oversubscribed cells\n", ok["no"], n["no"], ok["yes"], n["yes"] }' \
  "$OUT/validation.csv"
