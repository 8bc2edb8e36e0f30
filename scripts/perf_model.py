#!/usr/bin/python3
"""A performance model of one nn_dist training step (see cluster/perf-model.md).

  perf_model.py calibrate --allreduce CSV [--allreduce CSV ...] --roofline LOG --profile LOG --out MODEL.json
      Fit the model to this machine: the GEMM rate (nn_roofline's ROOFLINE_JSON
      line for nn_dist's products), the rest of a step's compute (nn_dist
      --profile's BENCH_JSON at 1 rank minus the products), and alpha-beta fits
      of summing a buffer (nn_allreduce_bench CSV: shared memory inside a node,
      MPI_Allreduce between 2 nodes).

  perf_model.py predict --model MODEL.json [--network ib200|eth25|NAME] [--alpha-us A --gbps G]
                        [--cores-per-node C] [--ranks 64,256,1024,4096] [--batch-per-rank 128]
                        [--hidden 512,256] [--features 784] [--classes 10] [--path hierarchical|ring]
                        [--csv OUT.csv]
      Step time, samples/s and efficiency at each rank count, with the global batch it implies.

  perf_model.py step --model MODEL.json --ranks P --cores-per-node C [--gbps G] [--compute-ms T] ...
      One prediction, as JSON (for scripts/validate_model.sh).

  perf_model.py plot --model MODEL.json --out PNG [--measured CSV]
      Predicted weak-scaling efficiency up to 4096 ranks on both networks, and,
      with --measured (scripts/validate_model.sh's table), predicted against
      measured step time on the shaped links.

The model, in short: step = compute + exposed sum. compute = FLOPs x batch /
GEMM rate + the step's other work (activations, loss, data, update), measured.
The sum is nn_dist's hierarchical path: a shared-memory sum inside each node,
then each of a node's C ranks runs MPI_Allreduce of its 1/C of the gradient
with the same rank of every other node (C concurrent allreduces sharing the
node's link), using the algorithm Open MPI 4.1's tuned component picks for
that communicator size and message size, each an alpha-beta-gamma cost. The
hierarchical sum starts after backprop: nothing overlaps. --path ring models
nn_dist's own bucketed ring instead, whose buckets overlap backprop.
"""
import argparse
import csv
import json
import math
import os
import sys

# Networks the README quotes (alpha: per-message latency through MPI; gbps: link rate).
# transport: tcp pays this machine's measured per-byte CPU cost of the kernel's
# TCP stack (calibrated on the unshaped link); rdma moves bytes without the CPU
# (only the reduction's gamma remains).
NETWORKS = {
    "ib200": {"alpha_us": 1.5, "gbps": 200.0, "transport": "rdma", "label": "200 Gb/s InfiniBand, alpha 1.5 us"},
    "eth25": {"alpha_us": 30.0, "gbps": 25.0, "transport": "tcp", "label": "25 Gb/s Ethernet (TCP), alpha 30 us"},
}
# Payload share of a shaped TCP link's bytes: 1448-byte segments in 1514-byte
# Ethernet frames (MTU 1500, TCP timestamps), plus the reverse direction's ACKs
# (66 bytes per two segments) that share the rate when both directions carry
# data, as in an allreduce: 1448 / (1514 + 33).
TCP_PAYLOAD_SHARE = 1448.0 / (1514.0 + 33.0)
STATS_BYTES = 8 * 8  # the step's loss/accuracy/control sums (StepStat), summed with the gradient


def die(msg):
    print(f"perf_model.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- the network

def ompi_allreduce_algorithm(p, nbytes, type_size=4):
    """The algorithm Open MPI 4.1's tuned component runs for MPI_Allreduce of
    `nbytes` of a commutative op on `p` ranks with default settings: the fixed
    decision table of coll_tuned_decision_fixed.c (identical in 4.1.0-4.1.8),
    then the fallbacks inside the algorithms (the table's segmented ring gets
    segment size 0 and runs the plain ring; the ring needs count >= p, else
    recursive doubling; Rabenseifner needs count >= the largest power of two
    <= p, else the linear reduce + broadcast). Returns (name, 0)."""
    if p < 2:
        return ("none", 0)
    k = 1024
    n = nbytes
    if p < 4:
        a = (4 if n < 8 else 3 if n < 4 * k else 4 if n < 8 * k else 3 if n < 16 * k else 4 if n < 64 * k
             else 5 if n < 256 * k else 6)
    elif p < 8:
        a = 4 if n < 16 else 3 if n < 8 * k else 6
    elif p < 16:
        a = 3 if n < 8 * k else 6
    elif p < 32:
        a = 5 if n < 64 else 3 if n < 4 * k else 6
    elif p < 64:
        a = 5 if n < 128 else 6
    elif p < 128:
        a = 3 if n < 256 * k else 6
    elif p < 256:
        a = 2 if n < 128 * k else 3 if n < 256 * k else 6
    elif p < 512:
        a = 2 if n < 4 * k else 6
    elif p < 2048:
        a = 2 if n < 2 * k else 3 if n < 16 * k else 6
    elif p < 4096:
        a = 2 if n < 2 * k else 5 if n < 4 * k else 3 if n < 16 * k else 6
    else:
        a = 2 if n < 2 * k else 5 if n < 16 * k else 3 if n < 32 * k else 6
    count = max(1, int(nbytes) // type_size)
    pof2 = 1 << (p.bit_length() - 1)
    if a == 5:
        a = 4
    if a == 4 and count < p:
        a = 3
    if a == 6 and count < pof2:
        a = 1
    return ({1: "linear", 2: "nonoverlapping", 3: "recursive_doubling", 4: "ring", 6: "rabenseifner"}[a], 0)


def algorithm_cost(alg, p, n, alpha, beta, gamma, seg=0):
    """Seconds for one allreduce of n bytes on p ranks: message steps x alpha,
    bytes each rank sends (and receives) x beta, bytes it reduces x gamma."""
    if p <= 1 or n <= 0:
        return 0.0
    pof2 = 1 << int(math.floor(math.log2(p)))
    extra = 0 if pof2 == p else 1  # non-powers of two: fold the extra ranks in first, send them the result last
    if alg == "recursive_doubling":
        steps = int(math.log2(pof2)) + 2 * extra
        return steps * (alpha + n * beta) + (int(math.log2(pof2)) + extra) * n * gamma
    if alg in ("ring", "segmented_ring"):
        # 2(p-1) steps of n/p bytes (reduce-scatter, then allgather); the
        # segmented ring pipelines segments of seg bytes: more messages, the same bytes
        messages = 2 * (p - 1) * (max(1, math.ceil(n / (p * seg))) if seg else 1)
        return messages * alpha + 2 * (p - 1) / p * n * beta + (p - 1) / p * n * gamma
    if alg == "rabenseifner":
        # p' = 2^k survivors: recursive halving then doubling; non-powers of
        # two first exchange halves in pairs and fold (3 more steps, 2n more bytes)
        k = int(math.log2(pof2))
        return ((2 * k + 3 * extra) * alpha + (2 * (pof2 - 1) / pof2 * n + 2 * extra * n) * beta
                + ((pof2 - 1) / pof2 * n + extra * n / 2) * gamma)
    if alg == "nonoverlapping":  # binomial reduce to rank 0, then a k-nomial (radix 4) broadcast
        k = math.ceil(math.log2(p))
        return k * (alpha + n * beta + n * gamma) + 1.5 * k * (alpha + n * beta)
    if alg == "linear":
        return 2 * (p - 1) * (alpha + n * beta) + (p - 1) * n * gamma
    raise ValueError(f"unknown algorithm {alg}")


def inter_node_sum(nodes, flows, flow_bytes, alpha, beta_link, beta_cpu, gamma, duplex=1.0, algorithm="ompi"):
    """`flows` concurrent allreduces of flow_bytes each over `nodes` nodes,
    sharing each node's link. A byte a rank sends costs the CPU side (the MPI
    stack's copies, per flow, in parallel) plus its time on the link (which
    carries every flow's bytes): measured on the emulated links, the two add
    up rather than overlap. `duplex`: how much longer sending both ways at
    once takes than one way (1 for a link that carries both at full rate; 2
    where the transport takes turns, as Open MPI's TCP transport does here)."""
    if algorithm == "ompi":
        alg, seg = ompi_allreduce_algorithm(nodes, flow_bytes)
    else:
        alg, seg = algorithm, 0
    beta = duplex * (beta_cpu + flows * beta_link)
    return algorithm_cost(alg, nodes, flow_bytes, alpha, beta, gamma, seg), alg


# ---------------------------------------------------------------- the model

def layer_sizes(features, hidden, classes):
    return [features] + [int(h) for h in hidden.split(",") if h] + [classes]


def model_numbers(sizes):
    params = sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))
    # per sample: forward W a, weight gradient delta a^T, input gradient W^T delta (not for the input layer)
    flops = sum(2 * sizes[i] * sizes[i + 1] * (3 if i > 0 else 2) for i in range(len(sizes) - 1))
    return params, flops


def compute_seconds(cal, sizes, batch):
    """One rank's compute per step: GEMMs at the measured rate, plus the rest
    (per sample: activations, loss, data; per parameter: the update), measured."""
    params, flops = model_numbers(sizes)
    gemm = flops * batch / (cal["gemm_gflops"] * 1e9)
    other = cal["other_s_per_sample"] * batch * flops / cal["flops_per_sample"]
    update = cal["update_s_per_param"] * params
    return gemm + other + update


def backward_profile(sizes, batch, cal):
    """(seconds after the start of backprop at which each layer's gradient is
    ready, its bytes), last layer first: each layer's products at the GEMM rate."""
    t, out = 0.0, []
    for i in reversed(range(len(sizes) - 1)):
        f = 2 * sizes[i] * sizes[i + 1] * batch * (2 if i > 0 else 1)
        t += f / (cal["gemm_gflops"] * 1e9)
        out.append((t, 4 * (sizes[i] * sizes[i + 1] + sizes[i + 1])))
    return t, out


def predict_step(model, ranks, cores_per_node, gbps, sizes, batch, path="hierarchical", compute_s=None,
                 transport="tcp", algorithm="ompi", bucket_bytes=1 << 20):
    cal = model["compute"]
    shm = model["links"]["shared"]
    net = model["links"]["network"]
    gamma = model["gamma_s_per_byte"]
    params, _ = model_numbers(sizes)
    n = 4 * params  # float32 gradient bytes
    compute = compute_s if compute_s is not None else compute_seconds(cal, sizes, batch)
    per_node = min(ranks, cores_per_node)
    nodes = math.ceil(ranks / per_node)
    beta_link = 8.0 / (gbps * 1e9 * TCP_PAYLOAD_SHARE) if gbps else 0.0
    beta_cpu = net["beta_s_per_byte"] if transport == "tcp" else 0.0
    duplex = net["duplex"] if transport == "tcp" else 1.0
    alg = "none"
    if ranks == 1:
        exposed = 0.0
    elif path == "ring":
        # nn_dist's ring over all ranks (no shared memory), buckets last layer
        # first; a bucket's ring starts when its layers are done and the
        # previous bucket's ring has finished, and progresses during backprop.
        backprop, ready = backward_profile(sizes, batch, cal)
        finish, bucket, bucket_ready = 0.0, 0, 0.0
        buckets = []
        for t, b in ready:
            bucket += b
            bucket_ready = t
            if bucket >= bucket_bytes:
                buckets.append((bucket_ready, bucket))
                bucket = 0
        if bucket:
            buckets.append((bucket_ready, bucket))
        link_share = per_node if nodes > 1 else 0
        for t, b in buckets:
            cost = algorithm_cost("ring", ranks, b, net["alpha_s"] if nodes > 1 else shm["alpha_s"],
                                  duplex * (beta_cpu + link_share * beta_link) if nodes > 1
                                  else shm["beta_s_per_byte"],
                                  gamma)
            finish = max(finish, t) + cost
        exposed = max(0.0, finish - backprop)
        alg = "ring"
    else:
        # inside the node: every rank publishes, each sums its 1/C over the C ranks
        local = shm["alpha_s"] + shm["beta_s_per_byte"] * n if per_node > 1 else 0.0
        inter = 0.0
        if nodes > 1:
            inter, alg = inter_node_sum(nodes, per_node, n / per_node, net["alpha_s"], beta_link, beta_cpu, gamma,
                                        duplex, algorithm)
            stats, _ = inter_node_sum(nodes, 1, STATS_BYTES, net["alpha_s"], beta_link, beta_cpu, 0.0, duplex,
                                      algorithm)
            inter += stats
        exposed = local + inter
    step = compute + exposed
    one = compute  # the same rank alone: no sum
    return {
        "ranks": ranks, "nodes": nodes, "ranks_per_node": per_node, "batch_per_rank": batch,
        "global_batch": ranks * batch, "compute_ms": compute * 1e3, "sum_ms": exposed * 1e3, "step_ms": step * 1e3,
        "samples_per_sec": ranks * batch / step, "efficiency": one / step, "algorithm": alg,
        "gradient_bytes": n,
    }


def with_network(model, alpha_us):
    """The model with the network's alpha replaced (the CPU side's per-byte cost stays as calibrated)."""
    m = json.loads(json.dumps(model))
    if alpha_us is not None:
        m["links"]["network"]["alpha_s"] = alpha_us * 1e-6
    return m


# ---------------------------------------------------------------- calibration

def json_lines(path, tag):
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith(tag + " "):
                out.append(json.loads(line[len(tag) + 1:]))
    return out


def fit_alpha_beta(points, small=4096, large=1 << 20):
    """T(n) = a + b n (Hockney): a, the latency, is the median time of the
    messages up to `small` bytes; b, the time per byte, the least-squares slope
    of T - a over the messages of `large` bytes or more (a gradient's size:
    the regime a step's sum is in; one line through every size would fit
    neither end, as caches and TCP's windows bend the curve in between)."""
    smalls = sorted(t for n, t in points if n <= small)
    bigs = [(n, t) for n, t in points if n >= large]
    if not smalls or len(bigs) < 2:
        raise ValueError(f"need sizes up to {small} bytes and two or more of {large} bytes or more")
    a = smalls[len(smalls) // 2]
    b = sum(n * (t - a) for n, t in bigs) / sum(n * n for n, _ in bigs)
    return a, max(b, 0.0)


def read_bench_csv(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += list(csv.DictReader(f))
    return rows


def calibrate(args):
    rows = read_bench_csv(args.allreduce)
    roof = [r for r in json_lines(args.roofline, "ROOFLINE_JSON") if r.get("products") == "nn_dist"]
    prof = json_lines(args.profile, "BENCH_JSON")
    if not roof:
        die(f"{args.roofline}: no ROOFLINE_JSON line for nn_dist's products")
    if not prof:
        die(f"{args.profile}: no BENCH_JSON line (run nn_dist with --profile)")
    roof, prof = roof[-1], prof[-1]
    if prof["ranks"] != 1:
        die(f"{args.profile}: calibrate compute from a 1-rank run (this one had {prof['ranks']})")
    sizes = layer_sizes(args.features, args.hidden, args.classes)
    params, flops = model_numbers(sizes)
    batch = prof["batch_per_rank"]
    if roof["batch"] != batch:
        die(f"nn_roofline ran at batch {roof['batch']}, nn_dist at {batch}: use the same")
    gemm_s = roof["gemm_ms"] * 1e-3
    step_s = prof["step_ms"] * 1e-3
    update_s = prof["optimizer_ms"] * 1e-3
    other_s = max(0.0, step_s - gemm_s - update_s)
    compute = {
        "gemm_gflops": flops * batch / gemm_s * 1e-9, "flops_per_sample": flops, "batch": batch,
        "other_s_per_sample": other_s / batch, "update_s_per_param": update_s / params,
        "calibration_step_ms": prof["step_ms"], "calibration_gemm_ms": roof["gemm_ms"],
        "layers": sizes,
    }

    def fit(path, nodes, what):
        pts = [(float(r["bytes"]), float(r["time_us_median"]) * 1e-6) for r in rows
               if r["path"] == path and int(r["nodes"]) == nodes and int(r["ranks"]) == 2]
        try:
            return fit_alpha_beta(pts), pts
        except ValueError as e:
            die(f"{what}: nn_allreduce_bench rows of path '{path}' at 2 ranks on {nodes} node(s): {e}")

    (a_s, b_s), shm_pts = fit(args.shared_path, 1, "shared memory")
    (a_n, b_n), net_pts = fit("mpi", 2, "network")
    (_, b_relay), _ = fit("p2p-relay", 2, "network, one way and back")
    (_, b_exchange), _ = fit("p2p-exchange", 2, "network, both ways at once")
    # gamma: summing in memory, taken as the shared-memory sum's per-byte cost
    # (each of 2 ranks reads both halves of its part and writes the sum)
    gamma = b_s
    # one way and back: two transfers of n bytes in turn, and rank 0 adds n bytes
    beta_net = max(1e-15, (b_relay - gamma) / 2)
    # both ways at once: each rank sends n and adds n bytes
    duplex = max(1.0, (b_exchange - gamma) / beta_net)
    # Open MPI's pick at 2 ranks for a gradient-sized message, and what it
    # costs with these numbers: alpha is what makes up the small messages' time
    alg, seg = ompi_allreduce_algorithm(2, 1 << 21)
    steps = algorithm_cost(alg, 2, 1.0, 1.0, 0.0, 0.0, seg)
    alpha_net = a_n / steps
    check_b = algorithm_cost(alg, 2, 1 << 20, 0.0, duplex * beta_net, gamma, seg) / (1 << 20)
    model = {
        "compute": compute,
        "links": {
            "shared": {"alpha_s": a_s, "beta_s_per_byte": b_s, "fit_points": len(shm_pts), "path": args.shared_path},
            "network": {"alpha_s": alpha_net, "beta_s_per_byte": beta_net, "duplex": duplex,
                        "fit_points": len(net_pts), "allreduce_a_s": a_n, "allreduce_b_s_per_byte": b_n,
                        "relay_b_s_per_byte": b_relay, "exchange_b_s_per_byte": b_exchange, "algorithm_at_2": alg,
                        "modelled_allreduce_b_s_per_byte": check_b},
        },
        "gamma_s_per_byte": gamma,
        "sources": {"allreduce": [os.path.basename(a) for a in args.allreduce],
                    "roofline": os.path.basename(args.roofline), "profile": os.path.basename(args.profile)},
    }
    with open(args.out, "w") as f:
        json.dump(model, f, indent=1)
    print(f"compute: GEMM {compute['gemm_gflops']:.1f} GFLOP/s, other {other_s * 1e3:.3f} ms + update "
          f"{update_s * 1e3:.3f} ms per step at batch {batch} (step {prof['step_ms']:.3f} ms)")
    print(f"shared memory (2 ranks): {a_s * 1e6:.1f} us + {b_s * 1e9:.3f} ns/byte")
    print(f"network, 2 nodes: one way {beta_net * 1e9:.3f} ns/byte; both ways at once {duplex:.2f}x as long "
          f"(duplex factor); alpha {alpha_net * 1e6:.1f} us per message step; gamma {gamma * 1e9:.3f} ns/byte")
    print(f"  MPI_Allreduce ({alg} at 2 ranks) measured {a_n * 1e6:.1f} us + {b_n * 1e9:.3f} ns/byte; "
          f"the model from the point-to-point numbers: {check_b * 1e9:.3f} ns/byte")
    print(f"wrote {args.out}")


# ---------------------------------------------------------------- commands

def network_of(args):
    if args.gbps is not None:
        alpha = "calibrated alpha" if args.alpha_us is None else f"alpha {args.alpha_us:g} us"
        return args.alpha_us, args.gbps, args.transport, f"{args.gbps:g} Gb/s ({args.transport}), {alpha}"
    net = NETWORKS[args.network]
    return net["alpha_us"], net["gbps"], net["transport"], net["label"]


def load_model(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die(f"--model {path}: {e}")


def predict(args):
    model = load_model(args.model)
    alpha_us, gbps, transport, label = network_of(args)
    m = with_network(model, alpha_us)
    sizes = layer_sizes(args.features, args.hidden, args.classes)
    rows = [predict_step(m, p, args.cores_per_node, gbps, sizes, args.batch_per_rank, args.path, transport=transport,
                         algorithm=args.algorithm) for p in args.ranks]
    print(f"{label}; nodes of {args.cores_per_node} cores; layers {'-'.join(map(str, sizes))}; "
          f"batch {args.batch_per_rank} per rank; {args.path} sum"
          + ("" if args.algorithm == "ompi" else f"; Open MPI forced to {args.algorithm}"))
    print(f"{'ranks':>6} {'nodes':>6} {'global batch':>12} {'compute ms':>10} {'sum ms':>8} {'step ms':>8} "
          f"{'samples/s':>12} {'efficiency':>10}  algorithm between nodes")
    for r in rows:
        print(f"{r['ranks']:>6} {r['nodes']:>6} {r['global_batch']:>12} {r['compute_ms']:>10.3f} {r['sum_ms']:>8.3f} "
              f"{r['step_ms']:>8.3f} {r['samples_per_sec']:>12.0f} {r['efficiency']:>10.3f}  {r['algorithm']}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) + ["network"])
            w.writeheader()
            for r in rows:
                w.writerow(dict(r, network=label))


def step(args):
    model = load_model(args.model)
    m = with_network(model, args.alpha_us)
    sizes = layer_sizes(args.features, args.hidden, args.classes)
    r = predict_step(m, args.ranks[0], args.cores_per_node, args.gbps, sizes, args.batch_per_rank, args.path,
                     None if args.compute_ms is None else args.compute_ms * 1e-3, args.transport, args.algorithm)
    print(json.dumps(r, separators=(",", ":")))


def plot(args):
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
    ax = axes[0][0]
    ranks = [2 ** k for k in range(0, 13)]
    for name, style in (("ib200", "-"), ("eth25", "--")):
        net = NETWORKS[name]
        m = with_network(model, net["alpha_us"])
        for cores, color in ((1, "tab:red"), (16, "tab:blue"), (64, "tab:green")):
            eff = [predict_step(m, p, cores, net["gbps"], sizes, args.batch_per_rank,
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
    ax.set_title(f"predicted, {'-'.join(map(str, sizes))}, batch {args.batch_per_rank}/rank", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.78))
    if measured:
        ax = axes[0][1]
        shaped = [r for r in measured if r.get("kind") == "shaped"]
        gbps = [float(r["gbps"]) for r in shaped]
        lo, hi = min(gbps) / 1.5, max(gbps) * 1.5
        xs = [lo * (hi / lo) ** (i / 60) for i in range(61)]
        compute = float(shaped[0]["compute_ms"])
        base = with_network(model, None)
        ys = [predict_step(base, 2, 1, x, sizes, args.batch_per_rank, compute_s=compute * 1e-3)["step_ms"]
              for x in xs]
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
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def rank_list(text):
    try:
        out = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rank counts: {text}")
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"rank counts must be >= 1: {text}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def shape_flags(p):
        p.add_argument("--features", type=int, default=784)
        p.add_argument("--hidden", default="512,256")
        p.add_argument("--classes", type=int, default=10)

    c = sub.add_parser("calibrate")
    c.add_argument("--allreduce", action="append", required=True, help="nn_allreduce_bench --csv file(s)")
    c.add_argument("--roofline", required=True, help="nn_roofline's output")
    c.add_argument("--profile", required=True, help="nn_dist --profile output at 1 rank")
    c.add_argument("--shared-path", default="nn-shared", help="nn_allreduce_bench path for the shared-memory fit")
    c.add_argument("--out", required=True)
    shape_flags(c)
    for name in ("predict", "step"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--network", choices=sorted(NETWORKS), default="ib200")
        p.add_argument("--alpha-us", type=float, default=None, help="per-message latency (us); with --gbps")
        p.add_argument("--gbps", type=float, default=None, help="link rate in Gbit/s (overrides --network)")
        p.add_argument("--transport", choices=["tcp", "rdma"], default="tcp", help="with --gbps")
        p.add_argument("--cores-per-node", type=int, default=1)
        p.add_argument("--ranks", type=rank_list, default=[64, 256, 1024, 4096])
        p.add_argument("--batch-per-rank", type=int, default=128)
        p.add_argument("--path", choices=["hierarchical", "ring"], default="hierarchical")
        p.add_argument("--algorithm", default="ompi",
                       choices=["ompi", "ring", "rabenseifner", "recursive_doubling", "nonoverlapping"],
                       help="between nodes: Open MPI 4.1's own pick (default), or one forced with "
                            "--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm N")
        p.add_argument("--csv")
        p.add_argument("--compute-ms", type=float, default=None, help="(step) measured compute per step instead")
        shape_flags(p)
    p = sub.add_parser("plot")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--measured")
    p.add_argument("--batch-per-rank", type=int, default=128)
    shape_flags(p)
    args = ap.parse_args()
    {"calibrate": calibrate, "predict": predict, "step": step, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
