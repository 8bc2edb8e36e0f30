"""One training step predicted: compute (the GEMMs at the calibrated rate, plus the rest of the step) and
the exposed gradient sum, on nn_dist's hierarchical path (overlapped with backprop, or after it)."""

import json
import math

from nn_perf.network import (TCP_PAYLOAD_SHARE, allreduce_traffic, inter_node_sum,
                             libnbc_iallreduce_algorithm)

STATS_BYTES = 8 * 8  # the step's loss/accuracy/control sums (StepStat), summed with the gradient


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


def link_costs(model, gbps, transport):
    """(beta_link, beta_cpu, duplex): seconds per byte on a gbps link, seconds per byte the CPU spends
    on it (TCP only; RDMA moves bytes without it), and the duplex factor (TCP takes turns)."""
    net = model["links"]["network"]
    beta_link = 8.0 / (gbps * 1e9 * TCP_PAYLOAD_SHARE) if gbps else 0.0
    beta_cpu = net["beta_s_per_byte"] if transport == "tcp" else 0.0
    duplex = net["duplex"] if transport == "tcp" else 1.0
    return beta_link, beta_cpu, duplex


def gradient_buckets(ready, bucket_bytes):
    """nn_dist's buckets: layers' gradients (ready time, bytes), last layer first, gathered until a
    bucket holds bucket_bytes; returns [(the bucket's ready time, its bytes)]."""
    bucket, bucket_ready = 0, 0.0
    buckets = []
    for t, b in ready:
        bucket += b
        bucket_ready = t
        if bucket >= bucket_bytes:
            buckets.append((bucket_ready, bucket))
            bucket = 0
    if bucket:
        buckets.append((bucket_ready, bucket))
    return buckets


def hierarchical_exposed(model, n, per_node, nodes, links, algorithm):
    """(seconds, the algorithm between nodes) of nn_dist's hierarchical sum of n bytes, which starts
    after backprop: shared memory inside the node, then MPI_Allreduce between nodes."""
    shm = model["links"]["shared"]
    net = model["links"]["network"]
    gamma = model["gamma_s_per_byte"]
    beta_link, beta_cpu, duplex = links
    # inside the node: every rank publishes, each sums its 1/C over the C ranks
    local = shm["alpha_s"] + shm["beta_s_per_byte"] * n if per_node > 1 else 0.0
    inter, alg = 0.0, "none"
    if nodes > 1:
        inter, alg = inter_node_sum(nodes, per_node, n / per_node, net["alpha_s"], beta_link, beta_cpu, gamma,
                                    duplex, algorithm)
        stats, _ = inter_node_sum(nodes, 1, STATS_BYTES, net["alpha_s"], beta_link, beta_cpu, 0.0, duplex,
                                  algorithm)
        inter += stats
    return local + inter, alg


def overlapped_exposed(model, per_node, nodes, sizes, batch, links, bucket_bytes, share):
    """(seconds, algorithm between nodes) of nn_dist's hierarchical sum left after backprop. The gradient
    goes in buckets (last layer first) as backprop finishes them; each rank sums its 1/C of a bucket over
    the node's C ranks in shared memory, then MPI_Iallreduce (libnbc) sums it between the nodes, C flows
    sharing each node's link, which carries both directions at once (measured: 2 emulated hosts at 300
    Mbit/s moved the allreduce's bytes at the link's one-way rate). Two costs: the CPU's (the shared-memory
    sum, and TCP's copies of each byte sent and received, duplex x beta_cpu), which no core can hide when
    every core computes (`share`: ranks per core), and the link's, which runs while backprop goes on:
    the buckets go out one after another, each once it is ready. Exposed: the larger of the two."""
    shm = model["links"]["shared"]
    net = model["links"]["network"]
    gamma = model["gamma_s_per_byte"]
    beta_link, beta_cpu, duplex = links
    backprop, ready = backward_profile(sizes, batch, model["compute"])
    cpu, finish, alg = 0.0, 0.0, "none"
    for t, b in gradient_buckets(ready, bucket_bytes):
        part = b / per_node
        work = shm["alpha_s"] + shm["beta_s_per_byte"] * b if per_node > 1 else 0.0
        wire = 0.0
        if nodes > 1:
            alg = libnbc_iallreduce_algorithm(nodes, part)
            steps, sent, reduced = allreduce_traffic(alg, nodes, part)
            work += duplex * beta_cpu * sent + gamma * reduced
            wire = steps * net["alpha_s"] + per_node * sent * beta_link
        cpu += work * share
        finish = max(finish, t) + wire
    stats = 0.0
    if nodes > 1:
        stats = allreduce_traffic("ring" if nodes < 4 else "binomial", nodes, STATS_BYTES)[0] * net["alpha_s"]
    return max(cpu, finish - backprop) + stats, alg


def predict_step(model, ranks, cores_per_node, gbps, sizes, batch, path="hierarchical", compute_s=None,
                 transport="tcp", algorithm="ompi", bucket_bytes=1 << 20, accumulate=1, machine_cores=0):
    """One step at `ranks` ranks, cores_per_node to a node, batch samples per rank (each of `accumulate`
    micro-batches: one sum per update): a dict of its times (ms), samples/s, efficiency against the same
    rank alone, and the algorithm between nodes. machine_cores: when every node is emulated on one machine
    of that many cores (hosts.sh), ranks beyond it share cores: compute and the sum's CPU work stretch by
    ranks / machine_cores. path: hierarchical (nn_dist's default, overlapped) or blocking (the hierarchical
    sum before it overlapped: Open MPI's MPI_Allreduce after backprop)."""
    params, _ = model_numbers(sizes)
    n = 4 * params  # float32 gradient bytes
    share = max(1.0, ranks / machine_cores) if machine_cores else 1.0
    compute = compute_s if compute_s is not None else compute_seconds(model["compute"], sizes, batch)
    compute *= share * accumulate
    per_node = min(ranks, cores_per_node)
    nodes = math.ceil(ranks / per_node)
    links = link_costs(model, gbps, transport)
    alg = "none"
    if ranks == 1:
        exposed = 0.0
    elif path == "blocking":
        exposed, alg = hierarchical_exposed(model, n, per_node, nodes, links, algorithm)
    else:
        exposed, alg = overlapped_exposed(model, per_node, nodes, sizes, batch, links, bucket_bytes, share)
    step = compute + exposed
    samples = ranks * batch * accumulate
    return {
        "ranks": ranks, "nodes": nodes, "ranks_per_node": per_node, "batch_per_rank": batch,
        "accumulate_steps": accumulate, "global_batch": samples, "compute_ms": compute * 1e3,
        "sum_ms": exposed * 1e3, "step_ms": step * 1e3, "samples_per_sec": samples / step,
        "efficiency": compute / step, "algorithm": alg,
        "gradient_bytes": n,
    }


def with_network(model, alpha_us):
    """The model with the network's alpha replaced (the CPU side's per-byte cost stays as calibrated)."""
    m = json.loads(json.dumps(model))
    if alpha_us is not None:
        m["links"]["network"]["alpha_s"] = alpha_us * 1e-6
    return m
