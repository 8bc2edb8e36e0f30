"""The sweep's final losses: each run's last train_loss and val_loss exactly as nn_dist wrote them in its
metrics file (strings, never re-rounded), and per curve whether they are the same at every rank count, as
--reproducible promises for a strong curve; printed, written as final_loss.csv and named on loss.png."""

import csv

from nn_scale.summary import series_label, series_of

LOSSES = ("train_loss", "val_loss")


def final_losses(runs):
    """One dict per curve: "runs", its successful runs that finished an epoch (by ranks, then repeat);
    "identical", whether their final epoch and losses are the same strings (None with fewer than two runs);
    "unfinished", how many of its runs failed or wrote no epoch (not compared)."""
    curves = {}
    for r in runs:
        c = curves.setdefault(series_of(r), {"series": series_of(r), "runs": [], "unfinished": 0})
        if r["exit_code"] == 0 and r["final"]:
            c["runs"].append(r)
        else:
            c["unfinished"] += 1
    for c in curves.values():
        c["runs"].sort(key=lambda r: (r["ranks"], r["repeat"]))
        finals = {tuple(r["final"][k] for k in ("epoch",) + LOSSES) for r in c["runs"]}
        c["identical"] = len(finals) == 1 if len(c["runs"]) > 1 else None
    return [curves[k] for k in sorted(curves)]


def ranks_text(ranks):
    """'1 rank', '1, 2, 3 ranks': the distinct counts, in order."""
    ranks = sorted(set(ranks))
    return ", ".join(map(str, ranks)) + (" rank" if ranks == [1] else " ranks")


def by_value(runs, key):
    """'0.5 at 1 rank, 0.51 at 2, 3 ranks': the final values of key, each with the rank counts that wrote it."""
    groups = {}
    for r in runs:
        groups.setdefault(r["final"][key], []).append(r["ranks"])
    return ", ".join(f"{v} at {ranks_text(rs)}" for v, rs in sorted(groups.items(), key=lambda g: min(g[1])))


def verdict(curve):
    """The one line on whether the curve's final losses are the same at every rank count."""
    rs, head = curve["runs"], f"final loss, {series_label(curve['series'])}: "
    tail = f" ({curve['unfinished']} run(s) failed or wrote no epoch: not compared)" if curve["unfinished"] else ""
    keys = [k for k in LOSSES if any(r["final"][k] for r in rs)]
    if not rs:
        return head + "no run finished an epoch" + tail
    if curve["identical"] is None:
        return head + f"one run ({ranks_text([rs[0]['ranks']])}), nothing to compare" + tail
    if curve["identical"]:
        f = rs[0]["final"]
        return (head + f"identical at {ranks_text(r['ranks'] for r in rs)} (" +
                ", ".join(f"{k} {f[k]}" for k in keys) + f"; epoch {f['epoch']})" + tail)
    differing = [k for k in ["epoch"] + keys if len({r["final"][k] for r in rs}) > 1]
    return (head + f"differs across {ranks_text(r['ranks'] for r in rs)}: " +
            "; ".join(f"{k} {by_value(rs, k)}" for k in differing) + tail)


def print_final_losses(curves):
    print("\nfinal loss of each run (its last epoch, as nn_dist wrote it):")
    print(f"{'curve':28s} {'ranks':>5s} {'repeat':>6s} {'epoch':>5s} {'train_loss':>14s} {'val_loss':>14s}")
    for c in curves:
        for r in c["runs"]:
            f = r["final"]
            print(f"{series_label(c['series']):28s} {r['ranks']:5d} {r['repeat']:6d} {f['epoch']:>5s} "
                  f"{f['train_loss'] or '-':>14s} {f['val_loss'] or '-':>14s}")
    for c in curves:
        print(verdict(c))


def write_final_losses(path, curves):
    """final_loss.csv: one row per compared run; identical_in_curve 1/0 (empty: the curve has one run)."""
    cols = ["mode", "global_batch", "batch_per_rank", "ranks", "repeat", "run", "epoch", "train_loss", "val_loss",
            "identical_in_curve"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for c in curves:
            same = "" if c["identical"] is None else int(c["identical"])
            for r in c["runs"]:
                row = {k: r[k] for k in ("mode", "global_batch", "batch_per_rank", "ranks", "repeat", "run")}
                row.update(r["final"], identical_in_curve=same)
                w.writerow(row)
