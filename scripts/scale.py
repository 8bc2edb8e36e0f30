#!/usr/bin/python3
"""Scaling experiments: the same nn_dist training at several rank counts, every
epoch of every run in one CSV, and plots drawn from it.

  scripts/scale.py [options] -- NN_DIST_OPTIONS...
  scripts/scale.py plot DIR [--target-accuracy A]

  --mode strong|weak|strong,weak   strong: a fixed global batch, split over the
                      ranks (--global-batch, which every rank count must divide);
                      weak: a fixed batch per rank (--batch-per-rank). Default weak.
  --ranks 1,2,4       rank counts, run in this order (default: 1, 2, 4, ... up to
                      the cores here, or up to the tasks of the SLURM allocation)
  --global-batch G,.. strong: one curve per global batch (a global-batch sweep
                      at fixed ranks is --mode strong --ranks 2 --global-batch 64,128,256)
  --batch-per-rank B,.. weak: one curve per batch per rank (default: the
                      --batch-size after --, else nn_dist's default, 32)
  --repeats N         runs of each point (default 1); plots show the median
                      and min-max; the repeats are interleaved in time
  --target-accuracy A time to reach validation accuracy A (training accuracy
                      when there is no validation set), per rank count
  --out DIR           results (default scale-<SLURM job id>, else scale-<date-time>)
  --launcher auto|mpirun|srun   auto: srun inside a SLURM allocation
                      (SLURM_JOB_ID set), else mpirun
  --launcher-args "..."  extra launcher flags, e.g. "--map-by ppr:2:node"
  --nn-dist PATH      the binary (default: $NN_DIST, else build/nn_dist of
                      this checkout, else the installed one beside this
                      script, else nn_dist on PATH)
  --run-timeout S     stop a run after S seconds (recorded as exit code 124)
  --no-plots          only runs.csv (plot later with `scale.py plot DIR`)

Everything after -- goes to every run of nn_dist; scale.py adds
--global-batch-size (strong) or --batch-size (weak), --profile and --metrics.
An nn_dist --batch-size there is taken as the weak batch per rank,
--global-batch-size as the strong global batch. With --reproducible there,
every global batch must be a multiple of --block-size x ranks (checked before
the first run), and the final losses of a strong curve are the same at every
rank count: the summary says whether they are.

Writes DIR/runs.csv (one row per run and epoch; columns in COLUMNS of
nn_scale/runs_csv.py), DIR/runs/NNN-*.log and *.metrics.csv (each run's
output and metrics),
DIR/sweep.json (the machine, the command), then DIR/summary.csv (medians
per curve and rank count), DIR/final_loss.csv (each run's last train_loss and
val_loss as nn_dist wrote them, and whether they agree within the curve) and
the plots: throughput.png, efficiency.png,
breakdown.png, loss.png, time_to_accuracy.png. A failed run is recorded with
its exit code and log and the sweep goes on; the exit code is then 1.
Local runs use mpirun with the flags of scripts/common.sh; runs with more ranks
than cores are oversubscribed, and their timings mean nothing.
"""

import argparse
import os
import sys

# The parts live in nn_scale/ beside this file: scripts/ in a checkout, share/nn_dist/scripts/ installed.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nn_scale import UsageError, say  # noqa: E402
from nn_scale.report import plot_dir  # noqa: E402
from nn_scale.sweep import sweep  # noqa: E402


def main(argv):
    try:
        if argv[:1] == ["plot"]:
            p = argparse.ArgumentParser(prog="scale.py plot", description="summary.csv and the plots from DIR/runs.csv")
            p.add_argument("dir")
            p.add_argument("--target-accuracy", type=float)
            a = p.parse_args(argv[1:])
            return plot_dir(a.dir, a.target_accuracy)
        return sweep(argv, __doc__)
    except UsageError as e:
        say("error: " + str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
