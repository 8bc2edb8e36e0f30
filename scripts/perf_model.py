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
                        [--hidden 512,256] [--features 784] [--classes 10] [--path hierarchical|blocking]
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
that communicator size and message size, each an alpha-beta-gamma cost. By
default its buckets go out as backprop finishes them (MPI_Iallreduce, libnbc's
algorithm); --path blocking models the same sum after backprop (MPI_Allreduce):
nothing overlaps.
"""
import argparse
import os
import sys

# The parts live in nn_perf/ beside this file: scripts/ in a checkout, share/nn_dist/scripts/ installed.
# tests/perf_model_test.py imports this file as the module perf_model: the model's functions are
# re-exported here for it.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nn_perf import ModelError  # noqa: E402
from nn_perf.calibration import calibrate, fit_alpha_beta  # noqa: E402
from nn_perf.commands import predict, step  # noqa: E402
from nn_perf.model import layer_sizes, model_numbers, predict_step, with_network  # noqa: E402
from nn_perf.network import (NETWORKS, TCP_PAYLOAD_SHARE, algorithm_cost, allreduce_traffic,  # noqa: E402
                             inter_node_sum, libnbc_iallreduce_algorithm, ompi_allreduce_algorithm)
from nn_perf.plot import plot  # noqa: E402

__all__ = ["NETWORKS", "TCP_PAYLOAD_SHARE", "algorithm_cost", "allreduce_traffic", "libnbc_iallreduce_algorithm", "calibrate", "fit_alpha_beta", "inter_node_sum", "layer_sizes",
           "model_numbers", "ompi_allreduce_algorithm", "plot", "predict", "predict_step", "step", "with_network"]


def rank_list(text):
    try:
        out = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rank counts: {text}")
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"rank counts must be >= 1: {text}")
    return out


def parser():
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
        p.add_argument("--path", choices=["hierarchical", "blocking"], default="hierarchical",
                       help="hierarchical: nn_dist's default, overlapped with backprop; blocking: the same sum "
                            "after backprop (MPI_Allreduce, as before it overlapped)")
        p.add_argument("--accumulate-steps", type=int, default=1, help="micro-batches per update (one sum each)")
        p.add_argument("--machine-cores", type=int, default=0,
                       help="(step) every node emulated on one machine of this many cores: ranks share them")
        p.add_argument("--algorithm", default="ompi",
                       choices=["ompi", "ring", "rabenseifner", "recursive_doubling", "nonoverlapping"],
                       help="between nodes: Open MPI 4.1's own pick (default), or one forced with "
                            "--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm N")
        p.add_argument("--csv")
        p.add_argument("--compute-ms", type=float, default=None,
                       help="(step) measured compute of a micro-batch, on a core of its own, instead")
        shape_flags(p)
    p = sub.add_parser("plot")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--measured")
    p.add_argument("--batch-per-rank", type=int, default=128)
    shape_flags(p)
    return ap


def main():
    args = parser().parse_args()
    try:
        {"calibrate": calibrate, "predict": predict, "step": step, "plot": plot}[args.command](args)
    except ModelError as e:
        print(f"perf_model.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
