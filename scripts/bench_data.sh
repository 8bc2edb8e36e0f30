#!/bin/bash
# What streaming and compact storage cost: the standard benchmark (60000x784
# teacher data, 784-512-256-10, batch 128 per rank, SGD) trained for a few
# epochs in memory and streamed (--cache-mb), from float32 and from uint8
# files. Runs are interleaved (one of each variant per round); prints the
# median samples/s of the epochs after the first, their ratio to in-memory
# float32, each rank's peak RSS, and the streaming reader's rate against a
# plain sequential read of the same file (dd, from the page cache).
# Usage: scripts/bench_data.sh [--ranks 2] [--epochs 4] [--repeats 5] [--cache-mb 64]
set -euo pipefail
source "$(dirname "$0")/common.sh"
RANKS=2 EPOCHS=4 REPEATS=5 CACHE=64
while [[ $# -gt 0 ]]; do
  case $1 in
    --ranks) RANKS=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --cache-mb) CACHE=$2; shift 2 ;;
    *) echo "bench_data.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
nn_bench_data
U8="$WORK/train_u8.h5"
[[ -f $U8 ]] || /usr/bin/python3 - "$DATA" "$U8" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    x = f["X"][()]
    lo, hi = x.min(), x.max()
    g["X"] = np.round((x - lo) / (hi - lo) * 255).astype(np.uint8)  # the same data quantised to bytes
    g["y"] = f["y"][()]
PY
export OMP_NUM_THREADS=1
nn_mpirun_flags "$RANKS"
train=(--hidden 512,256 --batch-size 128 --epochs "$EPOCHS" --quiet --profile --warmup-steps 0)
variants=("memory-f32" "stream-f32" "memory-u8" "stream-u8")
declare -A rate rss readrate
for ((r = 1; r <= REPEATS; r++)); do
  for v in "${variants[@]}"; do
    data=$DATA flags=()
    [[ $v == *u8 ]] && data=$U8 flags+=(--scale 1/255)
    [[ $v == stream* ]] && flags+=(--cache-mb "$CACHE")
    rm -f "$WORK"/rss.*
    # Each rank's peak RSS into its own file (/usr/bin/time -v's "Maximum resident set size").
    out=$(mpirun "${MPIRUN_FLAGS[@]}" --bind-to none sh -c '/usr/bin/time -f "%M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
            "$WORK/rss" "$NN_BUILD/nn_dist" --data "$data" "${train[@]}" "${flags[@]}" --metrics "$WORK/bench_data.csv" 2>&1)
    # samples/s of the epochs after the first (the first includes the reader's start)
    rate[$v]+="$(tail -n +3 "$WORK/bench_data.csv" | cut -d, -f6 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') "
    rss[$v]+="$(cat "$WORK"/rss.* | sort -g | tail -1) "
    readrate[$v]+="$(grep -o '([0-9]* MB/s)' <<<"$out" | tr -dc '0-9' || true) "
  done
  echo "round $r/$REPEATS done" >&2
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
base=$(echo "${rate[memory-f32]}" | median)
printf '%-12s %14s %9s %16s %s\n' variant samples/s vs_mem_f32 max_rank_RSS_KiB "all rounds (samples/s)"
for v in "${variants[@]}"; do
  m=$(echo "${rate[$v]}" | median)
  printf '%-12s %14s %9s %16s %s\n' "$v" "$m" "$(echo "scale=3; $m / $base" | bc)" "$(echo "${rss[$v]}" | median)" "${rate[$v]}"
done
for v in stream-f32 stream-u8; do
  echo "$v: the reader thread read at $(echo "${readrate[$v]}" | median) MB/s (median over rounds, rank 0)"
done
seq_rate=$(dd if="$DATA" of=/dev/null bs=4M 2>&1 | grep -o '[0-9.]* [GM]B/s')
echo "plain sequential read of $(basename "$DATA") (dd, page cache): $seq_rate"
echo "($RANKS ranks, $EPOCHS epochs, --cache-mb $CACHE, $REPEATS interleaved rounds)"
