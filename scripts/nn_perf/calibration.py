"""The model fitted to this machine: the GEMM rate (nn_roofline), the rest of a 1-rank step (nn_dist
--profile), and alpha-beta fits of summing a buffer (nn_allreduce_bench: shared memory, 2 nodes)."""

import csv
import json
import os

from nn_perf import ModelError
from nn_perf.model import layer_sizes, model_numbers
from nn_perf.network import algorithm_cost, ompi_allreduce_algorithm


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


def calibrate_compute(args):
    """The compute side, from nn_roofline's products and a 1-rank nn_dist --profile step at the same
    batch: (the model's "compute" entry, the step's other seconds, its update's seconds)."""
    roof = [r for r in json_lines(args.roofline, "ROOFLINE_JSON") if r.get("products") == "nn_dist"]
    prof = json_lines(args.profile, "BENCH_JSON")
    if not roof:
        raise ModelError(f"{args.roofline}: no ROOFLINE_JSON line for nn_dist's products")
    if not prof:
        raise ModelError(f"{args.profile}: no BENCH_JSON line (run nn_dist with --profile)")
    roof, prof = roof[-1], prof[-1]
    if prof["ranks"] != 1:
        raise ModelError(f"{args.profile}: calibrate compute from a 1-rank run (this one had {prof['ranks']})")
    sizes = layer_sizes(args.features, args.hidden, args.classes)
    params, flops = model_numbers(sizes)
    batch = prof["batch_per_rank"]
    if roof["batch"] != batch:
        raise ModelError(f"nn_roofline ran at batch {roof['batch']}, nn_dist at {batch}: use the same")
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
    return compute, other_s, update_s


def fit_path(rows, path, nodes, what):
    """The alpha-beta fit of one nn_allreduce_bench path at 2 ranks on `nodes` node(s): ((a, b), points)."""
    pts = [(float(r["bytes"]), float(r["time_us_median"]) * 1e-6) for r in rows
           if r["path"] == path and int(r["nodes"]) == nodes and int(r["ranks"]) == 2]
    try:
        return fit_alpha_beta(pts), pts
    except ValueError as e:
        raise ModelError(f"{what}: nn_allreduce_bench rows of path '{path}' at 2 ranks on {nodes} node(s): {e}") \
            from None


def calibrate_links(rows, shared_path):
    """The links, from nn_allreduce_bench rows: (the model's "links" entry, gamma: the memory's seconds
    per byte summed)."""
    (a_s, b_s), shm_pts = fit_path(rows, shared_path, 1, "shared memory")
    (a_n, b_n), net_pts = fit_path(rows, "mpi", 2, "network")
    (_, b_relay), _ = fit_path(rows, "p2p-relay", 2, "network, one way and back")
    (_, b_exchange), _ = fit_path(rows, "p2p-exchange", 2, "network, both ways at once")
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
    links = {
        "shared": {"alpha_s": a_s, "beta_s_per_byte": b_s, "fit_points": len(shm_pts), "path": shared_path},
        "network": {"alpha_s": alpha_net, "beta_s_per_byte": beta_net, "duplex": duplex,
                    "fit_points": len(net_pts), "allreduce_a_s": a_n, "allreduce_b_s_per_byte": b_n,
                    "relay_b_s_per_byte": b_relay, "exchange_b_s_per_byte": b_exchange, "algorithm_at_2": alg,
                    "modelled_allreduce_b_s_per_byte": check_b},
    }
    return links, gamma


def print_calibration(model, other_s, update_s, out):
    compute, shm, net = model["compute"], model["links"]["shared"], model["links"]["network"]
    gamma = model["gamma_s_per_byte"]
    print(f"compute: GEMM {compute['gemm_gflops']:.1f} GFLOP/s, other {other_s * 1e3:.3f} ms + update "
          f"{update_s * 1e3:.3f} ms per step at batch {compute['batch']} "
          f"(step {compute['calibration_step_ms']:.3f} ms)")
    print(f"shared memory (2 ranks): {shm['alpha_s'] * 1e6:.1f} us + {shm['beta_s_per_byte'] * 1e9:.3f} ns/byte")
    print(f"network, 2 nodes: one way {net['beta_s_per_byte'] * 1e9:.3f} ns/byte; both ways at once "
          f"{net['duplex']:.2f}x as long (duplex factor); alpha {net['alpha_s'] * 1e6:.1f} us per message step; "
          f"gamma {gamma * 1e9:.3f} ns/byte")
    print(f"  MPI_Allreduce ({net['algorithm_at_2']} at 2 ranks) measured {net['allreduce_a_s'] * 1e6:.1f} us + "
          f"{net['allreduce_b_s_per_byte'] * 1e9:.3f} ns/byte; the model from the point-to-point numbers: "
          f"{net['modelled_allreduce_b_s_per_byte'] * 1e9:.3f} ns/byte")
    print(f"wrote {out}")


def calibrate(args):
    """perf_model.py calibrate: the model of this machine, written to args.out as JSON."""
    rows = read_bench_csv(args.allreduce)
    compute, other_s, update_s = calibrate_compute(args)
    links, gamma = calibrate_links(rows, args.shared_path)
    model = {
        "compute": compute,
        "links": links,
        "gamma_s_per_byte": gamma,
        "sources": {"allreduce": [os.path.basename(a) for a in args.allreduce],
                    "roofline": os.path.basename(args.roofline), "profile": os.path.basename(args.profile)},
    }
    with open(args.out, "w") as f:
        json.dump(model, f, indent=1)
    print_calibration(model, other_s, update_s, args.out)
