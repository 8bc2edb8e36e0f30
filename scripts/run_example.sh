#!/usr/bin/env bash
# README command 1: install what is missing, build, generate example data
# (three interleaved spirals: no linear model fits them), and train on it
# with 2 MPI ranks, printing one line per epoch and the final accuracy.
set -euo pipefail
source "$(dirname "$0")/common.sh"
"$NN_ROOT/scripts/install_deps.sh"
nn_build --target nn_dist nn_datagen

example="$NN_ROOT/example"
mkdir -p "$example"
"$NN_BUILD/nn_datagen" --kind spirals --classes 3 --samples 20000 --noise 0.02 --seed 1 \
  --out "$example/train.h5" --val-out "$example/val.h5" --val-samples 4000

nn_mpirun_flags 2
mpirun "${MPIRUN_FLAGS[@]}" "$NN_BUILD/nn_dist" --data "$example/train.h5" --val "$example/val.h5" \
  --hidden 64,64 --activation relu --optimizer adam --lr 0.01 --batch-size 32 --epochs 20 \
  --checkpoint "$example/model.h5" --metrics "$example/metrics.csv" "$@"

final=$(tail -n 1 "$example/metrics.csv")
echo "final: train_accuracy $(cut -d, -f3 <<<"$final")  val_accuracy $(cut -d, -f5 <<<"$final")  (checkpoint: example/model.h5, metrics: example/metrics.csv)"
