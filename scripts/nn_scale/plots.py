"""The sweep's plots (matplotlib, passed in as plt so that scale.py runs without it): throughput,
parallel efficiency, the step's breakdown by phase, loss curves and time to a target accuracy."""

import os

from nn_scale.summary import loss_curves, series_label

PLOTS = ["throughput.png", "efficiency.png", "breakdown.png", "loss.png", "time_to_accuracy.png"]


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


def final_values(finals, loss_key):
    """(curve, ranks) -> its runs' final loss_key as nn_dist wrote it (distinct values joined by ' / ')."""
    values = {}
    for c in finals:
        for r in c["runs"]:
            values.setdefault((c["series"], r["ranks"]), {})[r["final"][loss_key]] = None
    return {k: " / ".join(v) for k, v in values.items()}


def plot_loss(plt, runs, summary, finals, note, path):
    curves, loss_key = loss_curves(runs)
    # Curves that coincide (the same final loss at every rank count) are drawn ever thinner with ever smaller
    # hollow markers as the ranks grow, so that each one stays visible under the next.
    same = {c["series"] for c in finals if c["identical"]}
    final = final_values(finals, loss_key)
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
        label += f": final {loss_key} {final[key, ranks]}" if final.get((key, ranks)) else ""
        plain = dict(marker="o", markersize=4)
        marks = plain  # per epoch
        if key in same:
            above = len([r for k, r in curves if k == key and r > ranks])  # curves drawn over this one
            marks = dict(marker="o", markersize=4 + 3 * above, markerfacecolor="none", linewidth=1.5 + 1.5 * above)
        for ax, xi, m in ((a1, 0, marks), (a2, 1, plain)):
            xs = [p[xi] for p in pts]
            ax.plot(xs, [p[2] for p in pts], linestyle=style, color=color, label=label if ax is a1 else None, **m)
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
    overlap = (f"\n{'; '.join(series_label(k) for k in sorted(same))}: final loss identical at every rank count, "
               f"fewer ranks drawn wider, so that curves that overlap stay visible" if same else "")
    fig.suptitle(f"{what[0].upper() + what[1:]} (median of repeats; band: min-max)\n{note}{overlap}", fontsize=10)
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


def draw_plots(plt, out, runs, summary, finals, target, acc_key):
    """Every plot the runs allow, into out/; returns (the files drawn, {file: why not} for the others)."""
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
        plot_loss(plt, runs, summary, finals, note, os.path.join(out, "loss.png"))
    else:
        skipped["loss.png"] = "no successful run wrote an epoch"
    if target is None:
        skipped["time_to_accuracy.png"] = "no --target-accuracy"
    elif not any(e[acc_key] is not None for r in runs for e in r["epochs"]):
        skipped["time_to_accuracy.png"] = "no accuracy in the metrics (regression?)"
    else:
        plot_time_to_accuracy(plt, summary, target, acc_key, note, os.path.join(out, "time_to_accuracy.png"))
    return [p for p in PLOTS if p not in skipped], skipped
