"""perf_model.py plot: predicted weak-scaling efficiency on both networks, and predicted against
measured step time for every validated cell (scripts/validate_model.sh)."""

import csv

from nn_perf.commands import load_model
from nn_perf.model import layer_sizes, predict_step, with_network
from nn_perf.network import NETWORKS


def draw_efficiency(ax, model, sizes, batch):
    """Predicted weak-scaling efficiency up to 4096 ranks on both networks at 1, 16 and 64 cores a node, and
    on 25 GbE at 1 core a node with 4 micro-batches accumulated per update."""
    ranks = [2 ** k for k in range(0, 13)]
    for name, style in (("ib200", "-"), ("eth25", "--")):
        net = NETWORKS[name]
        m = with_network(model, net["alpha_us"])
        for cores, color in ((1, "tab:red"), (16, "tab:blue"), (64, "tab:green")):
            eff = [predict_step(m, p, cores, net["gbps"], sizes, batch,
                                transport=net["transport"])["efficiency"] for p in ranks]
            ax.plot(ranks, eff, style, color=color, label=f"{net['label'].split(',')[0]}, {cores} core(s)/node")
    # What accumulation buys where the sum costs most: TCP, 1 core a node, 4 micro-batches an update.
    net = NETWORKS["eth25"]
    m = with_network(model, net["alpha_us"])
    eff = [predict_step(m, p, 1, net["gbps"], sizes, batch, transport=net["transport"],
                        accumulate=4)["efficiency"] for p in ranks]
    ax.plot(ranks, eff, ":", color="tab:red", label=f"{net['label'].split(',')[0]}, 1 core/node, --accumulate-steps 4")
    ax.text(0.99, 0.99, "TCP: this machine's per-byte cost of Open MPI over TCP, taking turns (duplex factor)\n"
            "InfiniBand: RDMA, both directions at once; only the reduction costs CPU",
            transform=ax.transAxes, ha="right", va="top", fontsize=6.5)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ranks (1 per core)")
    ax.set_ylabel("weak-scaling efficiency (step at 1 rank / step at p)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"predicted, {'-'.join(map(str, sizes))}, batch {batch}/rank", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


def draw_predicted_vs_measured(ax, measured):
    """Every validated cell (scripts/validate_model.sh): predicted against measured step time, by layout,
    one marker per mode, with the 20% band."""
    colors = {"1+1": "tab:blue", "2+2": "tab:orange", "1+1+1": "tab:green", "2+2+2": "tab:red"}
    markers = {"1": "o", "2": "s", "4": "^", "8": "D"}
    seen = set()
    for r in measured:
        m, p = float(r["measured_step_ms"]), float(r["predicted_step_ms"])
        label = f"{len(r['layout'].split('+'))} hosts x {r['layout'].split('+')[0]}" + \
            (f", accumulate {r['accumulate']}" if r["accumulate"] != "1" else "")
        ax.loglog(m, p, markers.get(r["accumulate"], "x"), color=colors.get(r["layout"], "k"),
                  mfc="none" if r.get("in_sample") == "yes" else None, label=None if label in seen else label,
                  alpha=0.4 if r.get("oversubscribed") == "yes" else 1.0)
        seen.add(label)
    values = [float(r[k]) for r in measured for k in ("measured_step_ms", "predicted_step_ms")]
    lo, hi = min(values) / 1.3, max(values) * 1.3
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="0.85", label="within 20%")
    ax.set_xlabel("measured step (ms)")
    ax.set_ylabel("predicted step (ms)")
    ax.set_title("emulated hosts, 3 link rates: predicted vs measured\n(hollow: in-sample; faint: more ranks than cores)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


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
    draw_efficiency(axes[0][0], model, sizes, args.batch_per_rank)
    if measured:
        draw_predicted_vs_measured(axes[0][1], measured)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
