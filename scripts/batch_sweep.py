#!/usr/bin/python3
"""Where does a larger global batch stop paying off? The same training at
global batches 32 ... 4096 (2 ranks, strong-scaling sweeps through
scripts/scale.py), for several learning-rate recipes, on generated data; then
one figure: validation loss against epoch for each batch and recipe, and the
final loss and time to a target loss against the global batch.

  scripts/batch_sweep.py [--out DIR] [--ranks 2] [--batches 32,64,...,4096] [--epochs 12]
                         [--lr 0.05] [--reference-batch 32] [--target-loss L] [--data FILE]
  scripts/batch_sweep.py plot DIR [--target-loss L]

Recipes (every one SGD with momentum 0.9, --lr at --reference-batch):
  constant        the same lr at every batch (fewer steps per epoch as the batch grows)
  linear          lr x G / reference (Goyal et al.'s linear scaling rule), no warmup
  linear+warmup   the same with --warmup-epochs (default 2) of linear warmup
  sqrt+warmup     lr x sqrt(G / reference), the same warmup
A run that diverges (nn_dist stops with a non-finite loss) is drawn as such.
Writes DIR/<recipe>/ (scale.py's runs.csv, logs and plots), DIR/batch_sweep.png
and DIR/batch_summary.csv.
"""
import argparse
import csv
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = {  # "W": --warmup-epochs
    "constant": [],
    "linear": ["--lr-scaling", "linear"],
    "linear+warmup": ["--lr-scaling", "linear", "--warmup-epochs", "W"],
    "sqrt+warmup": ["--lr-scaling", "sqrt", "--warmup-epochs", "W"],
}


def die(msg):
    print(f"batch_sweep.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def find_build():
    for d in (os.environ.get("NN_BUILD", ""), os.path.join(ROOT, "build")):
        if d and os.path.exists(os.path.join(d, "nn_dist")):
            return d
    die("no build with nn_dist (set NN_BUILD or build into build/)")


def sweep(a):
    build = find_build()
    os.makedirs(a.out, exist_ok=True)
    data = a.data or os.path.join(a.out, "task.h5")
    if not a.data and not os.path.exists(data):
        # Three interleaved spirals: small batches learn them in an epoch, a
        # large batch at the same lr crawls; what the recipes are for.
        subprocess.run([os.path.join(build, "nn_datagen"), "--out", data, "--kind", "spirals", "--samples", "100000",
                        "--classes", "3", "--noise", "0.02", "--seed", "7"], check=True, stdout=subprocess.DEVNULL)
    failed = False
    for k, (name, flags) in enumerate(RECIPES.items()):
        print(f"batch_sweep.py: recipe {k + 1}/{len(RECIPES)}: {name}", file=sys.stderr, flush=True)
        out = os.path.join(a.out, name)
        if os.path.exists(os.path.join(out, "runs.csv")):
            print(f"batch_sweep.py: {out}/runs.csv exists: kept", file=sys.stderr)
            continue
        cmd = [sys.executable, os.path.join(ROOT, "scripts", "scale.py"), "--mode", "strong", "--ranks", str(a.ranks),
               "--global-batch", a.batches, "--out", out, "--nn-dist", os.path.join(build, "nn_dist"), "--",
               "--data", data, "--val-split", "0.1", "--hidden", "256,128", "--epochs", str(a.epochs), "--lr",
               str(a.lr), "--momentum", "0.9", "--seed", "3"] + [str(a.warmup_epochs) if f == "W" else f for f in flags]
        if flags:
            cmd += ["--lr-reference-batch", str(a.reference_batch)]
        failed |= subprocess.run(cmd).returncode not in (0, 1)  # 1: some runs diverged, which is a result
    plot(a.out, a.target_loss)
    return 1 if failed else 0


def load(out):
    runs = {}
    for name in RECIPES:
        path = os.path.join(out, name, "runs.csv")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for row in csv.DictReader(f):
                key = (name, int(row["global_batch"]))
                r = runs.setdefault(key, {"epochs": [], "loss": [], "seconds": [], "exit": int(row["exit_code"] or 0)})
                if row["epoch"]:
                    loss = float(row["val_loss"] or row["train_loss"] or "nan")
                    r["epochs"].append(int(row["epoch"]))
                    r["loss"].append(loss)
                    r["seconds"].append(float(row["wall_seconds"]))
    return runs


def log_if_positive(ax, values):
    if any(math.isfinite(v) and v > 0 for v in values if isinstance(v, float)):
        ax.set_yscale("log")


def draw_loss_curves(axes, runs, names, batches, color):
    """Top row: validation loss against epoch, one panel per recipe, one line per global batch."""
    for j, name in enumerate(names):
        ax = axes[j]
        for b in batches:
            r = runs.get((name, b))
            if not r:
                continue
            label = f"{b}" + (" (diverged)" if r["exit"] != 0 else "")
            ax.plot(r["epochs"], r["loss"], "-o" if r["exit"] == 0 else "x--", ms=3, color=color[b], label=label)
        log_if_positive(ax, [v for (n, _), r in runs.items() if n == name for v in r["loss"]])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        if j == 0:
            ax.set_ylabel("validation loss")
        ax.grid(True, alpha=0.3)
        ax.legend(title="global batch", fontsize=7, title_fontsize=7)


def summary_rows(runs, names, batches, target):
    """batch_summary.csv: per recipe and global batch, the final loss and the seconds to the target loss."""
    rows = []
    for name in names:
        for b in batches:
            r = runs.get((name, b))
            final = r["loss"][-1] if r and r["loss"] and r["exit"] == 0 else float("nan")
            reached = (next((s for s, l in zip(r["seconds"], r["loss"]) if l <= target), float("nan")) if r
                       else float("nan"))
            rows.append({"recipe": name, "global_batch": b, "final_val_loss": final,
                         "epochs": len(r["loss"]) if r else 0, "exit_code": r["exit"] if r else "",
                         "seconds_to_target": reached, "train_seconds": r["seconds"][-1] if r and r["seconds"] else ""})
    return rows


def draw_against_batch(ax, rows, names, column):
    """One line per recipe: rows' column against the global batch (log axes)."""
    for name in names:
        pts = [(r["global_batch"], r[column]) for r in rows if r["recipe"] == name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=4, label=name)
    ax.set_xscale("log", base=2)
    log_if_positive(ax, [r[column] for r in rows])
    ax.set_xlabel("global batch")


def plot(out, target):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = load(out)
    if not runs:
        die(f"{out}: no runs.csv of any recipe")
    batches = sorted({b for _, b in runs})
    names = [n for n in RECIPES if any(k[0] == n for k in runs)]
    cmap = plt.get_cmap("viridis")
    color = {b: cmap(i / max(1, len(batches) - 1)) for i, b in enumerate(batches)}
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7.6), squeeze=False)
    draw_loss_curves(axes[0], runs, names, batches, color)
    rows = summary_rows(runs, names, batches, target)
    ax = axes[1][0]
    draw_against_batch(ax, rows, names, "final_val_loss")
    ax.set_ylabel("validation loss after the last epoch")
    ax.set_title("final loss (about 1.1 = ln 3: the net learned nothing)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    if len(names) > 1:
        ax = axes[1][1]
        draw_against_batch(ax, rows, names, "seconds_to_target")
        ax.set_ylabel(f"training seconds to validation loss {target:g}")
        ax.set_title("time to target (missing: never reached)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for k in range(2, len(names)):
        axes[1][k].axis("off")
    fig.suptitle("global-batch sweep: 2-256-128-3 on 100000 spiral samples (10% held out), SGD momentum 0.9, "
                 "lr at batch 32 = 0.01", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "batch_sweep.png"), dpi=100)
    write_summary(out, rows)


def write_summary(out, rows):
    with open(os.path.join(out, "batch_summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    print(f"{'recipe':<15} {'batch':>6} {'final loss':>11} {'s to target':>12}")
    for r in rows:
        print(f"{r['recipe']:<15} {r['global_batch']:>6} {r['final_val_loss']:>11.4f} {r['seconds_to_target']:>12.2f}")
    print(f"wrote {out}/batch_sweep.png and {out}/batch_summary.csv")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "plot":
        ap = argparse.ArgumentParser(prog="batch_sweep.py plot")
        ap.add_argument("dir")
        ap.add_argument("--target-loss", type=float, default=0.1)
        a = ap.parse_args(sys.argv[2:])
        plot(a.dir, a.target_loss)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "batch_sweep"))
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--batches", default="32,64,128,256,512,1024,2048,4096")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--reference-batch", type=int, default=32)
    ap.add_argument("--target-loss", type=float, default=0.1)
    ap.add_argument("--warmup-epochs", type=float, default=2, help="of the +warmup recipes (below --epochs)")
    ap.add_argument("--data")
    a = ap.parse_args()
    for b in a.batches.split(","):
        if not b.isdigit() or int(b) % a.ranks:
            die(f"--batches: {b} is not a positive multiple of --ranks {a.ranks}")
    if not math.isfinite(a.lr) or a.lr <= 0:
        die("--lr must be positive")
    if not 0 < a.warmup_epochs < a.epochs:
        die(f"--warmup-epochs {a.warmup_epochs:g}: must be above 0 and below --epochs {a.epochs}")
    return sweep(a)


if __name__ == "__main__":
    sys.exit(main())
