"""perf_model.py predict and step: the model read, the network chosen, the predictions printed (a table,
or one JSON line)."""

import csv
import json

from nn_perf import ModelError
from nn_perf.model import layer_sizes, predict_step, with_network
from nn_perf.network import NETWORKS


def network_of(args):
    """(alpha in us or None for the calibrated one, Gbit/s, transport, label) of --network or --gbps."""
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
        raise ModelError(f"--model {path}: {e}") from None


def predict(args):
    """perf_model.py predict: a table of predicted steps at each rank count (and --csv)."""
    model = load_model(args.model)
    alpha_us, gbps, transport, label = network_of(args)
    m = with_network(model, alpha_us)
    sizes = layer_sizes(args.features, args.hidden, args.classes)
    rows = [predict_step(m, p, args.cores_per_node, gbps, sizes, args.batch_per_rank, args.path, transport=transport,
                         algorithm=args.algorithm, accumulate=args.accumulate_steps) for p in args.ranks]
    print(f"{label}; nodes of {args.cores_per_node} cores; layers {'-'.join(map(str, sizes))}; "
          f"batch {args.batch_per_rank} per rank" + (f" x {args.accumulate_steps} accumulated"
                                                     if args.accumulate_steps > 1 else "") + f"; {args.path} sum"
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
    """perf_model.py step: one prediction as a JSON line (scripts/validate_model.sh)."""
    model = load_model(args.model)
    m = with_network(model, args.alpha_us)
    sizes = layer_sizes(args.features, args.hidden, args.classes)
    r = predict_step(m, args.ranks[0], args.cores_per_node, args.gbps, sizes, args.batch_per_rank, args.path,
                     None if args.compute_ms is None else args.compute_ms * 1e-3, args.transport, args.algorithm,
                     accumulate=args.accumulate_steps, machine_cores=args.machine_cores)
    print(json.dumps(r, separators=(",", ":")))
