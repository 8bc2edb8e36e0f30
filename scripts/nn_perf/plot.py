"""perf_model.py plot: predicted weak-scaling efficiency on both networks, and predicted against
measured step time on the shaped links (scripts/validate_model.sh)."""

import csv

from nn_perf.commands import load_model
from nn_perf.model import layer_sizes, predict_step, with_network
from nn_perf.network import NETWORKS


def draw_efficiency(ax, model, sizes, batch, measured):
    """Predicted weak-scaling efficiency up to 4096 ranks on both networks at 1, 16 and 64 cores a node,
    and the measured 2-host points."""
    ranks = [2 ** k for k in range(0, 13)]
    for name, style in (("ib200", "-"), ("eth25", "--")):
        net = NETWORKS[name]
        m = with_network(model, net["alpha_us"])
        for cores, color in ((1, "tab:red"), (16, "tab:blue"), (64, "tab:green")):
            eff = [predict_step(m, p, cores, net["gbps"], sizes, batch,
                                transport=net["transport"])["efficiency"] for p in ranks]
            ax.plot(ranks, eff, style, color=color, label=f"{net['label'].split(',')[0]}, {cores} core(s)/node")
    ax.text(0.99, 0.99, "TCP: this machine's per-byte cost of Open MPI over TCP, taking turns (duplex factor)\n"
            "InfiniBand: RDMA, both directions at once; only the reduction costs CPU",
            transform=ax.transAxes, ha="right", va="top", fontsize=6.5)
    # measured here: 2 emulated hosts x 1 rank, at each link rate (efficiency = 1-rank step / 2-rank step)
    for k, row in enumerate(measured):
        y = float(row["measured_efficiency"])
        ax.plot(2, y, "ko", ms=4, label="measured here: 2 emulated hosts x 1 rank" if k == 0 else None)
        rate = "unshaped" if row["kind"] == "unshaped" else row["rate"]
        ax.annotate(rate, (2, y), textcoords="offset points", xytext=(5, 2), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ranks (1 per core)")
    ax.set_ylabel("weak-scaling efficiency (step at 1 rank / step at p)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"predicted, {'-'.join(map(str, sizes))}, batch {batch}/rank", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.78))


def draw_step_vs_rate(ax, model, sizes, batch, measured):
    """Predicted step time against the link rate (2 hosts x 1 rank, the measured compute), and the
    measured steps on the shaped links with their errors."""
    shaped = [r for r in measured if r.get("kind") == "shaped"]
    gbps = [float(r["gbps"]) for r in shaped]
    lo, hi = min(gbps) / 1.5, max(gbps) * 1.5
    xs = [lo * (hi / lo) ** (i / 60) for i in range(61)]
    compute = float(shaped[0]["compute_ms"])
    base = with_network(model, None)
    ys = [predict_step(base, 2, 1, x, sizes, batch, compute_s=compute * 1e-3)["step_ms"] for x in xs]
    ax.plot(xs, ys, "-", color="tab:blue", label="predicted (calibrated on the unshaped link)")
    ax.plot(gbps, [float(r["measured_step_ms"]) for r in shaped], "ko", label="measured")
    for r in shaped:
        ax.annotate(f"{float(r['error_pct']):+.0f}%", (float(r["gbps"]), float(r["measured_step_ms"])),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("link rate (Gbit/s, tc tbf)")
    ax.set_ylabel("step time (ms)")
    ax.set_title("2 emulated hosts x 1 rank: step time vs link rate", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot(args):
    """perf_model.py plot: the efficiency panel, and with --measured the step-time panel, in one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    model = load_model(args.model)
    sizes = layer_sizes(args.features, args.hidden, args.classes)
    measured = []
    if args.measured:
        with open(args.measured) as f:
            measured = list(csv.DictReader(f))
    fig, axes = plt.subplots(1, 2 if measured else 1, figsize=(13 if measured else 7, 4.8), squeeze=False)
    draw_efficiency(axes[0][0], model, sizes, args.batch_per_rank, measured)
    if measured:
        draw_step_vs_rate(axes[0][1], model, sizes, args.batch_per_rank, measured)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
