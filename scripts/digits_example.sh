#!/usr/bin/env bash
# Regularisation on real data: scikit-learn's digits (1000 train / 797 val, stratified), the same
# 256,256 net trained twice on 2 ranks, plain SGD for 150 epochs against dropout + AdamW + plateau
# lr + early stopping (cap 150); then nn_eval on each run's model and one plot of both val losses.
#   scripts/digits_example.sh [--out DIR] [--results DIR]
set -euo pipefail
source "$(dirname "$0")/common.sh"

out="$NN_BUILD/digits"
results="$NN_ROOT/cluster/results"
while (( $# )); do
  case $1 in
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --results) results=${2:?--results needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "digits_example.sh: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "digits_example.sh: error: $*" >&2; exit 1; }
# Any command that fails under set -e still says which one, not just a bare exit code.
trap 'fail "line $LINENO: \"$BASH_COMMAND\" exited with $?"' ERR

python=/usr/bin/python3
"$python" -c 'import sklearn, h5py, matplotlib' 2>/dev/null ||
  fail "$python lacks scikit-learn, h5py or matplotlib: run scripts/install_deps.sh"
nn_build --target nn_dist nn_eval >/dev/null
mkdir -p "$out" "$results"
helper="$NN_ROOT/scripts/digits_example.py"
"$python" "$helper" export "$out"

nn_mpirun_flags 2
# What the two runs share, so that only the regularisation differs (and the optimizer, whose lr
# cannot be shared: 0.05 is SGD's, 1e-3 AdamW's usual one).
common=(--data "$out/train.h5" --val "$out/val.h5" --hidden 256,256 --activation relu
        --batch-size 32 --epochs 150 --seed 1 --progress off --quiet)

# Fresh outputs each time: a --checkpoint-dir belongs to one run, and an old best.h5 would be refused.
rm -rf "$out/plain.h5" "$out/plain.csv" "$out/regularised" "$out/regularised.csv"
echo "== plain: SGD, momentum 0.9, lr 0.05, 150 epochs"
mpirun "${MPIRUN_FLAGS[@]}" "$NN_BUILD/nn_dist" "${common[@]}" --optimizer sgd --momentum 0.9 --lr 0.05 \
  --checkpoint "$out/plain.h5" --metrics "$out/plain.csv" | tee "$out/plain.log"
echo "== regularised: dropout 0.3, AdamW (lr 1e-3, weight decay 0.01), plateau lr, early stopping 20 on val_loss"
mpirun "${MPIRUN_FLAGS[@]}" "$NN_BUILD/nn_dist" "${common[@]}" --dropout 0.3 --optimizer adamw --lr 0.001 \
  --weight-decay 0.01 --early-stopping 20 --monitor val_loss --lr-schedule plateau --plateau-patience 5 \
  --plateau-factor 0.5 --checkpoint-dir "$out/regularised" --metrics "$out/regularised.csv" |
  tee "$out/regularised.log"
[[ -f $out/regularised/best.h5 ]] || fail "$out/regularised/best.h5 was not written"

# Each run's model as it would be deployed: the plain run's last epoch, the regularised run's best one.
mpirun "${MPIRUN_FLAGS[@]}" "$NN_BUILD/nn_eval" --model "$out/plain.h5" --data "$out/val.h5" --json \
  >"$out/eval_plain.json"
mpirun "${MPIRUN_FLAGS[@]}" "$NN_BUILD/nn_eval" --model "$out/regularised/best.h5" --data "$out/val.h5" --json \
  >"$out/eval_best.json"

echo "== summary"
"$python" "$helper" plot --plain "$out/plain.csv" --regularised "$out/regularised.csv" \
  --eval-plain "$out/eval_plain.json" --eval-best "$out/eval_best.json" \
  --png "$results/digits_val_loss.png" --csv "$results/digits_summary.csv"
echo "plot: $results/digits_val_loss.png  summary: $results/digits_summary.csv"
