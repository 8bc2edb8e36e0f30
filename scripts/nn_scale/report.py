"""summary.csv, final_loss.csv, the printed summary and the plots from a sweep's folder (scale.py plot DIR,
and the end of every sweep)."""

import json
import os

from nn_scale import say
from nn_scale.final_loss import final_losses, print_final_losses, write_final_losses
from nn_scale.plots import draw_plots
from nn_scale.runs_csv import load_runs
from nn_scale.summary import print_summary, summarize, write_summary


def saved_target(out):
    """The sweep's --target-accuracy from out/sweep.json, or None."""
    try:
        with open(os.path.join(out, "sweep.json")) as f:
            return json.load(f).get("target_accuracy")
    except (OSError, ValueError):
        return None


def plot_dir(out, target=None):
    """summary.csv, final_loss.csv and the plots from out/runs.csv; returns the exit code."""
    csv_path = os.path.join(out, "runs.csv")
    if not os.path.isfile(csv_path):
        say(f"{csv_path}: no such file")
        return 2
    if target is None:
        target = saved_target(out)
    runs = load_runs(csv_path)
    if not runs:
        say(f"{csv_path}: no runs")
        return 1
    summary, acc_key = summarize(runs, target)
    write_summary(os.path.join(out, "summary.csv"), summary, target)
    print_summary(summary, target)
    finals = final_losses(runs)
    write_final_losses(os.path.join(out, "final_loss.csv"), finals)
    print_final_losses(finals)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        say(f"no plots ({e}); draw them on a machine with matplotlib: scripts/scale.py plot {out}")
        return 1
    drawn, skipped = draw_plots(plt, out, runs, summary, finals, target, acc_key)
    say(f"plots in {out}/: {', '.join(drawn) or 'none'}" +
        "".join(f"; no {p} ({why})" for p, why in skipped.items()))
    return 0
