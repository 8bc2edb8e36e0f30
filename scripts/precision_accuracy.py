#!/usr/bin/python3
"""Does --precision bf16 reach f32's test accuracy? The standard teacher, scikit-learn's digits and the
spirals example, seeds 1-3, trained with each precision on 2 ranks and scored by nn_eval on held-out data;
writes precision_accuracy.csv and precision_loss.png, prints a table, exits 1 if a seed differs > 0.5 points.

  scripts/precision_accuracy.py [--out DIR] [--results DIR] [--seeds 1,2,3] [--tasks teacher,digits,spirals]
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from nn_scale.options import ROOT, local_cores  # noqa: E402
from nn_scale.sweep import cpu_model, launcher_command  # noqa: E402

PRECISIONS = ("f32", "bf16")
TOLERANCE_POINTS = 0.5
FIELDS = ("task", "seed", "precision", "test_accuracy", "final_loss", "seconds")

# Per task: the data, the held-out test file and the training flags, each as the project's own
# examples use them (README's standard config, digits_example.sh's plain run, run_example.sh).
TASKS = {
    "teacher": {
        "title": "teacher, 784-512-256-10, 60000 train / 10000 test",
        # The standard config's SGD lr 0.05, batch 32 per rank. The net fits the training set by
        # epoch 8; test accuracy is flat from epoch 9 on, so 10 epochs reach the stable value.
        "flags": ["--hidden", "512,256", "--activation", "relu", "--epochs", "10"],
    },
    "digits": {
        "title": "digits, 64-256-256-10, 1000 train / 797 test",
        "flags": ["--hidden", "256,256", "--activation", "relu", "--batch-size", "32", "--epochs", "150",
                  "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05"],
    },
    "spirals": {
        "title": "spirals, 2-64-64-3, 20000 train / 10000 test",
        "flags": ["--hidden", "64,64", "--activation", "relu", "--optimizer", "adam", "--lr", "0.01",
                  "--batch-size", "32", "--epochs", "20"],
    },
}


def fail(message):
    print(f"precision_accuracy.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(f"precision_accuracy.py: {message}", file=sys.stderr, flush=True)


def run(cmd, what, log=None):
    """Runs cmd; its output goes to log (or is returned); a failure ends the script naming what failed."""
    if log is None:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    else:
        with open(log, "w") as sink:
            p = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        fail(f"{what} exited with {p.returncode}" + (f" (output: {log})" if log else f": {p.stdout.strip()}"))
    return p.stdout


def make_data(task, folder, build):
    """Writes folder/train.h5 and folder/test.h5 for the task, unless both exist."""
    train, test = os.path.join(folder, "train.h5"), os.path.join(folder, "test.h5")
    if os.path.exists(train) and os.path.exists(test):
        return train, test
    os.makedirs(folder, exist_ok=True)
    datagen = os.path.join(build, "nn_datagen")
    if task == "teacher":
        # The training file is the standard config's (nn_bench_data in common.sh: seed 1, stream 1);
        # --val-out draws the test samples from the same teacher (a new --seed would be a new teacher).
        run([datagen, "--kind", "teacher", "--features", "784", "--classes", "10", "--samples", "60000",
             "--seed", "1", "--out", train, "--val-out", test, "--val-samples", "10000"], "nn_datagen (teacher)")
    elif task == "digits":
        # digits_example.py's stratified split; its validation file, which no run here looks at, is the test set.
        run(["/usr/bin/python3", os.path.join(SCRIPTS, "digits_example.py"), "export", folder], "digits export")
        os.replace(os.path.join(folder, "val.h5"), test)
    else:
        # The spirals' shape does not depend on the seed, so another seed draws new samples of the same task.
        spirals = [datagen, "--kind", "spirals", "--classes", "3", "--noise", "0.02"]
        run(spirals + ["--samples", "20000", "--seed", "1", "--out", train], "nn_datagen (spirals, train)")
        run(spirals + ["--samples", "10000", "--seed", "2", "--out", test], "nn_datagen (spirals, test)")
    return train, test


def read_losses(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        fail(f"{path}: no epochs")
    return [float(r["train_loss"]) for r in rows]


def train_and_eval(task, seed, precision, train, test, folder, build):
    """One run on 2 ranks, then nn_eval on the test file: the CSV row, the loss per epoch, the kernel."""
    stem = os.path.join(folder, f"{precision}-seed{seed}")
    model, metrics, log = stem + ".h5", stem + ".csv", stem + ".log"
    for old in (model, metrics, log):  # a rerun starts fresh, never from an old checkpoint
        if os.path.exists(old):
            os.remove(old)
    cmd = launcher_command("mpirun", 2, local_cores(), [
        os.path.join(build, "nn_dist"), "--data", train, *TASKS[task]["flags"], "--seed", str(seed),
        "--precision", precision, "--progress", "off", "--checkpoint", model, "--metrics", metrics])
    start = time.monotonic()
    run(cmd, f"nn_dist ({task}, seed {seed}, {precision})", log)
    seconds = time.monotonic() - start
    # The start-up line names the kernel: a bf16 run that fell back to f32 would compare f32 with itself.
    with open(log) as f:
        started = f.readline()
    if (precision == "bf16") != ("bf16 products" in started):
        fail(f"{log}: the {precision} run's start-up line names another kernel: {started.strip()}")
    kernel = re.search(r"(\w+) kernel", started)
    result = json.loads(run([os.path.join(build, "nn_eval"), "--model", model, "--data", test, "--json"],
                            f"nn_eval ({task}, seed {seed}, {precision})"))
    losses = read_losses(metrics)
    row = {"task": task, "seed": seed, "precision": precision, "test_accuracy": round(result["accuracy"], 6),
           "final_loss": round(losses[-1], 8), "seconds": round(seconds, 2)}
    return row, losses, kernel.group(1) if kernel else "?"


def summarise(rows):
    """Per task: each precision's mean test accuracy, the largest per-seed |bf16 - f32| and f32's spread."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        acc = {(r["precision"], r["seed"]): 100 * r["test_accuracy"] for r in rows if r["task"] == task}
        seeds = sorted({s for _, s in acc})
        f32, bf16 = [acc["f32", s] for s in seeds], [acc["bf16", s] for s in seeds]
        largest = max(abs(b - f) for f, b in zip(f32, bf16))
        out.append({"task": task, "f32": sum(f32) / len(f32), "bf16": sum(bf16) / len(bf16), "largest": largest,
                    "spread": max(f32) - min(f32), "within": largest <= TOLERANCE_POINTS})
    return out


def print_table(summary, seeds):
    print(f"| task | f32 test accuracy (mean of {len(seeds)} seeds) | bf16 | largest per-seed \\|bf16 - f32\\| "
          f"| f32's spread over seeds | within {TOLERANCE_POINTS} points |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['task']} | {s['f32']:.2f}% | {s['bf16']:.2f}% | {s['largest']:.2f} points "
              f"| {s['spread']:.2f} points | {'yes' if s['within'] else 'NO'} |")


def plot(curves, summary, path, seeds, kernel):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

    tasks = list(dict.fromkeys(task for task, _, _ in curves))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.4), squeeze=False)
    colours = {"f32": "tab:blue", "bf16": "tab:orange"}
    for ax, task in zip(axes[0], tasks):
        for (t, seed, precision), losses in curves.items():
            if t != task:
                continue
            # Seed 1 drawn bold, the others thin; bf16 dashed so that it shows where it lies on f32.
            ax.plot(range(1, len(losses) + 1), losses, color=colours[precision],
                    linestyle="--" if precision == "bf16" else "-", linewidth=1.8 if seed == seeds[0] else 0.8,
                    alpha=1.0 if seed == seeds[0] else 0.6,
                    label=precision if seed == seeds[0] else None)
        s = next(s for s in summary if s["task"] == task)
        ax.set_title(f"{TASKS[task]['title']}\ntest accuracy f32 {s['f32']:.2f}%, bf16 {s['bf16']:.2f}%",
                     fontsize=10)
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        if high / low < 100:  # under two decades (the spirals' loss): label 2x and 5x too, as plain numbers
            plain = FuncFormatter(lambda v, _: f"{v:g}")
            ax.yaxis.set_minor_locator(LogLocator(subs=(2, 5)))
            ax.yaxis.set_minor_formatter(plain)
            ax.yaxis.set_major_formatter(plain)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (cross-entropy)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title=f"seed {seeds[0]} bold, {', '.join(map(str, seeds[1:]))} thin" if len(seeds) > 1 else None)
    fig.suptitle(f"nn_dist --precision f32 vs bf16 ({kernel}), 2 ranks, {cpu_model()}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "precision"),
                        help="folder for the data, checkpoints, metrics and logs")
    parser.add_argument("--results", default=os.path.join(ROOT, "cluster", "results"),
                        help="folder for precision_accuracy.csv and precision_loss.png")
    parser.add_argument("--seeds", default="1,2,3", help="nn_dist --seed values, comma-separated")
    parser.add_argument("--tasks", default=",".join(TASKS), help="a comma-separated subset of " + ", ".join(TASKS))
    parser.add_argument("--build", default=os.environ.get("NN_BUILD", os.path.join(ROOT, "build")),
                        help="the build folder with nn_dist, nn_eval and nn_datagen")
    a = parser.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        fail(f"--seeds {a.seeds}: expected comma-separated integers")
    tasks = a.tasks.split(",")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        fail(f"--tasks: unknown task {unknown[0]!r} (expected some of {', '.join(TASKS)})")
    for program in ("nn_dist", "nn_eval", "nn_datagen"):
        if not os.access(os.path.join(a.build, program), os.X_OK):
            fail(f"--build {a.build}: no {program} there (build it, or set NN_BUILD)")
    os.makedirs(a.results, exist_ok=True)

    rows, curves, bf16_kernels = [], {}, set()
    total, done, start = len(tasks) * len(seeds) * len(PRECISIONS), 0, time.monotonic()
    for task in tasks:
        folder = os.path.join(a.out, task)
        train, test = make_data(task, folder, a.build)
        for seed in seeds:
            for precision in PRECISIONS:  # the pair back to back, so both see the same machine load
                row, losses, kernel = train_and_eval(task, seed, precision, train, test, folder, a.build)
                if precision == "bf16":
                    bf16_kernels.add(kernel)
                rows.append(row)
                curves[task, seed, precision] = losses
                done += 1
                say(f"{done}/{total} {task} seed {seed} {precision}: test accuracy {row['test_accuracy']:.4f}, "
                    f"final loss {row['final_loss']:.4g}, {row['seconds']:.1f} s "
                    f"({time.monotonic() - start:.0f} s so far)")

    csv_path = os.path.join(a.results, "precision_accuracy.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    png_path = os.path.join(a.results, "precision_loss.png")
    plot(curves, summary, png_path, seeds, "bf16 kernel: " + ", ".join(sorted(bf16_kernels)))
    print_table(summary, seeds)
    say(f"wrote {csv_path} and {png_path}")
    return 0 if all(s["within"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
