"""runs.csv, scale.py's record of a sweep: its columns, the rows of one run (from the run's BENCH_JSON
line and --metrics file), and the runs read back for the summary and the plots."""

import csv
import json
import math


# runs.csv, in order. Per run: the same value on every epoch row of the run.
COLUMNS = [
    ("run", "the run's number in the sweep, 1.. (runs/NNN-*.log)"),
    ("mode", "strong or weak"),
    ("ranks", "MPI ranks"),
    ("global_batch", "samples per step over all ranks"),
    ("batch_per_rank", "samples per step per rank (nn_dist --batch-size)"),
    ("repeat", "which repeat of this point, 1.."),
    ("epoch", "epoch number from the metrics file (empty: the run wrote no epoch)"),
    ("wall_seconds", "training seconds since the start of training: the sum of epoch_seconds up to this epoch "
                     "(training steps only: start-up, validation and checkpoints are not counted)"),
    ("epoch_seconds", "this epoch's training seconds (nn_dist --metrics)"),
    ("train_loss", "mean training loss of the epoch's minibatches"),
    ("train_accuracy", "training accuracy (fraction) of the epoch's minibatches; empty for regression"),
    ("val_loss", "validation loss after the epoch; empty without a validation set"),
    ("val_accuracy", "validation accuracy (fraction) after the epoch"),
    ("samples_per_sec", "this epoch's training samples/s over all ranks (nn_dist --metrics)"),
    ("profile_samples_per_sec", "samples/s over all ranks of every step after the warm-up steps (BENCH_JSON)"),
    ("step_ms", "mean time per step after warm-up, rank 0 (BENCH_JSON step_ms) = data + compute + "
                "exposed_sum + update"),
    ("data_ms", "gathering the minibatch (BENCH_JSON data_ms)"),
    ("compute_ms", "forward_ms + backward_ms: the rank's own forward and backward passes"),
    ("exposed_sum_ms", "sync_test_ms + sync_wait_ms: step time spent on the gradient sum outside compute: "
                       "driving it between backprop pieces, then waiting for it and for slower ranks"),
    ("update_ms", "the optimizer's update (BENCH_JSON optimizer_ms)"),
    ("forward_ms", "BENCH_JSON forward_ms"),
    ("backward_ms", "BENCH_JSON backward_ms (backprop, without the sync tests inside it)"),
    ("sync_test_ms", "BENCH_JSON sync_test_ms"),
    ("sync_wait_ms", "BENCH_JSON sync_wait_ms (without the update done while waiting)"),
    ("allreduce", "the gradient sum nn_dist chose (BENCH_JSON allreduce)"),
    ("run_seconds", "the launcher's wall time for the whole run, start-up to exit"),
    ("exit_code", "the launcher's exit code (0 ok; 124 --run-timeout)"),
    ("cores", "cores available: this machine's (nproc), or the SLURM allocation's tasks x cpus per task"),
    ("oversubscribed", "1 when ranks > cores (mpirun --oversubscribe): timings not meaningful"),
    ("launcher", "mpirun or srun"),
    ("log", "the run's output, relative to the folder of runs.csv"),
]
FIELDS = [name for name, _ in COLUMNS]
# BENCH_JSON field -> runs.csv column, copied as they are.
BENCH_COPY = {"samples_per_sec": "profile_samples_per_sec", "step_ms": "step_ms", "data_ms": "data_ms",
              "forward_ms": "forward_ms", "backward_ms": "backward_ms", "sync_test_ms": "sync_test_ms",
              "sync_wait_ms": "sync_wait_ms", "optimizer_ms": "update_ms", "allreduce": "allreduce"}
METRICS_COPY = ["epoch", "epoch_seconds", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                "samples_per_sec"]


def read_bench(log_path):
    """The last BENCH_JSON line of a run's output, or None."""
    bench = None
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if line.startswith("BENCH_JSON "):
                    try:
                        bench = json.loads(line[len("BENCH_JSON "):])
                    except ValueError:
                        pass
    except OSError:
        pass
    return bench


def read_metrics(path):
    """The rows of a --metrics file, read by column name (other branches may add columns)."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def run_rows(run, bench, metrics, seconds, code, cores, launcher, log_rel):
    """runs.csv rows for one run: one per epoch, or one with an empty epoch when it wrote none."""
    base = {k: run[k] for k in ("mode", "ranks", "global_batch", "batch_per_rank", "repeat")}
    base.update(run=run["index"], run_seconds=f"{seconds:.2f}", exit_code=code, cores=cores,
                oversubscribed=int(launcher == "mpirun" and run["ranks"] > cores), launcher=launcher, log=log_rel)
    if bench:
        for key, col in BENCH_COPY.items():
            if key in bench:
                base[col] = bench[key]
        try:
            base["compute_ms"] = f"{bench['forward_ms'] + bench['backward_ms']:.4f}"
            base["exposed_sum_ms"] = f"{bench['sync_test_ms'] + bench['sync_wait_ms']:.4f}"
        except (KeyError, TypeError):
            pass
    rows, wall = [], 0.0
    for m in metrics:
        row = dict(base)
        for k in METRICS_COPY:
            row[k] = m.get(k, "")
        try:
            wall += float(m.get("epoch_seconds") or "nan")
        except ValueError:
            wall = float("nan")
        row["wall_seconds"] = f"{wall:.4f}"
        rows.append(row)
    return rows or [base]


def num(text):
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def load_runs(csv_path):
    """runs.csv as one dict per run, with its epochs as a list (numbers) and its last epoch's losses as
    written ("final": epoch, train_loss, val_loss strings; None without an epoch)."""
    runs = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            r = runs.get(row["run"])
            if r is None:
                r = runs[row["run"]] = {
                    "mode": row["mode"], "ranks": int(row["ranks"]), "global_batch": int(row["global_batch"]),
                    "batch_per_rank": int(row["batch_per_rank"]), "repeat": int(row["repeat"]),
                    "exit_code": int(row["exit_code"]), "cores": int(row["cores"]),
                    "oversubscribed": row["oversubscribed"] == "1", "epochs": [], "run": int(row["run"]),
                    "final": None}
                for col in ("profile_samples_per_sec", "step_ms", "data_ms", "compute_ms", "exposed_sum_ms",
                            "update_ms", "run_seconds"):
                    r[col] = num(row.get(col))
            if row.get("epoch"):
                # The last epoch's losses as nn_dist wrote them: strings, compared as written.
                r["final"] = {k: row.get(k) or "" for k in ("epoch", "train_loss", "val_loss")}
                r["epochs"].append({k: num(row.get(k)) for k in ("epoch", "wall_seconds", "train_loss", "val_loss",
                                                                 "train_accuracy", "val_accuracy",
                                                                 "samples_per_sec")})
    return list(runs.values())
