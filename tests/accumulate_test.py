#!/usr/bin/python3
"""--accumulate-steps K: K micro-batches of b per rank, their gradients added, one sum, one update.

1. K micro-batches of b equal one step of K x b (and --global-batch-size K x b x ranks), within float
   tolerance, at 1, 2 and 3 ranks, SGD with momentum and Adam, with a warmup + cosine schedule scaled
   with the global batch, over two epochs of 203 samples (each epoch's last step is short: fewer
   micro-batches, the last of them short). Steps per epoch, the global batch, the optimizer's step count
   and the metrics count steps and samples alike; the checkpoint records K.
2. Bytes sent per sample fall by K: an LD_PRELOAD PMPI interposer (mpi_bytes.cpp) counts the bytes each
   rank hands to MPI; the difference between two runs of different lengths (each ending with one checkpoint,
   whose sample count says what it trained) is the steps' traffic alone.
   --allreduce mpi and hierarchical (its buckets start from the last micro-batch's backprop) at 2 ranks,
   K = 4 against K = 1 at the same micro-batch.
3. A mid-epoch checkpoint at K = 3, resumed, equals the uninterrupted run bit for bit; every checkpoint
   (every few steps, or by --checkpoint-minutes after nearly every step) holds whole steps; a resume with
   another K at the same global batch continues with a note, at another global batch mid-epoch it is
   refused, at an epoch's end it continues.
Usage: accumulate_test.py NN_DIST NN_DATAGEN MPIEXEC LIBMPI_BYTES
"""
import glob
import os
import re
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish, mpirun, must_run, run_with_deadline  # noqa: E402

NN_DIST, NN_DATAGEN, MPIEXEC, LIBMPI_BYTES = sys.argv[1:5]


def tensors(path):
    """{name: array} of every dataset of a checkpoint (/model and /optimizer), and its /training attributes."""
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        training = dict(f["training"].attrs)
        training["optimizer_step"] = int(f["optimizer"].attrs["step"])
    return out, training


def largest_difference(a, b):
    """The largest difference between two checkpoints' datasets, relative to the larger of 1 and the value."""
    ta, _ = tensors(a)
    tb, _ = tensors(b)
    if ta.keys() != tb.keys():
        return float("inf")
    return max(float(np.max(np.abs(ta[k] - tb[k]) / np.maximum(1.0, np.abs(ta[k])))) for k in ta)


def same_bits(a, b):
    ta, sa = tensors(a)
    tb, sb = tensors(b)
    return ta.keys() == tb.keys() and all(np.array_equal(ta[k].view(np.uint8), tb[k].view(np.uint8)) for k in ta) \
        and sa["optimizer_step"] == sb["optimizer_step"]


def metrics(path):
    """The metrics CSV as {column: [values]}."""
    rows = [line.split(",") for line in open(path).read().splitlines()]
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}


def banner(stdout):
    """(steps per epoch, the learning-rate line) of nn_dist's banner."""
    steps = re.search(r"(\d+) steps/epoch", stdout)
    lr = re.search(r"learning rate: (.*)", stdout)
    return (int(steps.group(1)) if steps else None), (lr.group(1) if lr else None)


def train(ranks, flags, name, tmp, env=()):
    """nn_dist at `ranks` ranks; returns (checkpoint, metrics CSV, stdout)."""
    out, csv = os.path.join(tmp, name + ".h5"), os.path.join(tmp, name + ".csv")
    words = []
    for e in env:
        words += ["-x", e]
    p = must_run(mpirun(MPIEXEC, ranks) + words + [NN_DIST] + flags + ["--checkpoint", out, "--metrics", csv])
    return out, csv, p.stdout


def equal_to_one_big_batch(tmp, data):
    """Part 1."""
    schedule = ["--lr-schedule", "cosine", "--warmup-epochs", "0.5", "--lr-scaling", "linear",
                "--lr-reference-batch", "16", "--lr-min", "0.001"]
    for ranks in (1, 2, 3):
        for opt in (["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"], ["--optimizer", "adam", "--lr", "0.01"]):
            job = ["--data", data, "--hidden", "16,8", "--epochs", "2", "--seed", "4"] + schedule + opt
            what = f"{ranks} rank(s), {opt[1]}"
            whole, whole_csv, whole_out = train(ranks, job + ["--batch-size", "12"], "whole", tmp)
            acc, acc_csv, acc_out = train(ranks, job + ["--batch-size", "4", "--accumulate-steps", "3"], "acc", tmp)
            glob_acc, _, _ = train(ranks, job + ["--global-batch-size", str(12 * ranks), "--accumulate-steps", "3"],
                                   "glob", tmp)
            single, _, _ = train(ranks, job + ["--batch-size", "4"], "single", tmp)
            worst = largest_difference(whole, acc)
            check(f"{what}: 3 micro-batches of 4 = one step of 12 (largest relative difference {worst:.1e}, "
                  "tolerance 1e-5)", worst < 1e-5)
            worst_global = largest_difference(whole, glob_acc)
            check(f"{what}: --global-batch-size {12 * ranks} --accumulate-steps 3 = the same "
                  f"({worst_global:.1e})", worst_global < 1e-5)
            apart = largest_difference(whole, single)
            check(f"{what}: one micro-batch of 4 a step is far from it ({apart:.1e}; the test can fail)", apart > 1e-3)
            _, ws = tensors(whole)
            _, acs = tensors(acc)
            check(f"{what}: the same steps, global batch and optimizer step count; K recorded",
                  (ws["global_step"], ws["global_batch"], ws["optimizer_step"]) ==
                  (acs["global_step"], acs["global_batch"], acs["optimizer_step"]) and
                  int(acs["accumulate_steps"]) == 3 and int(ws["accumulate_steps"]) == 1 and
                  int(acs["global_batch"]) == 12 * ranks,
                  f"{ws} vs {acs}")
            check(f"{what}: the banner's steps per epoch and learning rate (scaled for the global batch) agree",
                  banner(whole_out) == banner(acc_out) and None not in banner(acc_out),
                  f"{banner(whole_out)} vs {banner(acc_out)}")
            mw, ma = metrics(whole_csv), metrics(acc_csv)
            close = all(abs(float(a) - float(b)) <= 1e-5 * max(1.0, abs(float(a)))
                        for col in ("train_loss", "train_accuracy", "lr") for a, b in zip(mw[col], ma[col]))
            check(f"{what}: every epoch's loss, accuracy and lr agree", close and len(mw["lr"]) == 2, f"{mw} vs {ma}")


def streamed(tmp, data):
    """Part 1, streamed: with --cache-mb the micro-batches come from the windows in the big batch's order."""
    job = ["--data", data, "--hidden", "16,8", "--epochs", "2", "--seed", "4", "--optimizer", "sgd", "--lr", "0.05",
           "--momentum", "0.9", "--cache-mb", "0.002"]  # windows of ~40 rows: each rank's shard crosses several
    whole, _, whole_out = train(2, job + ["--batch-size", "12"], "s_whole", tmp)
    acc, _, _ = train(2, job + ["--batch-size", "4", "--accumulate-steps", "3"], "s_acc", tmp)
    single, _, _ = train(2, job + ["--batch-size", "4"], "s_single", tmp)
    worst, apart = largest_difference(whole, acc), largest_difference(whole, single)
    check("2 ranks, streamed: the run streams (its start-up line)", "streaming:" in whole_out, whole_out[-400:])
    check(f"2 ranks, streamed (--cache-mb 0.002): 3 micro-batches of 4 = one step of 12 ({worst:.1e}, tolerance 1e-5; "
          f"one micro-batch of 4 a step: {apart:.1e})", worst < 1e-5 and apart > 1e-3)


def traffic(tmp, ranks, flags, steps):
    """(bytes all ranks handed to MPI, samples trained) in a run of `steps` steps; the samples are those its
    checkpoint after the last step counts."""
    prefix, ckpt = os.path.join(tmp, "bytes"), os.path.join(tmp, "traffic.h5")
    for f in glob.glob(prefix + ".*"):
        os.remove(f)
    must_run(mpirun(MPIEXEC, ranks) + ["-x", "LD_PRELOAD=" + LIBMPI_BYTES, "-x", "NN_MPI_BYTES=" + prefix,
                                       NN_DIST] + flags +
             ["--max-steps", str(steps), "--checkpoint", ckpt, "--checkpoint-every-steps", str(steps), "--quiet"])
    files = glob.glob(prefix + ".*")
    _, state = tensors(ckpt)
    return (sum(int(open(f).read()) for f in files) if len(files) == ranks else None), float(state["epoch_sums"][2])


def bytes_fall_by_k(tmp, data):
    """Part 2."""
    job = ["--data", data, "--hidden", "64,32", "--epochs", "1", "--batch-size", "8"]
    # A step hands MPI the whole gradient from every rank (mpi), or one copy per node, each rank its own part
    # of every bucket (hierarchical: the node's sum goes to an allreduce over the nodes, here of one rank each).
    for mode, copies in (("mpi", 2), ("hierarchical", 1)):
        per_sample = {}
        for k, (short, long_) in ((1, (8, 24)), (4, (2, 6))):
            flags = job + ["--allreduce", mode, "--accumulate-steps", str(k)]
            (a, a_samples), (b, b_samples) = traffic(tmp, 2, flags, short), traffic(tmp, 2, flags, long_)
            if a is None or b is None:
                check(f"--allreduce {mode} K={k}: every rank wrote its byte count", False)
                return
            per_sample[k] = (b - a) / (b_samples - a_samples)
        ratio = per_sample[4] / per_sample[1]
        # 20-64-32-4: 3,556 parameters, so a step of 16 samples sums at least 14 KB per copy.
        check(f"--allreduce {mode}, 2 ranks: bytes per sample at K=4 are 1/4 of K=1 ({per_sample[1]:.1f} -> "
              f"{per_sample[4]:.1f} bytes, ratio {ratio:.4f})",
              abs(ratio - 0.25) < 0.005 and per_sample[1] * 16 > copies * 3556 * 4,
              f"{per_sample}")


def resume_on_step_boundaries(tmp, data):
    """Part 3."""
    ranks = 2

    def job(k, b, epochs=2):
        return ["--data", data, "--hidden", "16,8", "--epochs", str(epochs), "--optimizer", "adam", "--lr", "0.01",
                "--dropout", "0.2", "--batch-size", str(b), "--accumulate-steps", str(k), "--seed", "9", "--quiet"]

    def nn_dist(flags):
        return run_with_deadline(mpirun(MPIEXEC, ranks) + [NN_DIST] + flags)

    # 203 samples, 2 ranks: 102 a rank, 26 micro-batches of 4, 9 steps an epoch (the last of 2 micro-batches).
    whole, _, _ = train(ranks, job(3, 4), "uninterrupted", tmp)
    mid = os.path.join(tmp, "mid.h5")
    must_run(mpirun(MPIEXEC, ranks) + [NN_DIST] + job(3, 4) + ["--checkpoint", mid, "--checkpoint-every-steps", "13",
                                                               "--max-steps", "13"])
    _, state = tensors(mid)
    check("the checkpoint is mid-epoch at step 4 of epoch 2, after whole steps of 3 micro-batches",
          (int(state["epoch"]), int(state["epoch_step"]), int(state["global_step"]), state["optimizer_step"]) ==
          (1, 4, 13, 13) and float(state["epoch_sums"][2]) == 4 * 24, f"{state}")
    resumed = os.path.join(tmp, "resumed.h5")
    must_run(mpirun(MPIEXEC, ranks) + [NN_DIST] + job(3, 4) + ["--resume", mid, "--checkpoint", resumed])
    check("K=3: saved mid-epoch and resumed = uninterrupted, bit for bit", same_bits(whole, resumed))

    # Every checkpoint on a step's boundary: --checkpoint-minutes 1e-8 (0.6 us) writes after every step.
    folder = os.path.join(tmp, "every")
    must_run(mpirun(MPIEXEC, ranks) + [NN_DIST] + job(3, 4) + ["--checkpoint-dir", folder, "--checkpoint-minutes",
                                                               "1e-8", "--keep-checkpoints", "100"])
    boundaries, seen = True, []
    for path in sorted(glob.glob(os.path.join(folder, "ckpt-*.h5"))):
        _, s = tensors(path)
        step, count = int(s["epoch_step"]), float(s["epoch_sums"][2])
        if step > 0:
            seen.append(step)
            boundaries = boundaries and count == step * 24
        boundaries = boundaries and int(os.path.basename(path)[5:-3]) == int(s["global_step"])
    check(f"every mid-epoch checkpoint holds whole steps ({len(seen)} mid-epoch checkpoints)",
          boundaries and len(seen) >= 8, f"epoch steps {seen}")

    # Another K at the same global batch (6 micro-batches of 2): continues, says the bits differ, stays close.
    other_k = os.path.join(tmp, "other_k.h5")
    p = nn_dist(job(6, 2) + ["--resume", mid, "--checkpoint", other_k])
    worst = largest_difference(whole, other_k) if p.returncode == 0 else float("inf")
    check(f"mid-epoch resume with 6 micro-batches of 2 (the same global batch) continues with a note, within float "
          f"tolerance ({worst:.1e})",
          p.returncode == 0 and "--accumulate-steps 3, continued with 6" in p.stdout and worst < 1e-4,
          p.stdout + p.stderr)
    # Another global batch mid-epoch: refused, as another --batch-size is.
    p = nn_dist(job(2, 4) + ["--resume", mid])
    check("mid-epoch resume with --accumulate-steps 2 (another global batch) is refused in one line, exit 2",
          p.returncode == 2 and "global batch 24" in p.stderr and "global batch 16" in p.stderr and
          len([line for line in p.stderr.splitlines() if line.startswith("nn_dist: error")]) == 1, p.stderr)
    # At an epoch's end another K is another global batch, as a new --batch-size would be.
    end = os.path.join(tmp, "end.h5")
    must_run(mpirun(MPIEXEC, ranks) + [NN_DIST] + job(3, 4, epochs=1) + ["--checkpoint", end])
    p = nn_dist(job(2, 4) + ["--resume", end])
    check("an epoch-end checkpoint resumes with another --accumulate-steps",
          p.returncode == 0 and "continued with 2" in p.stdout, p.stdout + p.stderr)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.h5")
        must_run([NN_DATAGEN, "--kind", "teacher", "--samples", "203", "--features", "6", "--classes", "3",
                  "--seed", "2", "--out", data])
        big = os.path.join(tmp, "big.h5")
        must_run([NN_DATAGEN, "--kind", "teacher", "--samples", "4096", "--features", "20", "--classes", "4",
                  "--seed", "3", "--out", big])
        equal_to_one_big_batch(tmp, data)
        streamed(tmp, data)
        bytes_fall_by_k(tmp, big)
        resume_on_step_boundaries(tmp, data)
    finish()


if __name__ == "__main__":
    main()
