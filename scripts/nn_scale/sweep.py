"""The sweep itself: every planned run launched in turn (mpirun or srun), its output kept, its rows
appended to runs.csv, progress on stderr; then the summary and the plots."""

import csv
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time

from nn_scale import say
from nn_scale.options import ROOT, has_flag, parse_sweep_args, validate
from nn_scale.report import plot_dir
from nn_scale.runs_csv import FIELDS, read_bench, read_metrics, run_rows


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


class Stop(Exception):
    """SIGTERM arrived (scancel, a time limit): the sweep ends after stopping the run under way."""


def stop(p):
    """Ends a run: SIGTERM, which mpirun and srun pass on to the ranks, then SIGKILL after 30 s."""
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


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
            stop(p)
            log.write(f"\nscale.py: stopped after --run-timeout {timeout:g} s\n")
            code = 124
        except Stop:
            stop(p)
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


def sweep_meta(a, argv):
    """sweep.json: the machine, the command and the plan (the load average again at the end)."""
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "cpu": cpu_model(),
            "cores": a.cores, "launcher": a.launcher, "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "slurm_nodes": os.environ.get("SLURM_JOB_NUM_NODES", ""), "git": git_commit(), "nn_dist": a.nn_dist,
            "nn_dist_args": a.nn_args, "modes": a.modes, "ranks": a.ranks_list,
            "global_batches": a.global_batches, "batches_per_rank": a.batches_per_rank, "repeats": a.repeats,
            "target_accuracy": a.target_accuracy, "command": [sys.argv[0]] + argv,
            "loadavg_start": os.getloadavg()}


def start_files(a, runs, meta):
    """sweep.json, runs.csv's header, and the sweep's first line; returns runs.csv."""
    save_json(os.path.join(a.out, "sweep.json"), meta)
    csv_path = os.path.join(a.out, "runs.csv")
    with open(csv_path, "w", newline="") as f:
        csv.DictWriter(f, FIELDS).writeheader()
    over = sorted({r["ranks"] for r in runs if a.launcher == "mpirun" and r["ranks"] > a.cores})
    say(f"{len(runs)} run(s) into {a.out}/ with {a.launcher}; {a.cores} cores, load average "
        f"{os.getloadavg()[0]:.2f}" +
        (f"; {', '.join(map(str, over))} rank(s) oversubscribed: their timings mean nothing" if over else ""))
    return csv_path


def say_progress(k, runs, start, done_seconds):
    """The line before run k: its point, the time so far and an estimate of the time left."""
    run = runs[k - 1]
    elapsed = time.monotonic() - start
    left = fmt_left(statistics.mean(done_seconds) * (len(runs) - k + 1)) if done_seconds else "~?"
    say(f"[{k}/{len(runs)}] {run['mode']} ranks={run['ranks']} global_batch={run['global_batch']} "
        f"batch_per_rank={run['batch_per_rank']} repeat={run['repeat']}, "
        f"elapsed {fmt_duration(elapsed)}, {left} left")


def launch(a, run, extra):
    """One run, its output in runs/NNN-*.log; returns (exit code, seconds, the log relative to --out,
    the metrics file). Raises Stop or KeyboardInterrupt when the sweep is interrupted."""
    k = run["index"]
    name = f"{k:03d}-{run['mode']}-r{run['ranks']}-g{run['global_batch']}-rep{run['repeat']}"
    log_rel = os.path.join("runs", name + ".log")
    metrics_path = os.path.join(a.out, "runs", name + ".metrics.csv")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    # Strong runs name the global batch itself, so that nn_dist checks it (--reproducible: whole blocks per rank).
    batch = ["--global-batch-size", str(run["global_batch"])] if run["mode"] == "strong" else \
        ["--batch-size", str(run["batch_per_rank"])]
    nn = [a.nn_dist] + a.nn_args + batch + ["--metrics", metrics_path]
    if not has_flag(a.nn_args, "--profile"):
        nn.append("--profile")
    cmd = launcher_command(a.launcher, run["ranks"], a.cores, extra) + nn
    code, seconds = run_one(cmd, os.path.join(a.out, log_rel), a.run_timeout)
    return code, seconds, log_rel, metrics_path


def record(a, run, csv_path, code, seconds, log_rel, metrics_path):
    """Appends one run's rows to runs.csv and says how it went; returns whether it succeeded."""
    k = run["index"]
    bench = read_bench(os.path.join(a.out, log_rel))
    rows = run_rows(run, bench, read_metrics(metrics_path), seconds, code, a.cores, a.launcher, log_rel)
    with open(csv_path, "a", newline="") as f:
        csv.DictWriter(f, FIELDS).writerows(rows)
    if code != 0:
        say(f"  run {k} FAILED with exit code {code}; output in {os.path.join(a.out, log_rel)}")
    elif bench:
        say(f"  {bench['samples_per_sec']:.0f} samples/s, step {bench['step_ms']:.4f} ms, {len(rows)} epoch(s), "
            f"{seconds:.1f} s")
    else:
        say(f"  no BENCH_JSON line (raise --max-steps above --warmup-steps?); output in "
            f"{os.path.join(a.out, log_rel)}")
    return code == 0


def on_term(signum, frame):
    raise Stop()


def sweep(argv, doc):
    """Runs the sweep of scale.py's command line argv (doc: its usage); returns the exit code."""
    a = validate(parse_sweep_args(argv, doc))
    runs = plan_runs(a.modes, a.ranks_list, a.global_batches, a.batches_per_rank, a.repeats)
    os.makedirs(os.path.join(a.out, "runs"), exist_ok=True)
    meta = sweep_meta(a, argv)
    csv_path = start_files(a, runs, meta)
    signal.signal(signal.SIGTERM, on_term)
    extra = shlex.split(a.launcher_args)
    start, done_seconds, failed = time.monotonic(), [], []
    for k, run in enumerate(runs, 1):
        run["index"] = k
        say_progress(k, runs, start, done_seconds)
        try:
            code, seconds, log_rel, metrics_path = launch(a, run, extra)
        except (Stop, KeyboardInterrupt) as e:
            say(f"interrupted during run {k}; {csv_path} holds the {k - 1} finished run(s) "
                f"(scale.py plot {a.out} draws them)")
            return 128 + (signal.SIGTERM if isinstance(e, Stop) else signal.SIGINT)
        done_seconds.append(seconds)
        if not record(a, run, csv_path, code, seconds, log_rel, metrics_path):
            failed.append(k)
    say(f"{len(runs)} run(s) in {fmt_duration(time.monotonic() - start)}; {csv_path}")
    meta["loadavg_end"] = os.getloadavg()
    save_json(os.path.join(a.out, "sweep.json"), meta)
    if not a.no_plots:
        plot_dir(a.out, a.target_accuracy)
    if failed:
        say(f"{len(failed)} run(s) failed: {', '.join(map(str, failed))} (exit_code and log in runs.csv)")
        return 1
    return 0
