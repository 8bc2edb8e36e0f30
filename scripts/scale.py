#!/usr/bin/python3
"""Scaling experiments: the same nn_dist training at several rank counts, every
epoch of every run in one CSV, and plots drawn from it.

  scripts/scale.py [options] -- NN_DIST_OPTIONS...
  scripts/scale.py plot DIR [--target-accuracy A]

  --mode strong|weak|strong,weak   strong: a fixed global batch, split over the
                      ranks (--global-batch, which every rank count must divide);
                      weak: a fixed batch per rank (--batch-per-rank). Default weak.
  --ranks 1,2,4       rank counts, run in this order (default: 1, 2, 4, ... up to
                      the cores here, or up to the tasks of the SLURM allocation)
  --global-batch G,.. strong: one curve per global batch (a global-batch sweep
                      at fixed ranks is --mode strong --ranks 2 --global-batch 64,128,256)
  --batch-per-rank B,.. weak: one curve per batch per rank (default: the
                      --batch-size after --, else nn_dist's default, 32)
  --repeats N         runs of each point (default 1); plots show the median
                      and min-max; the repeats are interleaved in time
  --target-accuracy A time to reach validation accuracy A (training accuracy
                      when there is no validation set), per rank count
  --out DIR           results (default scale-<SLURM job id>, else scale-<date-time>)
  --launcher auto|mpirun|srun   auto: srun inside a SLURM allocation
                      (SLURM_JOB_ID set), else mpirun
  --launcher-args "..."  extra launcher flags, e.g. "--map-by ppr:2:node"
  --nn-dist PATH      the binary (default: $NN_DIST, else build/nn_dist of
                      this checkout, else the installed one beside this
                      script, else nn_dist on PATH)
  --run-timeout S     stop a run after S seconds (recorded as exit code 124)
  --no-plots          only runs.csv (plot later with `scale.py plot DIR`)

Everything after -- goes to every run of nn_dist; scale.py adds --batch-size,
--profile and --metrics. An nn_dist --batch-size there is taken as the weak
batch per rank, --global-batch-size as the strong global batch.

Writes DIR/runs.csv (one row per run and epoch; columns in COLUMNS below),
DIR/runs/NNN-*.log and *.metrics.csv (each run's output and metrics),
DIR/sweep.json (the machine, the command), then DIR/summary.csv (medians
per curve and rank count) and the plots: throughput.png, efficiency.png,
breakdown.png, loss.png, time_to_accuracy.png. A failed run is recorded with
its exit code and log and the sweep goes on; the exit code is then 1.
Local runs use mpirun with the flags of scripts/common.sh; runs with more ranks
than cores are oversubscribed, and their timings mean nothing.
"""

import argparse
import csv
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BATCH = 32  # nn_dist's --batch-size default

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
PLOTS = ["throughput.png", "efficiency.png", "breakdown.png", "loss.png", "time_to_accuracy.png"]


class UsageError(Exception):
    pass


def say(msg):
    print("scale.py: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the sweep

def int_list(text, flag):
    try:
        values = [int(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} {text!r}: expected numbers of at least 1")
    return values


def take_flag(args, flag):
    """Removes `flag VALUE` / `flag=VALUE` from args (nn_dist's options); returns the last value or None."""
    value, rest, i = None, [], 0
    while i < len(args):
        if args[i] == flag and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif args[i].startswith(flag + "="):
            value, i = args[i][len(flag) + 1:], i + 1
        else:
            rest.append(args[i])
            i += 1
    args[:] = rest
    return value


def has_flag(args, flag):
    return any(a == flag or a.startswith(flag + "=") for a in args)


def slurm_cores():
    return int(os.environ.get("SLURM_NTASKS", "1")) * int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))


def local_cores():
    return len(os.sched_getaffinity(0))  # what nproc prints


def find_nn_dist(given):
    # The checkout's build, or the bin/ of the prefix this script is installed in (share/nn_dist/scripts).
    candidates = [given] if given else [os.environ.get("NN_DIST"), os.path.join(ROOT, "build", "nn_dist"),
                                        os.path.join(ROOT, "..", "..", "bin", "nn_dist"), shutil.which("nn_dist")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    if given:
        raise UsageError(f"--nn-dist {given}: not an executable file")
    raise UsageError("nn_dist not found: give --nn-dist PATH, set NN_DIST, build it (build/nn_dist) "
                     "or put it on PATH")


def launcher_command(launcher, ranks, cores, extra):
    """The command that starts `ranks` ranks."""
    if launcher == "srun":
        # --kill-on-bad-exit: a rank that fails ends the whole step, and PMIx fences on the ring
        # (Slurm 22.05's tree fence is node-local below TreeWidth nodes), as in cluster/train.sbatch.
        fence = [] if "SLURM_PMIX_FENCE" in os.environ else ["env", "SLURM_PMIX_FENCE=ring"]
        return fence + ["srun", "--mpi=pmix", "--cpu-bind=cores", "--kill-on-bad-exit=1", "-n", str(ranks)] + extra
    # The flags of nn_mpirun_flags in scripts/common.sh, plus one rank per core when they fit.
    cmd = ["mpirun", "-np", str(ranks), "--mca", "mpi_yield_when_idle", "1"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    cmd += ["--oversubscribe", "--bind-to", "none"] if ranks > cores else ["--bind-to", "core"]
    return cmd + extra


def plan_runs(modes, ranks_list, global_batches, batches_per_rank, repeats):
    """Every run, repeats outermost so that a slow spell of the machine spreads over all points."""
    runs = []
    for repeat in range(1, repeats + 1):
        for mode in modes:
            for batch in (global_batches if mode == "strong" else batches_per_rank):
                for ranks in ranks_list:
                    per_rank = batch // ranks if mode == "strong" else batch
                    runs.append(dict(mode=mode, ranks=ranks, global_batch=per_rank * ranks, batch_per_rank=per_rank,
                                     repeat=repeat))
    return runs


def parse_sweep_args(argv):
    if "--" in argv:
        cut = argv.index("--")
        own, passthrough = argv[:cut], argv[cut + 1:]
    else:
        own, passthrough = argv, []
    p = argparse.ArgumentParser(prog="scale.py", usage=__doc__.split("\n\n")[1], add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--mode", default="weak")
    p.add_argument("--ranks")
    p.add_argument("--global-batch")
    p.add_argument("--batch-per-rank")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--target-accuracy", type=float)
    p.add_argument("--out")
    p.add_argument("--launcher", default="auto", choices=["auto", "mpirun", "srun"])
    p.add_argument("--launcher-args", default="")
    p.add_argument("--nn-dist")
    p.add_argument("--run-timeout", type=float)
    p.add_argument("--no-plots", action="store_true")
    a = p.parse_args(own)
    if a.help:
        print(__doc__)
        sys.exit(0)
    a.nn_args = list(passthrough)
    return a


def validate(a):
    modes = [m for m in a.mode.split(",") if m]
    if not modes or any(m not in ("strong", "weak") for m in modes):
        raise UsageError(f"--mode {a.mode!r}: expected strong, weak or strong,weak")
    if a.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if a.target_accuracy is not None and not 0 < a.target_accuracy <= 1:
        raise UsageError("--target-accuracy is a fraction in (0, 1]")
    for flag, why in (("--metrics", "scale.py writes one per run"), ("--resume", "every run must start fresh"),
                      ("--threads", "run more ranks instead")):
        if has_flag(a.nn_args, flag):
            raise UsageError(f"{flag} after --: {why}")
    nn_batch = take_flag(a.nn_args, "--batch-size")
    nn_global = take_flag(a.nn_args, "--global-batch-size")
    if nn_batch and "weak" not in modes:
        raise UsageError("--batch-size after --: strong scaling sets each run's batch per rank "
                         "to --global-batch / ranks")
    if nn_global and "strong" not in modes:
        raise UsageError("--global-batch-size after --: weak scaling keeps the batch per rank (--batch-per-rank)")
    a.launcher = a.launcher if a.launcher != "auto" else ("srun" if os.environ.get("SLURM_JOB_ID") else "mpirun")
    a.cores = slurm_cores() if a.launcher == "srun" else local_cores()
    tasks = int(os.environ.get("SLURM_NTASKS", "0"))
    if a.ranks:
        a.ranks_list = int_list(a.ranks, "--ranks")
    else:  # 1, 2, 4, ... up to the cores here or the allocation's tasks
        top = tasks if a.launcher == "srun" else a.cores
        a.ranks_list = [1 << k for k in range(max(top, 1).bit_length())]
    if a.launcher == "srun" and tasks and max(a.ranks_list) > tasks:
        raise UsageError(f"--ranks {max(a.ranks_list)} is more than the allocation's {tasks} tasks")
    a.global_batches = []
    if "strong" in modes:
        if not (a.global_batch or nn_global):
            raise UsageError("--mode strong needs --global-batch G (the samples per step over all ranks)")
        a.global_batches = int_list(a.global_batch or nn_global, "--global-batch")
        for g in a.global_batches:
            bad = [r for r in a.ranks_list if g % r]
            if bad:
                raise UsageError(f"--global-batch {g} is not divisible by {', '.join(map(str, bad))} rank(s): "
                                 f"strong scaling keeps the global batch, so every rank count must divide it")
    a.batches_per_rank = int_list(a.batch_per_rank or nn_batch or str(DEFAULT_BATCH), "--batch-per-rank") \
        if "weak" in modes else []
    a.modes = modes
    a.nn_dist = find_nn_dist(a.nn_dist)
    if not a.out:
        a.out = "scale-" + (os.environ.get("SLURM_JOB_ID") or time.strftime("%Y%m%d-%H%M%S"))
    if os.path.exists(os.path.join(a.out, "runs.csv")):
        raise UsageError(f"{a.out}/runs.csv exists: pick another --out (or remove it)")
    return a


def fmt_duration(seconds):
    s = int(round(seconds))
    h, m = s // 3600, s // 60 % 60
    return f"{h}h{m:02d}m{s % 60:02d}s" if h else f"{m}m{s % 60:02d}s"


def fmt_left(seconds):
    if seconds < 60:
        return f"~{int(round(seconds))}s"
    if seconds < 3600:
        return f"~{int(round(seconds / 60))}m"
    return f"~{int(seconds // 3600)}h{int(round(seconds % 3600 / 60)):02d}m"


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


class Stop(Exception):
    pass


def run_one(cmd, log_path, timeout):
    """Runs cmd with its output in log_path; returns (exit code, seconds)."""
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        log.write("# " + shlex.join(cmd) + "\n")
        log.flush()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()  # mpirun and srun pass SIGTERM on to the ranks
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.write(f"\nscale.py: stopped after --run-timeout {timeout:g} s\n")
            code = 124
        except Stop:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            raise
    return code, time.monotonic() - t0


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def save_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def sweep(argv):
    a = validate(parse_sweep_args(argv))
    runs = plan_runs(a.modes, a.ranks_list, a.global_batches, a.batches_per_rank, a.repeats)
    os.makedirs(os.path.join(a.out, "runs"), exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "cpu": cpu_model(),
            "cores": a.cores, "launcher": a.launcher, "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "slurm_nodes": os.environ.get("SLURM_JOB_NUM_NODES", ""), "git": git_commit(), "nn_dist": a.nn_dist,
            "nn_dist_args": a.nn_args, "modes": a.modes, "ranks": a.ranks_list,
            "global_batches": a.global_batches, "batches_per_rank": a.batches_per_rank, "repeats": a.repeats,
            "target_accuracy": a.target_accuracy, "command": [sys.argv[0]] + argv,
            "loadavg_start": os.getloadavg()}
    save_json(os.path.join(a.out, "sweep.json"), meta)
    csv_path = os.path.join(a.out, "runs.csv")
    with open(csv_path, "w", newline="") as f:
        csv.DictWriter(f, FIELDS).writeheader()
    over = sorted({r["ranks"] for r in runs if a.launcher == "mpirun" and r["ranks"] > a.cores})
    say(f"{len(runs)} run(s) into {a.out}/ with {a.launcher}; {a.cores} cores, load average "
        f"{os.getloadavg()[0]:.2f}" +
        (f"; {', '.join(map(str, over))} rank(s) oversubscribed: their timings mean nothing" if over else ""))

    def on_term(signum, frame):
        raise Stop()
    signal.signal(signal.SIGTERM, on_term)
    extra = shlex.split(a.launcher_args)
    start, done_seconds, failed = time.monotonic(), [], []
    for k, run in enumerate(runs, 1):
        run["index"] = k
        elapsed = time.monotonic() - start
        left = fmt_left(statistics.mean(done_seconds) * (len(runs) - k + 1)) if done_seconds else "~?"
        say(f"[{k}/{len(runs)}] {run['mode']} ranks={run['ranks']} global_batch={run['global_batch']} "
            f"batch_per_rank={run['batch_per_rank']} repeat={run['repeat']}, "
            f"elapsed {fmt_duration(elapsed)}, {left} left")
        name = f"{k:03d}-{run['mode']}-r{run['ranks']}-g{run['global_batch']}-rep{run['repeat']}"
        log_rel = os.path.join("runs", name + ".log")
        metrics_path = os.path.join(a.out, "runs", name + ".metrics.csv")
        if os.path.exists(metrics_path):
            os.remove(metrics_path)
        nn = [a.nn_dist] + a.nn_args + ["--batch-size", str(run["batch_per_rank"]), "--metrics", metrics_path]
        if not has_flag(a.nn_args, "--profile"):
            nn.append("--profile")
        cmd = launcher_command(a.launcher, run["ranks"], a.cores, extra) + nn
        try:
            code, seconds = run_one(cmd, os.path.join(a.out, log_rel), a.run_timeout)
        except (Stop, KeyboardInterrupt) as e:
            say(f"interrupted during run {k}; {csv_path} holds the {k - 1} finished run(s) "
                f"(scale.py plot {a.out} draws them)")
            return 128 + (signal.SIGTERM if isinstance(e, Stop) else signal.SIGINT)
        done_seconds.append(seconds)
        bench = read_bench(os.path.join(a.out, log_rel))
        rows = run_rows(run, bench, read_metrics(metrics_path), seconds, code, a.cores, a.launcher, log_rel)
        with open(csv_path, "a", newline="") as f:
            csv.DictWriter(f, FIELDS).writerows(rows)
        if code != 0:
            failed.append(k)
            say(f"  run {k} FAILED with exit code {code}; output in {os.path.join(a.out, log_rel)}")
        elif bench:
            say(f"  {bench['samples_per_sec']:.0f} samples/s, step {bench['step_ms']:.4f} ms, {len(rows)} epoch(s), "
                f"{seconds:.1f} s")
        else:
            say(f"  no BENCH_JSON line (raise --max-steps above --warmup-steps?); output in "
                f"{os.path.join(a.out, log_rel)}")
    say(f"{len(runs)} run(s) in {fmt_duration(time.monotonic() - start)}; {csv_path}")
    meta["loadavg_end"] = os.getloadavg()
    save_json(os.path.join(a.out, "sweep.json"), meta)
    if not a.no_plots:
        plot_dir(a.out, a.target_accuracy)
    if failed:
        say(f"{len(failed)} run(s) failed: {', '.join(map(str, failed))} (exit_code and log in runs.csv)")
        return 1
    return 0


# ---------------------------------------------------------------- reading runs.csv back

def num(text):
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def load_runs(csv_path):
    """runs.csv as one dict per run, with its epochs as a list."""
    runs = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            r = runs.get(row["run"])
            if r is None:
                r = runs[row["run"]] = {
                    "mode": row["mode"], "ranks": int(row["ranks"]), "global_batch": int(row["global_batch"]),
                    "batch_per_rank": int(row["batch_per_rank"]), "repeat": int(row["repeat"]),
                    "exit_code": int(row["exit_code"]), "cores": int(row["cores"]),
                    "oversubscribed": row["oversubscribed"] == "1", "epochs": []}
                for col in ("profile_samples_per_sec", "step_ms", "data_ms", "compute_ms", "exposed_sum_ms",
                            "update_ms", "run_seconds"):
                    r[col] = num(row.get(col))
            if row.get("epoch"):
                r["epochs"].append({k: num(row.get(k)) for k in ("epoch", "wall_seconds", "train_loss", "val_loss",
                                                                 "train_accuracy", "val_accuracy",
                                                                 "samples_per_sec")})
    return list(runs.values())


def series_of(run):
    """The curve a run belongs to: strong runs by global batch, weak runs by batch per rank."""
    return (run["mode"], run["global_batch"] if run["mode"] == "strong" else run["batch_per_rank"])


def series_label(key):
    mode, batch = key
    return f"strong, global batch {batch}" if mode == "strong" else f"weak, {batch} per rank"


def throughput(run):
    if run["profile_samples_per_sec"]:
        return run["profile_samples_per_sec"]
    sps = [e["samples_per_sec"] for e in run["epochs"] if e["samples_per_sec"]]
    return statistics.median(sps) if sps else None


def accuracy_key(runs):
    return "val_accuracy" if any(e["val_accuracy"] is not None for r in runs for e in r["epochs"]) \
        else "train_accuracy"


def time_to_target(run, target, key):
    """(seconds of training until the first epoch at or above target, that epoch), or (None, None)."""
    for e in run["epochs"]:
        if e[key] is not None and e[key] >= target and e["wall_seconds"] is not None:
            return e["wall_seconds"], int(e["epoch"])
    return None, None


def med_range(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def summarize(runs, target):
    """One dict per (curve, rank count) with the medians (min, max) over its successful repeats."""
    acc_key = accuracy_key(runs)
    points = {}
    for r in runs:
        points.setdefault((series_of(r), r["ranks"]), []).append(r)
    base = {}  # curve -> (ranks, median throughput) of its smallest rank count with a result
    for (key, ranks), rs in sorted(points.items()):
        ok = [r for r in rs if r["exit_code"] == 0]
        m = med_range([throughput(r) for r in ok])[0]
        if m and key not in base:
            base[key] = (ranks, m)
    out = []
    for (key, ranks), rs in sorted(points.items()):
        ok = [r for r in rs if r["exit_code"] == 0]
        s = {"series": key, "mode": key[0], "ranks": ranks, "global_batch": rs[0]["global_batch"],
             "batch_per_rank": rs[0]["batch_per_rank"], "runs_ok": len(ok), "runs_failed": len(rs) - len(ok),
             "oversubscribed": any(r["oversubscribed"] for r in rs), "cores": rs[0]["cores"]}
        s["samples_per_sec"] = med_range([throughput(r) for r in ok])
        if key in base:
            p0, x0 = base[key]
            s["efficiency_base_ranks"] = p0
            s["efficiency"] = med_range([throughput(r) / (x0 * ranks / p0) if throughput(r) else None for r in ok])
        else:
            s["efficiency"] = (None, None, None)
        for col in ("step_ms", "data_ms", "compute_ms", "exposed_sum_ms", "update_ms"):
            s[col] = med_range([r[col] for r in ok])
        if target is not None:
            times = [time_to_target(r, target, acc_key) for r in ok]
            s["reached"] = sum(t is not None for t, _ in times)
            s["time_to_target"] = med_range([t for t, _ in times])
            s["epochs_to_target"] = med_range([e for _, e in times])
            s["total_wall"] = med_range([r["epochs"][-1]["wall_seconds"] if r["epochs"] else None for r in ok])
        out.append(s)
    return out, acc_key


def write_summary(path, summary, target):
    cols = ["mode", "global_batch", "batch_per_rank", "ranks", "runs_ok", "runs_failed", "oversubscribed",
            "samples_per_sec_median", "samples_per_sec_min", "samples_per_sec_max", "efficiency_median",
            "efficiency_min", "efficiency_max", "step_ms_median", "data_ms_median", "compute_ms_median",
            "exposed_sum_ms_median", "update_ms_median"]
    if target is not None:
        cols += ["target_accuracy", "reached", "time_to_target_median", "time_to_target_min", "time_to_target_max",
                 "epochs_to_target_median"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for s in summary:
            row = {k: s[k] for k in ("mode", "ranks", "runs_ok", "runs_failed")}
            row["global_batch"] = s["global_batch"] if s["mode"] == "strong" else ""
            row["batch_per_rank"] = s["batch_per_rank"] if s["mode"] == "weak" else ""
            row["oversubscribed"] = int(s["oversubscribed"])
            for name in ("samples_per_sec", "efficiency", "step_ms", "data_ms", "compute_ms", "exposed_sum_ms",
                         "update_ms", "time_to_target", "epochs_to_target"):
                if name not in s:
                    continue
                for part, v in zip(("median", "min", "max"), s[name]):
                    if name + "_" + part in cols:
                        row[name + "_" + part] = "" if v is None else f"{v:.6g}"
            if target is not None:
                row["target_accuracy"] = target
                row["reached"] = f"{s['reached']}/{s['runs_ok']}"
            w.writerow(row)


def print_summary(summary, target):
    head = f"{'curve':28s} {'ranks':>5s} {'samples/s median (min-max)':>30s} {'eff.':>6s} {'step ms':>9s}"
    if target is not None:
        head += f"  {'to ' + format(target, 'g'):>12s}"
    print(head)
    for s in summary:
        m, lo, hi = s["samples_per_sec"]
        line = f"{series_label(s['series']):28s} {s['ranks']:5d} "
        line += f"{m:12.0f} ({lo:.0f}-{hi:.0f})".rjust(30) if m else f"{'failed':>30s}"
        eff = s["efficiency"][0]
        line += f" {eff:6.2f}" if eff is not None else f" {'-':>6s}"
        step = s["step_ms"][0]
        line += f" {step:9.4f}" if step is not None else f" {'-':>9s}"
        if target is not None:
            t = s["time_to_target"][0]
            line += f"  {t:10.2f} s" if t is not None else f"  {'not reached':>12s}"
        if s["oversubscribed"]:
            line += "  (oversubscribed)"
        if s["runs_failed"]:
            line += f"  ({s['runs_failed']} failed)"
        print(line)


# ---------------------------------------------------------------- plots

def machine_note(summary):
    cores = max(s["cores"] for s in summary)
    over = sorted({s["ranks"] for s in summary if s["oversubscribed"]})
    if over:
        return (f"{cores} cores; {', '.join(map(str, over))} ranks > cores are oversubscribed: "
                f"timing not meaningful")
    return f"{cores} cores; no run oversubscribed"


def rank_axis(ax, ranks):
    """x axis of rank counts: log2 when they span 8x or more, ticks at the counts."""
    from matplotlib.ticker import FixedLocator, NullLocator
    if max(ranks) / min(ranks) >= 8:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ranks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(r) for r in ranks])
    ax.set_xlabel("MPI ranks")


def shade_oversubscribed(ax, summary, ranks):
    over = [r for r in ranks if any(s["ranks"] == r and s["oversubscribed"] for s in summary)]
    if not over:
        return
    fitting = [r for r in ranks if r not in over]
    left = (max(fitting) + min(over)) / 2 if fitting else min(over) * 0.9
    ax.axvspan(left, max(ranks) * 1.05, color="0.9", zorder=0)
    ax.text(left, 0.02, " ranks > cores:\n oversubscribed", transform=ax.get_xaxis_transform(), va="bottom",
            fontsize=8, color="0.35")


def error_bars(values):
    """Median, and the (below, above) distances to min and max, for errorbar()."""
    med = [v[0] for v in values]
    return med, [[m - v[1] for m, v in zip(med, values)], [v[2] - m for m, v in zip(med, values)]]


def draw_points(ax, xs, values, over, **style):
    """A median line with min-max bars; oversubscribed points hollow."""
    med, err = error_bars(values)
    line = ax.errorbar(xs, med, yerr=err, capsize=3, **style)
    color = line[0].get_color()
    for x, y, o in zip(xs, med, over):
        ax.plot([x], [y], marker=style.get("marker", "o"), color=color, markersize=7,
                markerfacecolor="white" if o else color, linestyle="none")
    return color


def by_series(summary, field):
    curves = {}
    for s in summary:
        if s[field][0] is not None:
            curves.setdefault(s["series"], []).append(s)
    return curves


MARKERS = "osD^v<>p"


def plot_throughput_vs_batch(plt, summary, note, path):
    """A global-batch sweep at one rank count: samples/s against the global batch."""
    from matplotlib.ticker import EngFormatter, FixedLocator, NullLocator
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    ranks = summary[0]["ranks"]
    batches = sorted({s["global_batch"] for s in summary})
    for i, mode in enumerate(sorted({s["mode"] for s in summary})):
        pts = sorted((s for s in summary if s["mode"] == mode and s["samples_per_sec"][0]),
                     key=lambda s: s["global_batch"])
        draw_points(ax, [p["global_batch"] for p in pts], [p["samples_per_sec"] for p in pts],
                    [p["oversubscribed"] for p in pts], marker=MARKERS[i % len(MARKERS)], label=mode)
    if max(batches) / min(batches) >= 4:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(batches))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel(f"global batch (samples per step over {ranks} rank{'s' if ranks > 1 else ''})")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(EngFormatter())
    ax.set_ylabel("training samples/s over all ranks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Throughput vs global batch at {ranks} rank{'s' if ranks > 1 else ''} (median, min-max bars)\n{note}",
                 fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(plt, summary, note, path):
    ranks = sorted({s["ranks"] for s in summary})
    if len(ranks) == 1:
        plot_throughput_vs_batch(plt, summary, note, path)
        return
    from matplotlib.ticker import EngFormatter
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    shade_oversubscribed(ax, summary, ranks)
    for i, (key, pts) in enumerate(sorted(by_series(summary, "samples_per_sec").items())):
        xs = [p["ranks"] for p in pts]
        color = draw_points(ax, xs, [p["samples_per_sec"] for p in pts], [p["oversubscribed"] for p in pts],
                            marker=MARKERS[i % len(MARKERS)], label=series_label(key))
        p0, x0 = xs[0], pts[0]["samples_per_sec"][0]
        ax.plot(xs, [x0 * x / p0 for x in xs], linestyle="--", color=color, alpha=0.6)
    ax.plot([], [], linestyle="--", color="0.5", label="ideal: linear from the fewest ranks (dashed, same colour)")
    rank_axis(ax, ranks)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(EngFormatter())
    ax.set_ylabel("training samples/s over all ranks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Throughput vs ranks (median, min-max bars)\n{note}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_efficiency(plt, summary, note, path):
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    ranks = sorted({s["ranks"] for s in summary})
    shade_oversubscribed(ax, summary, ranks)
    ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1, label="ideal")
    top = 1.0
    for i, (key, pts) in enumerate(sorted(by_series(summary, "efficiency").items())):
        draw_points(ax, [p["ranks"] for p in pts], [p["efficiency"] for p in pts],
                    [p["oversubscribed"] for p in pts], marker=MARKERS[i % len(MARKERS)], label=series_label(key))
        top = max([top] + [p["efficiency"][2] for p in pts])
    rank_axis(ax, ranks)
    ax.set_ylim(0, top * 1.1)
    ax.set_ylabel("parallel efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Parallel efficiency (median, min-max bars)\nstrong: T1/(p·Tp), weak: per-rank samples/s at p ranks "
                 f"/ samples/s at 1 rank\n{note}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


BREAKDOWN = [("data_ms", "data", "#8c8c8c"), ("compute_ms", "compute (forward + backward)", "#4c72b0"),
             ("exposed_sum_ms", "exposed gradient sum (incl. waiting)", "#dd8452"),
             ("update_ms", "update (optimizer)", "#55a868")]


def plot_breakdown(plt, summary, note, path):
    curves = sorted(by_series(summary, "step_ms").items())
    n = max(len(curves), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.6, 4.2 * rows + 0.8), constrained_layout=True,
                             squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.axis("off")
    for ax, (key, pts) in zip(axes.flat, curves):
        xs = list(range(len(pts)))
        bottom = [0.0] * len(pts)
        for col, label, color in BREAKDOWN:
            hs = [p[col][0] or 0.0 for p in pts]
            bars = ax.bar(xs, hs, bottom=bottom, color=color, label=label, width=0.6)
            for b, p in zip(bars, pts):
                if p["oversubscribed"]:
                    b.set_hatch("//")
                    b.set_edgecolor("white")
            bottom = [b + h for b, h in zip(bottom, hs)]
        med, err = error_bars([p["step_ms"] for p in pts])
        ax.errorbar(xs, med, yerr=err, fmt="none", ecolor="black", capsize=4, label="step, min-max")
        for x, m in zip(xs, med):
            ax.annotate(f"{m:.3g} ms", (x, m), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{p['ranks']}" + ("\n(oversub.)" if p["oversubscribed"] else "") for p in pts])
        ax.set_xlabel("MPI ranks" + (f"  ({pts[0]['batch_per_rank']}/rank)" if key[0] == "weak" else ""))
        ax.set_ylabel("ms per step (rank 0)")
        ax.set_ylim(0, max(med) * 1.2)
        ax.set_title(series_label(key), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[min(len(curves), cols) - 1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Time per step by phase (mean over steps after warm-up; median of repeats)\n" + note, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curves(runs):
    """(curve, ranks) -> [(epoch, median wall, median loss, min loss, max loss)] over successful repeats."""
    loss_key = "val_loss" if any(e["val_loss"] is not None for r in runs for e in r["epochs"]) else "train_loss"
    groups = {}
    for r in runs:
        if r["exit_code"] == 0:
            for e in r["epochs"]:
                groups.setdefault((series_of(r), r["ranks"]), {}).setdefault(int(e["epoch"]), []).append(e)
    curves = {}
    for key, epochs in groups.items():
        pts = []
        for ep, es in sorted(epochs.items()):
            loss = med_range([e[loss_key] for e in es])
            wall = med_range([e["wall_seconds"] for e in es])[0]
            if loss[0] is not None and wall is not None:
                pts.append((ep, wall) + loss)
        if pts:
            curves[key] = pts
    return curves, loss_key


def plot_loss(plt, runs, summary, note, path):
    curves, loss_key = loss_curves(runs)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    all_ranks = sorted({k[1] for k in curves})
    series = sorted({k[0] for k in curves})
    cmap = plt.get_cmap("tab10")
    styles = ["-", "--", ":", "-."]
    # Colours for whichever varies more (rank counts or curves), line styles for the other.
    by_ranks = len(all_ranks) >= len(series)
    losses = [v for pts in curves.values() for p in pts for v in p[2:]]
    over = {s["ranks"] for s in summary if s["oversubscribed"]}
    for (key, ranks), pts in sorted(curves.items()):
        ri, si = all_ranks.index(ranks), series.index(key)
        color = cmap((ri if by_ranks else si) % 10)
        style = styles[(si if by_ranks else ri) % len(styles)]
        label = f"{series_label(key)}, {ranks} rank{'s' if ranks > 1 else ''}"
        label += " (oversub.)" if ranks in over else ""
        for ax, xi in ((a1, 0), (a2, 1)):
            xs = [p[xi] for p in pts]
            ax.plot(xs, [p[2] for p in pts], linestyle=style, marker="o", markersize=4, color=color,
                    label=label if ax is a1 else None)
            if any(p[3] != p[4] for p in pts):
                ax.fill_between(xs, [p[3] for p in pts], [p[4] for p in pts], color=color, alpha=0.15)
    what = "validation loss" if loss_key == "val_loss" else "training loss (no validation set)"
    for ax in (a1, a2):
        ax.set_ylabel(what)
        if losses and min(losses) > 0 and max(losses) / min(losses) > 10:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    a1.set_xlabel("epoch")
    epochs = sorted({p[0] for pts in curves.values() for p in pts})
    if epochs and len(epochs) <= 20:
        a1.set_xticks(epochs)
    a2.set_xlabel("training time (s; sum of epoch times, without start-up and validation)")
    a2.set_xlim(left=0)
    a1.set_title("per epoch", fontsize=10)
    a2.set_title("per wall-clock second" + (" (oversubscribed runs: not meaningful)" if over else ""), fontsize=10)
    a1.legend(fontsize=7)
    fig.suptitle(f"{what[0].upper() + what[1:]} (median of repeats; band: min-max)\n{note}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_time_to_accuracy(plt, summary, target, acc_key, note, path):
    from matplotlib.patches import Patch
    series = sorted({s["series"] for s in summary})
    ranks = sorted({s["ranks"] for s in summary})
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(7.5, 1.2 * len(ranks) * len(series) + 2), 5), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    top = max([(s["time_to_target"][2] if s["time_to_target"][0] is not None else s["total_wall"][0]) or 0
               for s in summary] + [1e-9])
    for j, key in enumerate(series):
        color = cmap(j % 10)
        for s in summary:
            if s["series"] != key:
                continue
            x = ranks.index(s["ranks"]) - 0.4 + width * (j + 0.5)
            t = s["time_to_target"]
            if t[0] is not None:
                ax.bar(x, t[0], width=width * 0.9, color=color, hatch="//" if s["oversubscribed"] else None,
                       edgecolor="white" if s["oversubscribed"] else None)
                if t[1] != t[2]:
                    ax.errorbar([x], [t[0]], yerr=[[t[0] - t[1]], [t[2] - t[0]]], fmt="none", ecolor="black",
                                capsize=3)
                text = f"ep {s['epochs_to_target'][0]:g}"
                if s["reached"] < s["runs_ok"]:
                    text += f"\n{s['reached']}/{s['runs_ok']} reached"
                ax.annotate(text, (x, t[2]), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
            elif s["runs_ok"]:
                h = s["total_wall"][0] or 0
                ax.bar(x, h, width=width * 0.9, facecolor="none", edgecolor=color, hatch="xx", linewidth=1.2)
                ax.annotate("never\nreached", (x, h), textcoords="offset points", xytext=(0, 3), ha="center",
                            fontsize=7, color="firebrick")
            else:
                ax.annotate("failed", (x, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7,
                            color="firebrick")
    ax.set_xticks(range(len(ranks)))
    over = {s["ranks"] for s in summary if s["oversubscribed"]}
    ax.set_xticklabels([f"{r}" + ("\n(oversub.)" if r in over else "") for r in ranks])
    ax.set_xlabel("MPI ranks")
    what = "validation" if acc_key == "val_accuracy" else "training"
    ax.set_ylabel(f"training time to {what} accuracy ≥ {target:g} (s)")
    ax.set_ylim(0, top * 1.35)
    ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=cmap(j % 10), label=series_label(k)) for j, k in enumerate(series)]
    handles.append(Patch(facecolor="none", edgecolor="0.3", hatch="xx", label="never reached (bar: whole run)"))
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    fig.suptitle(f"Time to {what} accuracy {target:g}, at epoch ends (median of repeats; min-max bars; "
                 f"label: epochs)\n{note}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_dir(out, target=None):
    """summary.csv and the plots from out/runs.csv; returns the exit code."""
    csv_path = os.path.join(out, "runs.csv")
    if not os.path.isfile(csv_path):
        say(f"{csv_path}: no such file")
        return 2
    if target is None:
        try:
            with open(os.path.join(out, "sweep.json")) as f:
                target = json.load(f).get("target_accuracy")
        except (OSError, ValueError):
            pass
    runs = load_runs(csv_path)
    if not runs:
        say(f"{csv_path}: no runs")
        return 1
    summary, acc_key = summarize(runs, target)
    write_summary(os.path.join(out, "summary.csv"), summary, target)
    print_summary(summary, target)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        say(f"no plots ({e}); draw them on a machine with matplotlib: scripts/scale.py plot {out}")
        return 1
    note = machine_note(summary)
    skipped = {}  # plot -> why not
    if any(s["samples_per_sec"][0] for s in summary):
        plot_throughput(plt, summary, note, os.path.join(out, "throughput.png"))
        if len({s["ranks"] for s in summary}) > 1:
            plot_efficiency(plt, summary, note, os.path.join(out, "efficiency.png"))
        else:
            skipped["efficiency.png"] = "one rank count"
    else:
        skipped["throughput.png"] = skipped["efficiency.png"] = "no run succeeded"
    if any(s["step_ms"][0] is not None for s in summary):
        plot_breakdown(plt, summary, note, os.path.join(out, "breakdown.png"))
    else:
        skipped["breakdown.png"] = "no BENCH_JSON line in any run"
    if any(r["epochs"] and r["exit_code"] == 0 for r in runs):
        plot_loss(plt, runs, summary, note, os.path.join(out, "loss.png"))
    else:
        skipped["loss.png"] = "no successful run wrote an epoch"
    if target is None:
        skipped["time_to_accuracy.png"] = "no --target-accuracy"
    elif not any(e[acc_key] is not None for r in runs for e in r["epochs"]):
        skipped["time_to_accuracy.png"] = "no accuracy in the metrics (regression?)"
    else:
        plot_time_to_accuracy(plt, summary, target, acc_key, note, os.path.join(out, "time_to_accuracy.png"))
    drawn = [p for p in PLOTS if p not in skipped]
    say(f"plots in {out}/: {', '.join(drawn) or 'none'}" +
        "".join(f"; no {p} ({why})" for p, why in skipped.items()))
    return 0


def main(argv):
    try:
        if argv[:1] == ["plot"]:
            p = argparse.ArgumentParser(prog="scale.py plot", description="summary.csv and the plots from DIR/runs.csv")
            p.add_argument("dir")
            p.add_argument("--target-accuracy", type=float)
            a = p.parse_args(argv[1:])
            return plot_dir(a.dir, a.target_accuracy)
        return sweep(argv)
    except UsageError as e:
        say("error: " + str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
