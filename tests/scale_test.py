#!/usr/bin/python3
"""scripts/scale.py end to end, on tiny data (a few seconds):
  - a strong and weak sweep at 1, 2 and 3 ranks (3 oversubscribed on 2 cores),
    2 repeats, 2 epochs: one runs.csv row per run and epoch with the batch
    arithmetic of each mode, cumulative training time, the step breakdown
    adding up, oversubscription marked; the progress lines; summary.csv's
    parallel efficiency and time to target recomputed here from runs.csv;
    every plot a PNG that decodes;
  - final losses: every run's last train_loss and val_loss in final_loss.csv
    and the printed summary exactly as in its metrics file; the plain strong
    curve's verdict says they differ across 1, 2, 3 ranks, a --reproducible
    strong sweep's (--global-batch-size passed per run) that they are identical;
  - `scale.py plot DIR` re-draws from runs.csv (an unreachable target: marked
    never reached); a global-batch sweep at one rank count;
  - failures: a run that fails (more ranks than samples) is recorded with exit
    code 2 and its log, the next run still happens, scale.py exits 1; an
    unknown nn_dist flag likewise; flags scale.py refuses exit 2 before any run
    (a --reproducible global batch that is not a multiple of --block-size x
    ranks, in one line).
Usage: scale_test.py NN_DIST NN_DATAGEN
"""
import csv
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish, must_run, run_with_deadline, work_dir  # noqa: E402

NN_DIST, NN_DATAGEN = sys.argv[1:3]
SCALE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "scale.py")
COLUMNS = ["run", "mode", "ranks", "global_batch", "batch_per_rank", "repeat", "epoch", "wall_seconds",
           "epoch_seconds", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "samples_per_sec",
           "profile_samples_per_sec", "step_ms", "data_ms", "compute_ms", "exposed_sum_ms", "update_ms",
           "forward_ms", "backward_ms", "sync_test_ms", "sync_wait_ms", "allreduce", "run_seconds", "exit_code",
           "cores", "oversubscribed", "launcher", "log"]
PLOTS = ["throughput.png", "efficiency.png", "breakdown.png", "loss.png", "time_to_accuracy.png"]


def scale(*args):
    p = run_with_deadline(["/usr/bin/python3", SCALE, "--nn-dist", NN_DIST] + list(args))
    return p.returncode, p.stdout, p.stderr


def rows_of(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def close(a, b, tol):
    return abs(float(a) - float(b)) <= tol


work = work_dir(keep_on_failure=True)
os.chdir(work)
must_run([NN_DATAGEN, "--kind", "spirals", "--samples", "1200", "--val-samples", "400", "--out", "d.h5", "--val-out",
          "v.h5"])
must_run([NN_DATAGEN, "--kind", "spirals", "--samples", "2", "--out", "two.h5"])
cores = len(os.sched_getaffinity(0))
train = ["--data", "d.h5", "--val", "v.h5", "--hidden", "16", "--epochs", "2", "--lr", "0.2", "--warmup-steps", "2"]

# ---- a strong and weak sweep
code, out, err = scale("--mode", "strong,weak", "--ranks", "1,2,3", "--global-batch", "24", "--batch-per-rank", "8",
                       "--repeats", "2", "--target-accuracy", "0.01", "--out", "sweep", "--", *train)
check("sweep: exit 0", code == 0, err[-2000:])
fields, rows = rows_of("sweep/runs.csv")
check("runs.csv: the columns", fields == COLUMNS, str(fields))
check("runs.csv: 12 runs x 2 epochs", len(rows) == 24, str(len(rows)))
check("runs.csv: every run exit code 0", all(r["exit_code"] == "0" for r in rows))
runs = {}
for r in rows:
    runs.setdefault(r["run"], []).append(r)
check("runs.csv: epochs 1 and 2 of each run", all([e["epoch"] for e in rs] == ["1", "2"] for rs in runs.values()))
points = sorted((rs[0]["mode"], int(rs[0]["ranks"]), int(rs[0]["repeat"])) for rs in runs.values())
check("runs.csv: each mode x ranks x repeat once",
      points == sorted((m, p, i) for m in ("strong", "weak") for p in (1, 2, 3) for i in (1, 2)), str(points))
check("strong: global batch 24 = ranks x batch per rank",
      all(r["global_batch"] == "24" and int(r["batch_per_rank"]) * int(r["ranks"]) == 24
          for r in rows if r["mode"] == "strong"))
check("weak: 8 per rank, global = 8 x ranks",
      all(r["batch_per_rank"] == "8" and int(r["global_batch"]) == 8 * int(r["ranks"])
          for r in rows if r["mode"] == "weak"))
check("wall_seconds: cumulative epoch_seconds",
      all(close(rs[0]["wall_seconds"], rs[0]["epoch_seconds"], 1e-4) and
          close(rs[1]["wall_seconds"], float(rs[0]["epoch_seconds"]) + float(rs[1]["epoch_seconds"]), 2e-4)
          for rs in runs.values()))
check("compute = forward + backward, exposed sum = sync test + wait",
      all(close(r["compute_ms"], float(r["forward_ms"]) + float(r["backward_ms"]), 2e-4) and
          close(r["exposed_sum_ms"], float(r["sync_test_ms"]) + float(r["sync_wait_ms"]), 2e-4) for r in rows))
check("step = data + compute + exposed sum + update (4-decimal rounding)",
      all(close(r["step_ms"], sum(float(r[c]) for c in ("data_ms", "compute_ms", "exposed_sum_ms", "update_ms")),
                6e-4) for r in rows), str([(r["step_ms"], r["data_ms"], r["compute_ms"]) for r in rows[:2]]))
check("profile samples/s and val accuracy present", all(float(r["profile_samples_per_sec"]) > 0 and r["val_accuracy"]
                                                        for r in rows))
check("cores and oversubscribed (ranks > cores)",
      all(r["cores"] == str(cores) and r["oversubscribed"] == str(int(int(r["ranks"]) > cores)) for r in rows))
check("every run's log and metrics file", all(os.path.isfile(os.path.join("sweep", r["log"])) and
                                              os.path.isfile(os.path.join("sweep", r["log"][:-4] + ".metrics.csv"))
                                              for r in rows))
# The last run's line: any elapsed time (how fast the machine is is not under test) and an estimate of what is left.
check("progress before each run", all(f"[{k}/12] " in err for k in range(1, 13)) and
      "[1/12] strong ranks=1 global_batch=24 batch_per_rank=24 repeat=1, elapsed 0m00s, ~? left" in err and
      re.search(r"\[12/12\] weak ranks=3 global_batch=24 batch_per_rank=8 repeat=2, elapsed (\d+h)?\d\d?m\d\ds, "
                r"~\d+(s|m|h\d\dm) left", err) is not None, err[:1500])

# summary.csv against runs.csv: median throughput, efficiency X_p / (p X_1), time to the target
_, summary = rows_of("sweep/summary.csv")
check("summary.csv: a row per mode and rank count", len(summary) == 6, str(len(summary)))
per_run = {(rs[0]["mode"], int(rs[0]["ranks"]), rs[0]["repeat"]): rs for rs in runs.values()}
for s in summary:
    mode, p = s["mode"], int(s["ranks"])
    x = statistics.median(float(per_run[(mode, p, i)][0]["profile_samples_per_sec"]) for i in "12")
    x1 = statistics.median(float(per_run[(mode, 1, i)][0]["profile_samples_per_sec"]) for i in "12")
    effs = [float(per_run[(mode, p, i)][0]["profile_samples_per_sec"]) / (p * x1) for i in "12"]
    check(f"summary {mode} {p}: samples/s median and efficiency",
          close(s["samples_per_sec_median"], x, 1e-5 * x) and close(s["efficiency_median"], statistics.median(effs),
                                                                    1e-4), f"{s} x={x} effs={effs}")
    t = statistics.median(float(per_run[(mode, p, i)][0]["wall_seconds"]) for i in "12")
    check(f"summary {mode} {p}: target 0.01 reached at epoch 1", s["reached"] == "2/2" and
          close(s["time_to_target_median"], t, 1e-6 + 1e-5 * t) and s["epochs_to_target_median"] == "1", str(s))


def last_metrics(sweep_dir, log):
    """The last epoch row of a run's metrics file, as strings: what nn_dist wrote."""
    _, rows = rows_of(os.path.join(sweep_dir, log[:-4] + ".metrics.csv"))
    return rows[-1]


def final_losses_as_written(sweep_dir, runs_rows):
    """final_loss.csv's rows, checked against every run's metrics file and the printed table; returns them."""
    _, finals = rows_of(os.path.join(sweep_dir, "final_loss.csv"))
    by_run = {rs[0]["run"]: rs[0] for rs in runs_rows.values()}
    check(f"{sweep_dir}/final_loss.csv: a row per run", sorted(f["run"] for f in finals) == sorted(by_run),
          str(finals))
    for f in finals:
        m = last_metrics(sweep_dir, by_run[f["run"]]["log"])
        check(f"{sweep_dir}/final_loss.csv run {f['run']}: the metrics file's last epoch, train_loss and val_loss "
              f"as written", (f["epoch"], f["train_loss"], f["val_loss"]) == (m["epoch"], m["train_loss"], m["val_loss"])
              and f["ranks"] == by_run[f["run"]]["ranks"], f"{f} vs {m}")
    return finals


def table_lists(out, f):
    """Whether the printed table has run f's line: curve, ranks, repeat, epoch, train_loss, val_loss."""
    return re.search(rf"^(strong|weak), [^\n]* {f['ranks']} +{f['repeat']} +{f['epoch']} +{re.escape(f['train_loss'])} "
                     rf"+{re.escape(f['val_loss'])}$", out, re.M) is not None


# The plain strong curve: each rank count splits the data and shuffles differently, so its final losses differ,
# and the summary must not call them identical.
finals = final_losses_as_written("sweep", runs)
check("plain sweep: every run's final losses in the printed table", all(table_lists(out, f) for f in finals), out)
strong_line = [line for line in out.splitlines() if line.startswith("final loss, strong, global batch 24: ")]
check("plain sweep: the strong curve's final loss differs across 1, 2, 3 ranks",
      len(strong_line) == 1 and strong_line[0].startswith("final loss, strong, global batch 24: differs across 1, 2, "
                                                          "3 ranks: train_loss ") and "identical" not in out and
      all(f["identical_in_curve"] == "0" for f in finals), out)


def png_ok(path):
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
        image = matplotlib.image.imread(path)
        return os.path.getsize(path) > 0 and image.shape[0] > 200 and image.shape[1] > 300
    except (OSError, ValueError, SyntaxError):
        return False


for name in PLOTS:
    check(f"plot {name}: a PNG that decodes", png_ok(os.path.join("sweep", name)))

# ---- --reproducible: the global batch passed per run, the same final losses at every rank count
code, out, err = scale("--mode", "strong", "--ranks", "1,2,3", "--global-batch", "24", "--out", "repro", "--", *train,
                       "--reproducible", "--block-size", "4")
check("reproducible sweep: exit 0", code == 0, err[-2000:])
_, rows = rows_of("repro/runs.csv")
runs_repro = {}
for r in rows:
    runs_repro.setdefault(r["run"], []).append(r)
check("reproducible sweep: 3 runs x 2 epochs at 1, 2, 3 ranks", len(rows) == 6 and
      sorted(rs[0]["ranks"] for rs in runs_repro.values()) == ["1", "2", "3"], str(rows))
check("reproducible sweep: each run got --global-batch-size 24, --reproducible and --block-size 4",
      all(re.search(r"--reproducible --block-size 4 .*--global-batch-size 24 ",
                    open(os.path.join("repro", rs[0]["log"])).readline()) for rs in runs_repro.values()))
finals = final_losses_as_written("repro", runs_repro)
check("reproducible sweep: every run's final losses in the printed table", all(table_lists(out, f) for f in finals),
      out)
f = finals[0] if finals else {}
check("reproducible sweep: final loss identical at 1, 2, 3 ranks, with its values",
      len({(g["train_loss"], g["val_loss"]) for g in finals}) == 1 and f.get("val_loss") and
      f"final loss, strong, global batch 24: identical at 1, 2, 3 ranks (train_loss {f['train_loss']}, "
      f"val_loss {f['val_loss']}; epoch 2)" in out and all(g["identical_in_curve"] == "1" for g in finals), out)
check("reproducible sweep: loss.png", png_ok("repro/loss.png"))

# ---- re-drawn from runs.csv
before = open("sweep/time_to_accuracy.png", "rb").read()
os.remove("sweep/loss.png")
p = run_with_deadline(["/usr/bin/python3", SCALE, "plot", "sweep", "--target-accuracy", "0.9999"])
check("plot DIR: exit 0", p.returncode == 0, p.stderr[-1000:])
check("plot DIR: loss.png drawn again", png_ok("sweep/loss.png"))
check("plot DIR: time_to_accuracy.png drawn again for the new target",
      open("sweep/time_to_accuracy.png", "rb").read() != before and png_ok("sweep/time_to_accuracy.png"))
_, summary = rows_of("sweep/summary.csv")
check("plot DIR: unreachable target: 0/2 reached everywhere", all(s["reached"] == "0/2" for s in summary))
check("plot DIR: the table says not reached", p.stdout.count("not reached") == 6, p.stdout)

# ---- a global-batch sweep at one rank count: throughput against the global batch, no efficiency
code, out, err = scale("--mode", "strong", "--ranks", "2", "--global-batch", "8,16", "--out", "batches", "--",
                       *train)
_, rows = rows_of("batches/runs.csv")
check("global-batch sweep: 2 runs x 2 epochs at 2 ranks", code == 0 and len(rows) == 4 and
      sorted({(r["global_batch"], r["batch_per_rank"]) for r in rows}) == [("16", "8"), ("8", "4")], err[-1000:])
check("global-batch sweep: throughput.png, and no efficiency.png (one rank count)",
      png_ok("batches/throughput.png") and not os.path.exists("batches/efficiency.png") and
      "no efficiency.png (one rank count)" in err, err[-600:])

# ---- a run that fails, and the next one still runs
code, out, err = scale("--ranks", "3,1", "--out", "fail", "--", "--data", "two.h5", "--epochs", "1")
check("failing run: scale.py exits 1", code == 1, err[-1000:])
_, rows = rows_of("fail/runs.csv")
first = [r for r in rows if r["run"] == "1"]
second = [r for r in rows if r["run"] == "2"]
check("failing run: recorded with exit code 2 and no epoch",
      len(first) == 1 and first[0]["exit_code"] == "2" and first[0]["epoch"] == "", str(first))
log = os.path.join("fail", first[0]["log"]) if first else ""
check("failing run: its log holds nn_dist's error", os.path.isfile(log) and
      "cannot be split over 3 ranks" in open(log).read())
check("failing run: the next run ran", len(second) == 1 and second[0]["exit_code"] == "0" and second[0]["epoch"] == "1",
      str(second))
check("failing run: named on stderr", "run 1 FAILED with exit code 2" in err, err[-1000:])

code, out, err = scale("--ranks", "1", "--out", "badflag", "--", "--data", "d.h5", "--no-such-flag")
_, rows = rows_of("badflag/runs.csv")
check("unknown nn_dist flag: exit 1, exit code 2 recorded",
      code == 1 and len(rows) == 1 and rows[0]["exit_code"] == "2", err[-800:])

# ---- refused before any run
for args, words in ((["--mode", "strong", "--ranks", "1,2,3", "--global-batch", "32"], "not divisible by 3"),
                    (["--mode", "strong", "--ranks", "1"], "needs --global-batch"),
                    (["--ranks", "1", "--", "--data", "d.h5", "--metrics", "m.csv"], "--metrics after --"),
                    (["--mode", "strong", "--ranks", "1,2,4", "--global-batch", "24", "--", "--data", "d.h5",
                      "--reproducible", "--block-size", "4"],
                     "--global-batch 24 with --reproducible: not a multiple of --block-size 4 x ranks (4 x 4 = 16)"),
                    (["--ranks", "1", "--batch-per-rank", "8,64", "--", "--data", "d.h5", "--reproducible"],
                     "--batch-per-rank 8 with --reproducible: not a multiple of --block-size 32")):
    code, out, err = scale(*args, "--out", "refused")
    check(f"refused: {words}", code == 2 and words in err and err.count("\n") == 1 and
          not os.path.exists("refused/runs.csv"), err)

finish()
