"""The network side of the performance model: the networks the README quotes, Open MPI 4.1's choice of
allreduce algorithm, each algorithm's alpha-beta-gamma cost, and concurrent allreduces sharing a node's
link."""

import math


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


def libnbc_iallreduce_algorithm(p, nbytes, type_size=4):
    """The algorithm Open MPI 4.1's libnbc runs for nn_dist's MPI_Iallreduce of `nbytes` (not in place,
    a commutative op) on `p` ranks: the ring below 4 (nn_dist asks for it there; libnbc's own pick would
    be a binomial tree), else the binomial tree under 64 KiB, Rabenseifner's reduce-scatter and allgather
    when the count reaches the largest power of two <= p, else the ring (nbc_iallreduce.c)."""
    if p < 2:
        return "none"
    if p < 4:
        return "ring"
    count = max(1, int(nbytes) // type_size)
    if nbytes < 65536:
        return "binomial"
    pof2 = 1 << (p.bit_length() - 1)
    return "rabenseifner" if count >= pof2 else "ring"


def allreduce_traffic(alg, p, n):
    """(message steps, bytes one rank sends, bytes it reduces) of one allreduce of n bytes on p ranks; the
    busiest rank's (a binomial tree's root sends to and receives from log2(p) children, twice)."""
    if p <= 1 or n <= 0:
        return 0, 0.0, 0.0
    pof2 = 1 << (p.bit_length() - 1)
    extra = 0 if pof2 == p else 1
    k = int(math.log2(pof2))
    if alg == "ring":
        return 2 * (p - 1), 2 * (p - 1) / p * n, (p - 1) / p * n
    if alg == "rabenseifner":
        return 2 * k + 3 * extra, 2 * (pof2 - 1) / pof2 * n + 2 * extra * n, (pof2 - 1) / pof2 * n + extra * n / 2
    if alg == "binomial":
        steps = math.ceil(math.log2(p))
        return 2 * steps, steps * n, steps * n
    raise ValueError(f"unknown algorithm {alg}")
