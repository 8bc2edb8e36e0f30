#!/usr/bin/python3
"""The data and plot halves of scripts/digits_example.sh: scikit-learn's digits
(shipped with Debian's python3-sklearn, no download) as nn_dist HDF5 files, and
the two runs' validation loss per epoch with their summary CSV.

  scripts/digits_example.py export DIR [--train 1000] [--seed 0]
  scripts/digits_example.py plot --plain M.csv --regularised M.csv --eval-plain J.json
                                 --eval-best J.json --png OUT.png --csv OUT.csv
"""
import argparse
import csv
import json
import sys

import numpy as np


def fail(message):
    print(f"digits_example.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def export(args):
    import h5py
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixels are counts 0..16; /16 puts them in [0, 1] without needing --standardize.
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    # Stratified so both files hold every digit in the data's proportions.
    x_train, x_val, y_train, y_val = train_test_split(x, y, train_size=args.train, stratify=y,
                                                      random_state=args.seed)
    strings = h5py.string_dtype()
    label_names = [str(k) for k in range(10)]
    feature_names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    for name, xs, ys in (("train", x_train, y_train), ("val", x_val, y_val)):
        with h5py.File(f"{args.dir}/{name}.h5", "w") as f:
            f["X"] = xs
            f["y"] = ys
            f.create_dataset("label_names", data=label_names, dtype=strings)
            f.create_dataset("feature_names", data=feature_names, dtype=strings)
            f.attrs["source"] = "sklearn.datasets.load_digits, X/16"
        print(f"{args.dir}/{name}.h5: {len(ys)} samples, {xs.shape[1]} features")


def read_metrics(path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    if not rows:
        fail(f"{path}: no epochs")
    return rows


def read_eval(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: not nn_eval --json output ({e})")


def summarise(name, rows, evaluation, checkpoint):
    losses = [float(r["val_loss"]) for r in rows]
    best = int(np.argmin(losses))
    return {"run": name, "epochs_run": int(rows[-1]["epoch"]),
            "final_val_accuracy": float(rows[-1]["val_accuracy"]), "final_val_loss": losses[-1],
            "best_val_loss": losses[best], "best_val_loss_epoch": int(rows[best]["epoch"]),
            "best_val_accuracy": max(float(r["val_accuracy"]) for r in rows),
            "eval_checkpoint": checkpoint, "eval_accuracy": round(float(evaluation["accuracy"]), 6),
            "eval_loss": round(float(evaluation["loss"]), 6)}


def plot(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("plain", read_metrics(args.plain), read_eval(args.eval_plain), "final checkpoint"),
            ("regularised", read_metrics(args.regularised), read_eval(args.eval_best), "best.h5")]
    summaries = [summarise(*run) for run in runs]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (name, rows, _, _), s, colour in zip(runs, summaries, ("tab:blue", "tab:orange")):
        epochs = [int(r["epoch"]) for r in rows]
        ax.plot(epochs, [float(r["val_loss"]) for r in rows], color=colour, label=name)
        ax.plot([s["best_val_loss_epoch"]], [s["best_val_loss"]], "o", color=colour,
                label=f"{name}: best epoch {s['best_val_loss_epoch']}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (cross-entropy)")
    ax.set_title("digits, 1000 train / 797 val, hidden 256,256, 2 ranks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summaries[0]))
        writer.writeheader()
        writer.writerows(summaries)
    for s in summaries:
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export")
    p.add_argument("dir")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("plot")
    for flag in ("--plain", "--regularised", "--eval-plain", "--eval-best", "--png", "--csv"):
        p.add_argument(flag, required=True)
    args = parser.parse_args()
    export(args) if args.command == "export" else plot(args)


if __name__ == "__main__":
    main()
