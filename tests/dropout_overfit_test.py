#!/usr/bin/python3
"""--dropout against overfitting, on scikit-learn's digits (Debian's python3-sklearn).

300 training samples and a wide net (64 -> 512 -> 512 -> 10, SGD with
momentum, 300 epochs) overfit: without dropout the validation loss climbs once
the training set is learnt. The same run with --dropout 0.3 must end with a
lower validation loss (the mean of the last 25 epochs').
Usage: dropout_overfit_test.py NN_DIST MPIEXEC
"""
import os
import sys
import tempfile

import h5py
import numpy as np
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import must_run  # noqa: E402

NN_DIST, MPIEXEC = sys.argv[1:3]


def write(path, x, y):
    with h5py.File(path, "w") as f:
        f["X"] = (x / 16).astype(np.float32)  # pixels 0..16
        f["y"] = y.astype(np.int32)


def val_losses(tmp, name, extra):
    """The validation loss of each epoch of a 2-rank run."""
    metrics = os.path.join(tmp, name + ".csv")
    must_run([MPIEXEC, "-np", "2", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", NN_DIST,
              "--data", os.path.join(tmp, "train.h5"), "--val", os.path.join(tmp, "val.h5"),
              "--hidden", "512,512", "--lr", "0.03", "--momentum", "0.9", "--batch-size", "16",
              "--epochs", "300", "--seed", "5", "--metrics", metrics, "--quiet"] + extra, seconds=400)
    rows = [line.split(",") for line in open(metrics).read().splitlines()]
    column = rows[0].index("val_loss")
    return [float(r[column]) for r in rows[1:]]


def main():
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    train, val = order[:300], order[300:]
    with tempfile.TemporaryDirectory() as tmp:
        write(os.path.join(tmp, "train.h5"), digits.data[train], digits.target[train])
        write(os.path.join(tmp, "val.h5"), digits.data[val], digits.target[val])
        plain = val_losses(tmp, "plain", [])
        dropped = val_losses(tmp, "dropout", ["--dropout", "0.3"])
    plain_end, dropped_end = (sum(v[-25:]) / 25 for v in (plain, dropped))
    print(f"validation loss over the last 25 epochs: {plain_end:.4f} without dropout (lowest {min(plain):.4f}), "
          f"{dropped_end:.4f} with --dropout 0.3 (lowest {min(dropped):.4f})")
    checks = [(plain_end > min(plain) * 1.05, "the run without dropout overfits (its end 5% above its lowest)"),
              (dropped_end < plain_end, "--dropout 0.3 ends with the lower validation loss")]
    for ok, words in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {words}")
    passed = sum(ok for ok, _ in checks)
    print(f"{passed} passed, {len(checks) - passed} failed")
    ok = passed == len(checks)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
