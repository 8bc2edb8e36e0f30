#!/bin/bash
# What streaming and compact storage cost: the standard benchmark (60000x784
# teacher data, 784-512-256-10, batch 128 per rank, SGD) trained for a few
# epochs in memory and streamed (--cache-mb), from float32 and from uint8
# files, and (variants *-chunked) from the float32 data written by h5py with
# chunks=True (X and y chunked, unfiltered). Runs are interleaved (one of
# each variant per round, the base first and the others' order reversed
# every second round); prints the median samples/s of the epochs after
# the first, their ratio to in-memory float32 (of the medians, and the median
# of each round's ratio: steadier on a shared machine), the best round's
# ratio to the best in-memory round, each rank's peak RSS, and the streaming reader's
# rate against a plain sequential read of the same file (dd, from the page cache).
# --steps N: each run trains N steps after 50 left out instead (--profile's
# samples/s): shorter runs, so neighbours in a round meet the same load.
# Usage: scripts/bench_data.sh [--ranks 2] [--epochs 4 | --steps N] [--repeats 5] [--cache-mb 64] [--samples 60000]
#          [--bind-to core|none|...] (passed to mpirun; without it mpirun binds the ranks as it binds users' runs)
#          [--variants memory-f32,stream-f32,memory-u8,stream-u8] (also memory-f32-chunked, stream-f32-chunked)
#          [--settle 10] (seconds idle between runs: on the Zen 5 guest the runs in the 10-20 s after an
#          in-memory run were slower, 2026-12-07; 0 for none)
set -euo pipefail
source "$(dirname "$0")/common.sh"
RANKS=2 EPOCHS=4 STEPS=0 REPEATS=5 CACHE=64 SAMPLES=60000 VARIANTS=memory-f32,stream-f32,memory-u8,stream-u8 BIND=()
SETTLE=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --ranks) RANKS=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --cache-mb) CACHE=$2; shift 2 ;;
    --samples) SAMPLES=$2; shift 2 ;;
    --variants) VARIANTS=$2; shift 2 ;;
    --bind-to) BIND=(--bind-to "$2"); shift 2 ;;
    *) echo "bench_data.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a variants <<<"$VARIANTS"
for v in "${variants[@]}"; do
  [[ $v =~ ^(memory|stream)-(f32|u8|f32-chunked)$ ]] || { echo "bench_data.sh: unknown variant $v" >&2; exit 2; }
done
if [[ ${variants[0]} != memory-f32 ]]; then
  echo "bench_data.sh: the first variant must be memory-f32 (the base)" >&2
  exit 2
fi
nn_bench_data
if [[ $SAMPLES != 60000 ]]; then  # the same kind of data, more (or fewer) rows
  DATA="$WORK/train_$SAMPLES.h5"
  [[ -f $DATA ]] || "$NN_BUILD/nn_datagen" --out "$DATA" --kind teacher --samples "$SAMPLES" --features 784 \
                       --classes 10 --seed 1 >/dev/null
fi
U8="${DATA%.h5}_u8.h5" CHUNKED="${DATA%.h5}_chunked.h5"
[[ -f $U8 || " ${variants[*]} " != *-u8* ]] || /usr/bin/python3 - "$DATA" "$U8" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    x = f["X"][()]
    lo, hi = x.min(), x.max()
    g["X"] = np.round((x - lo) / (hi - lo) * 255).astype(np.uint8)  # the same data quantised to bytes
    g["y"] = f["y"][()]
PY
[[ -f $CHUNKED || " ${variants[*]} " != *-chunked* ]] || /usr/bin/python3 - "$DATA" "$CHUNKED" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    g.create_dataset("X", data=f["X"][()], chunks=True)  # h5py's choice: (3125, 13) for 400000 x 784
    g.create_dataset("y", data=f["y"][()], chunks=True)
PY
export OMP_NUM_THREADS=1
nn_mpirun_flags "$RANKS"
train=(--hidden 512,256 --batch-size 128 --epochs "$EPOCHS" --quiet --profile --warmup-steps 0)
((STEPS > 0)) && train=(--hidden 512,256 --batch-size 128 --epochs 1 --max-steps $((STEPS + 50)) --quiet --profile
                        --warmup-steps 50)
declare -A rate rss readrate ratio
for ((r = 1; r <= REPEATS; r++)); do
  # The base first, the others in reverse order every second round: a run right after the in-memory one ran
  # slower on the Zen 5 guest (the same binary 0.919 there against 0.946 one run later, 2026-12-07), so no
  # variant always takes that place.
  order=("${variants[@]}")
  ((r % 2)) || mapfile -t order < <(echo "${variants[0]}"; printf '%s\n' "${variants[@]:1}" | tac)
  for v in "${order[@]}"; do
    data=$DATA flags=()
    [[ $v == *u8 ]] && data=$U8 flags+=(--scale 1/255)
    [[ $v == *chunked ]] && data=$CHUNKED
    [[ $v == stream* ]] && flags+=(--cache-mb "$CACHE")
    [[ -z ${rate[*]} ]] || sleep "$SETTLE"  # idle before every run but the first
    rm -f "$WORK"/rss.*
    # Each rank's peak RSS into its own file (/usr/bin/time -v's "Maximum resident set size").
    out=$(mpirun "${MPIRUN_FLAGS[@]}" "${BIND[@]}" sh -c '/usr/bin/time -f "%M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
            "$WORK/rss" "$NN_BUILD/nn_dist" --data "$data" "${train[@]}" "${flags[@]}" --metrics "$WORK/bench_data.csv" 2>&1)
    # samples/s of the epochs after the first (the first includes the reader's start)
    if ((STEPS > 0)); then
      this=$(grep -o '"samples_per_sec":[0-9.]*' <<<"$out" | head -1 | cut -d: -f2)
    else
      this=$(tail -n +3 "$WORK/bench_data.csv" | cut -d, -f6 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    fi
    rate[$v]+="$this "
    [[ $v == memory-f32 ]] && base_now=$this
    ratio[$v]+="$(echo "scale=4; $this / $base_now" | bc) "  # against this round's in-memory run
    rss[$v]+="$(cat "$WORK"/rss.* | sort -g | tail -1) "
    readrate[$v]+="$(grep -o '([0-9]* MB/s)' <<<"$out" | tr -dc '0-9' || true) "
  done
  echo "round $r/$REPEATS done" >&2
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
base=$(echo "${rate[memory-f32]}" | median)
best() { tr ' ' '\n' | grep . | sort -g | tail -1; }
best_base=$(echo "${rate[memory-f32]}" | best)
printf '%-19s %10s %10s %11s %10s %16s %s\n' variant samples/s vs_mem_f32 round_ratio best_ratio max_rank_RSS_KiB \
  "all rounds (samples/s; ratio to the round's memory-f32)"
for v in "${variants[@]}"; do
  m=$(echo "${rate[$v]}" | median)
  printf '%-19s %10s %10s %11s %10s %16s %s; %s\n' "$v" "$m" "$(echo "scale=3; $m / $base" | bc)" \
    "$(echo "${ratio[$v]}" | median)" "$(echo "scale=3; $(echo "${rate[$v]}" | best) / $best_base" | bc)" \
    "$(echo "${rss[$v]}" | median)" "${rate[$v]}" "${ratio[$v]}"
done
for v in "${variants[@]}"; do
  [[ $v == stream* ]] &&
    echo "$v: rank 0 read at $(echo "${readrate[$v]}" | median) MB/s while reading (median over rounds)"
done
seq_rate=$(dd if="$DATA" of=/dev/null bs=4M 2>&1 | grep -o '[0-9.]* [GM]B/s')
echo "plain sequential read of $(basename "$DATA") (dd, page cache): $seq_rate"
runs="$EPOCHS epochs" && ((STEPS > 0)) && runs="$STEPS steps"
rounds="$REPEATS interleaved rounds, the order after the base reversed in every second, ${SETTLE} s idle between runs"
echo "($SAMPLES samples, $RANKS ranks, $runs a run, --cache-mb $CACHE, $rounds, binding: ${BIND[1]:-as mpirun chooses})"
