#!/usr/bin/python3
"""--reproducible: the same bits at any rank count, sum path and rank count on resume.

One training job (Adam, dropout, --standardize, --clip-grad-norm, a validation file, 1003 samples: the last block and the
last global batch are short) runs at 1, 2, 3, 4 and 6 ranks and through every sum (shared, hierarchical,
mpi). Every dataset of the final checkpoint (parameters, optimizer state) and every metric of every epoch
(train loss and accuracy, validation loss and accuracy, lr) must be bit-identical. The same job without
--reproducible differs between 2 and 3 ranks (the test can see a difference). A run checkpointed mid-epoch at
4 ranks and resumed at 2 must equal an uninterrupted 3-rank run, bit for bit. And the mode computes the same
math as the normal one: at 1 rank in file order, within float tolerance of the normal mode's weights.
Usage: reproducible_test.py NN_DIST NN_DATAGEN MPIEXEC
"""
import os
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish, mpirun, must_run  # noqa: E402

NN_DIST, NN_DATAGEN, MPIEXEC = sys.argv[1:4]
TIMING_COLUMNS = ("samples_per_sec", "epoch_seconds")  # the only values that may differ


def datasets(path):
    """Every dataset of an HDF5 file: {name: bytes}, plus the /training attributes that are not about the run's shape."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()].tobytes() if hasattr(obj[()], "tobytes") else obj[()]

    with h5py.File(path) as f:
        f.visititems(visit)
    return out


def metrics(path):
    """The metrics CSV without its timing columns: a list of rows of strings."""
    rows = [line.split(",") for line in open(path).read().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING_COLUMNS]
    return [[r[i] for i in keep] for r in rows]


def train(tmp, name, ranks, flags, extra=()):
    """Runs the job at `ranks` ranks; returns (checkpoint path, metrics path, stdout)."""
    out, csv = os.path.join(tmp, name + ".h5"), os.path.join(tmp, name + ".csv")
    cmd = mpirun(MPIEXEC, ranks) + [NN_DIST] + flags + ["--checkpoint", out, "--metrics", csv] + list(extra)
    p = must_run(cmd, seconds=300)
    return out, csv, p.stdout


def differing(a, b):
    """The dataset names whose bytes differ between two checkpoints (or that only one has)."""
    da, db = datasets(a), datasets(b)
    return sorted(k for k in set(da) | set(db) if k not in da or k not in db or da[k] != db[k])


def main():
    with tempfile.TemporaryDirectory() as tmp:
        data, val = os.path.join(tmp, "train.h5"), os.path.join(tmp, "val.h5")
        must_run([NN_DATAGEN, "--kind", "teacher", "--samples", "1003", "--val-out", val, "--val-samples", "301",
                  "--features", "20", "--classes", "4", "--seed", "5", "--out", data])
        job = ["--data", data, "--val", val, "--hidden", "32,16", "--optimizer", "adam", "--lr", "0.01",
               "--dropout", "0.2", "--standardize", "--global-batch-size", "96", "--epochs", "3", "--seed", "7",
               "--clip-grad-norm", "0.5", "--quiet"]
        exact = job + ["--reproducible", "--block-size", "8"]

        # Any rank count, any sum path.
        ref, ref_csv, _ = train(tmp, "np1", 1, exact)
        for ranks, path in ((2, "auto"), (3, "auto"), (4, "shared"), (4, "mpi"), (4, "hierarchical"), (6, "auto")):
            out, csv, _ = train(tmp, f"np{ranks}_{path}", ranks, exact, ["--allreduce", path])
            diff = differing(ref, out)
            check(f"{ranks} ranks, --allreduce {path}: parameters and optimizer state bit-identical to 1 rank",
                  not diff, f"differ: {diff}")
            check(f"{ranks} ranks, --allreduce {path}: every epoch's metrics identical to 1 rank",
                  metrics(csv) == metrics(ref_csv), f"{metrics(csv)} vs {metrics(ref_csv)}")

        # Without the mode, the rank count shows in the bits (so the comparison above can fail).
        a, _, _ = train(tmp, "plain2", 2, job)
        b, _, _ = train(tmp, "plain3", 3, job)
        check("without --reproducible, 2 and 3 ranks differ", bool(differing(a, b)))

        # Mid-epoch checkpoint at 4 ranks (11 steps per epoch: step 5 of epoch 1), resumed at 2.
        ckpt = os.path.join(tmp, "mid.h5")
        must_run(mpirun(MPIEXEC, 4) + [NN_DIST] + exact + ["--checkpoint", ckpt, "--checkpoint-every-steps", "5",
                                                           "--max-steps", "5"], seconds=300)
        with h5py.File(ckpt) as f:
            step = int(f["training"].attrs["epoch_step"])
        check("the 4-rank checkpoint is mid-epoch (step 5 of epoch 1)", step == 5, f"epoch_step {step}")
        resumed, resumed_csv, stdout = train(tmp, "resumed", 2, exact + ["--resume", ckpt])
        whole, whole_csv, _ = train(tmp, "np3_whole", 3, exact)
        diff = differing(whole, resumed)
        check("saved at 4 ranks mid-epoch, resumed at 2 = uninterrupted 3 ranks, bit for bit", not diff,
              f"differ: {diff}")
        check("the resumed run's metrics = the uninterrupted run's", metrics(resumed_csv) == metrics(whole_csv),
              f"{metrics(resumed_csv)} vs {metrics(whole_csv)}")
        check("no note that the bits differ on resume", "bits differ" not in stdout, stdout)

        # The same math as the normal mode: 1 rank, file order, no dropout (its masks are the same, but keep it plain).
        plain = [f for f in job if f not in ("--dropout", "0.2")] + ["--no-shuffle"]
        normal, _, _ = train(tmp, "normal", 1, plain)
        mode, _, _ = train(tmp, "mode", 1, plain + ["--reproducible", "--block-size", "8"])
        worst = 0.0
        with h5py.File(normal) as f, h5py.File(mode) as g:
            for name in f["model"]:
                x, y = f["model"][name][()], g["model"][name][()]
                worst = max(worst, float(np.abs(x - y).max() / max(1.0, np.abs(x).max())))
        check(f"--reproducible within float tolerance of the normal mode (largest relative difference {worst:.1e}, "
              "tolerance 1e-5)", worst < 1e-5)
        # A loss sum beyond 2^29 leaves the grid on which the ranks' float64 sums are exact: said once.
        big = os.path.join(tmp, "big.h5")
        must_run([NN_DATAGEN, "--kind", "regression", "--samples", "500", "--features", "10", "--out", big])
        p = must_run(mpirun(MPIEXEC, 2) + [NN_DIST, "--data", big, "--reproducible", "--global-batch-size", "96",
                                           "--block-size", "8", "--scale", "1e5", "--lr", "1e-15", "--epochs", "1"])
        check("a loss sum beyond 2^29 is warned about, once",
              p.stderr.count("warning: --reproducible: a step's loss sum") == 1, p.stderr)
    finish()


if __name__ == "__main__":
    main()
