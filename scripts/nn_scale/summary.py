"""The sweep summarised: one row per curve (strong: a global batch; weak: a batch per rank) and rank
count, with the medians and min-max over its successful repeats; written as summary.csv and printed."""

import csv
import statistics


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
