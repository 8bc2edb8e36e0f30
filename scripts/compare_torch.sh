#!/usr/bin/env bash
# nn_dist vs PyTorch (CPU, 1 thread per process) on the same MLP and data.
#
#   scripts/compare_torch.sh [--workdir DIR] [--out FILE] [--repeats R] [--no-build] [--only a,b,c,d,e]
#                            [--steps-a N] [--steps-b N] [--steps-c N] [--steps-d N]
#                            [--steps-e-b128 N] [--steps-e-b32 N] [--warmup W]
#
# Generates the standard data once (teacher, 60000 x 784, 10 classes) in
# --workdir (default build/bench), then for each configuration (all, or those
# --only names, comma-separated) runs the sides interleaved, R times (A B B' A B B' ...):
#   (a) 1 rank, batch 128      nn_dist | torch [OpenBLAS default] | torch [OPENBLAS_CORETYPE=SkylakeX]
#                              | nn_roofline (the step's matrix products alone)
#   (b) 1 rank, batch 32       same four
#   (c) 2 ranks, batch 128/rank nn_dist (mpirun -np 2) | torch DDP, 2 processes, gloo (both variants)
#   (d) nn_dist 2 ranks vs 1 rank (batch 128/rank), and the same 2 ranks with
#       --allreduce none (no gradient sum: the ceiling of the scaling on this machine);
#       2 ranks --overlap on vs off (with --allreduce auto, and with --allreduce hierarchical)
#   (e) bf16: 1 and 2 ranks, each at batch 128 and 32 per rank
#                              nn_dist | nn_dist --precision bf16 | torch bf16 [OpenBLAS default;
#                              DDP at 2 ranks]: forward and loss under torch.autocast("cpu",
#                              dtype=torch.bfloat16) | at 1 rank nn_roofline's bf16 kernels that
#                              this CPU runs (amx, avx512_bf16). Prints first which oneDNN kernels
#                              torch's bf16 products use. Skipped on a CPU with neither AMX-BF16
#                              nor AVX512_BF16; ~6-7 minutes with --repeats 3.
# Model 784-512-256-10 relu, softmax, SGD lr 0.05; every run measures --max-steps
# steps minus --warmup-steps. "OpenBLAS default" unsets OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE for that command only; "SkylakeX" sets OPENBLAS_CORETYPE=SkylakeX
# and unsets OPENBLAS_L2_SIZE. Raw results: one JSON line per run in --out
# (default build/bench/compare.jsonl), with the cross-core round trip measured
# (nn_corelat) just before each run of (a)-(c), (e) and of the scaling pairs; at the
# end a table of median samples/s (min-max) per side and the median of the
# per-pair ratios A/B. E.g. (e) alone: scripts/compare_torch.sh --only e --repeats 3
set -euo pipefail
source "$(dirname "$0")/common.sh"

PY=/usr/bin/python3
WORKDIR="$NN_BUILD/bench"
OUT=""
REPEATS=5
BUILD=1
STEPS_A=2500   # 1 rank, batch 128   (~2 ms/step)
STEPS_B=8000   # 1 rank, batch 32    (~0.6-0.9 ms/step)
STEPS_C=1200   # 2 ranks, batch 128  (torch DDP ~8 ms/step)
STEPS_D=2500   # nn_dist scaling and overlap
STEPS_E128=2000  # (e) at batch 128 per rank (nn_dist bf16 ~1.2 ms/step, torch DDP bf16 ~7 ms/step)
STEPS_E32=4000   # (e) at batch 32 per rank (torch DDP bf16 ~6.5 ms/step)
ONLY=a,b,c,d,e
WARMUP=50

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while (($#)); do
  case $1 in
    --workdir) WORKDIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --steps-a) STEPS_A=$2; shift 2 ;;
    --steps-b) STEPS_B=$2; shift 2 ;;
    --steps-c) STEPS_C=$2; shift 2 ;;
    --steps-d) STEPS_D=$2; shift 2 ;;
    --steps-e-b128) STEPS_E128=$2; shift 2 ;;
    --steps-e-b32) STEPS_E32=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare_torch.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for c in ${ONLY//,/ }; do
  if [[ $c != [a-e] ]]; then
    echo "compare_torch.sh: --only $ONLY: unknown configuration '$c' (expected letters a-e, comma-separated)" >&2
    exit 2
  fi
done
# wanted X: is configuration X among --only's?
wanted() { [[ ,$ONLY, == *,$1,* ]]; }
OUT=${OUT:-$WORKDIR/compare.jsonl}
mkdir -p "$WORKDIR" "$(dirname "$OUT")"
WORKDIR=$(cd "$WORKDIR" && pwd)
DATA="$WORKDIR/train.h5"
LOG="$WORKDIR/last_run.log"
SUMMARY="$NN_ROOT/scripts/bench_summary.py"
TORCH_REF="$NN_ROOT/scripts/torch_reference.py"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if ((BUILD)); then nn_build --target nn_dist nn_datagen nn_roofline nn_corelat >/dev/null; fi
if [[ ! -s $DATA ]]; then
  "$NN_BUILD/nn_datagen" --out "$DATA" --kind teacher --samples 60000 --features 784 --classes 10 --seed 1
fi

MODEL=(--data "$DATA" --hidden 512,256 --activation relu --loss softmax --lr 0.05 --epochs 1000
       --warmup-steps "$WARMUP" --quiet)

# The environment for one PyTorch variant, for that command only.
torch_env() {
  case $1 in
    default) ENV_CMD=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE) ;;
    skylakex) ENV_CMD=(env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX) ;;
  esac
}

FAILED=0
# execute command...: run it with its output in $LOG; its exit code, wall time and command in LAST_*.
execute() {
  local t0 t1 ms
  LAST_RC=0
  t0=$(date +%s%N)
  "$@" >"$LOG" 2>&1 || LAST_RC=$?
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  LAST_WALL="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
  LAST_CMD="$*"
}
# record CONFIG REPEAT SIDE [key=value ...]: append the last command's BENCH_JSON (or ROOFLINE_JSON) to $OUT.
record() {
  local config=$1 repeat=$2 side=$3; shift 3
  "$PY" "$SUMMARY" record "$OUT" "$config" "$repeat" "$side" "$LAST_WALL" "$LOG" \
    "exit_code=$LAST_RC" "core_rtt_ns=${CORE_RTT:-}" "cmd=$LAST_CMD" "$@" || FAILED=$((FAILED + 1))
}
# run CONFIG REPEAT SIDE command...: run it, and append its BENCH_JSON to $OUT.
run() {
  local config=$1 repeat=$2 side=$3; shift 3
  execute "$@"
  record "$config" "$repeat" "$side"
  CORE_RTT=
}

# Before a 2-process run: the cross-core round trip now (ns), recorded with the run.
# On a VM it can jump (e.g. ~100 -> ~400 ns) while the host moves the vCPUs, and
# everything that moves data between the ranks slows down with it.
core_rtt() {
  CORE_RTT=$("$NN_BUILD/nn_corelat" | sed -n 's/.*"round_trip_ns":\([0-9.]*\).*/\1/p')
}

nn_dist_run() {  # ranks batch steps [extra flags]
  local ranks=$1 batch=$2 steps=$3; shift 3
  NN_CMD=(mpirun -np "$ranks" --bind-to core --mca mpi_yield_when_idle 1 "$NN_BUILD/nn_dist" "${MODEL[@]}"
          --batch-size "$batch" --max-steps "$steps" --profile "$@")
}
torch_run() {  # variant ranks batch steps [extra flags]
  local variant=$1 ranks=$2 batch=$3 steps=$4; shift 4
  torch_env "$variant"
  TORCH_CMD=("${ENV_CMD[@]}" "$PY" "$TORCH_REF" "${MODEL[@]}" --batch-size "$batch" --max-steps "$steps"
             --threads 1 --bind-to-core "$@")
  if ((ranks > 1)); then TORCH_CMD+=(--ddp --world-size "$ranks"); fi
}

: >"$OUT"
"$PY" - "$OUT" <<EOF
import json, os, platform, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
meta = {"config": "meta", "date": sh("date -Is"), "git": sh("git -C '$NN_ROOT' rev-parse --short HEAD"),
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"), "nproc": os.cpu_count(),
        "loadavg": os.getloadavg(), "env_OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", ""),
        "env_OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE", ""),
        "repeats": $REPEATS, "only": "$ONLY",
        "steps": {"a": $STEPS_A, "b": $STEPS_B, "c": $STEPS_C, "d": $STEPS_D, "e_b128": $STEPS_E128, "e_b32": $STEPS_E32},
        "warmup": $WARMUP}
open(sys.argv[1], "a").write(json.dumps(meta) + "\n")
EOF

echo "OpenBLAS kernels picked by PyTorch's OpenBLAS (OPENBLAS_VERBOSE=2):"
for v in default skylakex; do
  torch_env "$v"
  core=$("${ENV_CMD[@]}" OPENBLAS_VERBOSE=2 "$PY" -c "import torch" 2>&1 | grep -m1 -o 'Core: .*' || echo 'Core: ?')
  printf '  %-9s %s\n' "$v" "$core"
done
# (e) needs bf16 products: nn_dist's AMX or AVX512_BF16 kernel.
BF16=0
if grep -qw -e amx_bf16 -e avx512_bf16 /proc/cpuinfo; then BF16=1; fi
if wanted e && ((BF16)); then
  # torch's bf16 products go to oneDNN, which picks its own kernels (e.g. AMX); count them over one step.
  echo "oneDNN kernels of torch's bf16 products over one step at batch 128 (DNNL_VERBOSE=1: count, kernel, shape):"
  DNNL_VERBOSE=1 OMP_NUM_THREADS=1 "$PY" -c '
import torch
torch.set_num_threads(1)
m = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU(),
                        torch.nn.Linear(256, 10))
with torch.autocast("cpu", dtype=torch.bfloat16):
    loss = torch.nn.functional.cross_entropy(m(torch.randn(128, 784)), torch.randint(0, 10, (128,)))
loss.backward()' 2>&1 | awk -F, '$2 == "exec" && $4 == "matmul" { print "   ", $5, $(NF - 1) }' | sort | uniq -c || true
fi
echo "results: $OUT   (load average: $(cut -d' ' -f1-3 /proc/loadavg))"

start=$SECONDS
# One interleaved nn_dist / PyTorch (two OpenBLAS picks) comparison: config, ranks, batch, steps;
# at 1 rank also the GEMM roofline of the same shapes.
versus_torch() {
  local config=$1 ranks=$2 batch=$3 steps=$4 r
  for ((r = 1; r <= REPEATS; r++)); do
    core_rtt; nn_dist_run "$ranks" "$batch" "$steps"; run "$config" "$r" nn_dist "${NN_CMD[@]}"
    core_rtt; torch_run default "$ranks" "$batch" "$steps"; run "$config" "$r" torch_default "${TORCH_CMD[@]}"
    core_rtt; torch_run skylakex "$ranks" "$batch" "$steps"; run "$config" "$r" torch_skylakex "${TORCH_CMD[@]}"
    if ((ranks == 1)); then
      run "$config" "$r" roofline taskset -c 0 "$NN_BUILD/nn_roofline" --batch-size "$batch"
    fi
  done
}
# (e): nn_dist f32 and bf16 against torch with bf16 autocast: config, ranks, batch, steps; at 1 rank
# also nn_roofline's bf16 kernels on the same shapes.
versus_torch_bf16() {
  local config=$1 ranks=$2 batch=$3 steps=$4 r k
  for ((r = 1; r <= REPEATS; r++)); do
    core_rtt; nn_dist_run "$ranks" "$batch" "$steps"; run "$config" "$r" nn_dist_f32 "${NN_CMD[@]}"
    core_rtt; nn_dist_run "$ranks" "$batch" "$steps" --precision bf16; run "$config" "$r" nn_dist_bf16 "${NN_CMD[@]}"
    core_rtt; torch_run default "$ranks" "$batch" "$steps" --precision bf16
    run "$config" "$r" torch_bf16 "${TORCH_CMD[@]}"
    if ((ranks == 1)); then
      execute taskset -c 0 "$NN_BUILD/nn_roofline" --batch-size "$batch"
      # The bf16 kernels this CPU runs are those nn_roofline printed (a failed run is recorded as failed).
      for k in amx avx512_bf16; do
        if ((LAST_RC)) || grep -q "^ROOFLINE_JSON {\"products\":\"$k\"" "$LOG"; then
          record "$config" "$r" "roofline_$k" "products=$k"
        fi
      done
    fi
  done
}
if wanted a; then
  echo "(a) 1 rank, batch 128, $STEPS_A steps"
  versus_torch a_1rank_b128 1 128 "$STEPS_A"
fi
if wanted b; then
  echo "(b) 1 rank, batch 32, $STEPS_B steps"
  versus_torch b_1rank_b32 1 32 "$STEPS_B"
fi
if wanted c; then
  echo "(c) 2 ranks, batch 128 per rank, $STEPS_C steps (torch: DDP, gloo)"
  versus_torch c_2rank_b128 2 128 "$STEPS_C"
fi
if wanted d; then
  echo "(d) nn_dist 2 ranks vs 1 rank (and with --allreduce none), --overlap on vs off, batch 128 per rank, $STEPS_D steps"
  for ((r = 1; r <= REPEATS; r++)); do
    core_rtt; nn_dist_run 2 128 "$STEPS_D"; run d_scaling_b128 "$r" nn_dist_2rank "${NN_CMD[@]}"
    core_rtt; nn_dist_run 1 128 "$STEPS_D"; run d_scaling_b128 "$r" nn_dist_1rank "${NN_CMD[@]}"
    # The ceiling: 2 ranks that skip the gradient sum (each trains its own model).
    core_rtt; nn_dist_run 2 128 "$STEPS_D" --allreduce none; run d_scaling_b128 "$r" nn_dist_2rank_none "${NN_CMD[@]}"
  done
  for ((r = 1; r <= REPEATS; r++)); do
    nn_dist_run 2 128 "$STEPS_D" --overlap on; run d_overlap_b128 "$r" overlap_on "${NN_CMD[@]}"
    nn_dist_run 2 128 "$STEPS_D" --overlap off; run d_overlap_b128 "$r" overlap_off "${NN_CMD[@]}"
  done
  # --allreduce auto picks the shared-memory sum on one node, where --overlap has
  # no effect; the hierarchical sum is the mode that overlaps backprop.
  for ((r = 1; r <= REPEATS; r++)); do
    nn_dist_run 2 128 "$STEPS_D" --allreduce hierarchical --overlap on
    run d_overlap_hierarchical_b128 "$r" overlap_on "${NN_CMD[@]}"
    nn_dist_run 2 128 "$STEPS_D" --allreduce hierarchical --overlap off
    run d_overlap_hierarchical_b128 "$r" overlap_off "${NN_CMD[@]}"
  done
fi
if wanted e && ! ((BF16)); then
  echo "(e) skipped: this CPU has neither AMX-BF16 nor AVX512_BF16 (nn_dist --precision bf16 needs one of them)"
elif wanted e; then
  for ranks in 1 2; do
    for batch in 128 32; do
      steps=$STEPS_E128
      if ((batch == 32)); then steps=$STEPS_E32; fi
      if ((ranks == 1)); then where="1 rank, batch $batch" torch=torch; else where="$ranks ranks, batch $batch per rank" torch="torch DDP"; fi
      echo "(e) bf16, $where, $steps steps (nn_dist f32 | nn_dist bf16 | $torch bf16 autocast)"
      versus_torch_bf16 "e_${ranks}rank_b$batch" "$ranks" "$batch" "$steps"
    done
  done
fi

echo
echo "samples/s over all ranks, median (min-max) of $REPEATS interleaved pairs; ratio = A/B per pair"
"$PY" "$SUMMARY" table "$OUT"
echo "total $((SECONDS - start)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg); raw results: $OUT"
if ((FAILED)); then
  echo "compare_torch.sh: $FAILED run(s) failed; see 'error' in $OUT" >&2
  exit 1
fi
