"""The sweep's command line: scale.py's own flags checked, nn_dist's (after --) vetted, and the rank
counts, batches, launcher, cores and nn_dist binary they imply."""

import argparse
import os
import shutil
import sys
import time

from nn_scale import UsageError

# The checkout (scripts/..), or the installed share/nn_dist (scripts/..): where nn_dist is looked for.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BATCH = 32  # nn_dist's --batch-size default
DEFAULT_BLOCK = 32  # nn_dist's --block-size default (rows per block of --reproducible)


def int_list(text, flag):
    try:
        values = [int(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} {text!r}: expected numbers of at least 1")
    return values


def take_flag(args, flag):
    """Removes `flag VALUE` / `flag=VALUE` from args (nn_dist's options); returns the last value or None."""
    value, rest, i = None, [], 0
    while i < len(args):
        if args[i] == flag and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif args[i].startswith(flag + "="):
            value, i = args[i][len(flag) + 1:], i + 1
        else:
            rest.append(args[i])
            i += 1
    args[:] = rest
    return value


def has_flag(args, flag):
    return any(a == flag or a.startswith(flag + "=") for a in args)


def block_size(args):
    """nn_dist's --block-size among args (left in place), or its default."""
    text = take_flag(list(args), "--block-size")
    if text is None:
        return DEFAULT_BLOCK
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--block-size {text!r} after --: expected a whole number of at least 1")
    return int(text)


def check_reproducible_batches(a):
    """--reproducible: every rank takes whole blocks of each global batch, so nn_dist refuses a run whose
    global batch is not a multiple of --block-size x ranks; refused here before the first run instead."""
    m = a.block_size
    for g in a.global_batches:
        bad = [r for r in a.ranks_list if g % (m * r)]
        if bad:
            raise UsageError(f"--global-batch {g} with --reproducible: not a multiple of --block-size {m} x ranks "
                             f"(" + ", ".join(f"{m} x {r} = {m * r}" for r in bad) + ")")
    bad = [b for b in a.batches_per_rank if b % m]  # weak
    if bad:
        raise UsageError(f"--batch-per-rank {', '.join(map(str, bad))} with --reproducible: not a multiple of "
                         f"--block-size {m} (every rank takes whole blocks)")


def slurm_cores():
    return int(os.environ.get("SLURM_NTASKS", "1")) * int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))


def local_cores():
    return len(os.sched_getaffinity(0))  # what nproc prints


def find_nn_dist(given):
    # The checkout's build, or the bin/ of the prefix this script is installed in (share/nn_dist/scripts).
    candidates = [given] if given else [os.environ.get("NN_DIST"), os.path.join(ROOT, "build", "nn_dist"),
                                        os.path.join(ROOT, "..", "..", "bin", "nn_dist"), shutil.which("nn_dist")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    if given:
        raise UsageError(f"--nn-dist {given}: not an executable file")
    raise UsageError("nn_dist not found: give --nn-dist PATH, set NN_DIST, build it (build/nn_dist) "
                     "or put it on PATH")


def parse_sweep_args(argv, doc):
    """scale.py's own flags, and nn_dist's after -- (a.nn_args); doc is scale.py's usage, printed by --help."""
    if "--" in argv:
        cut = argv.index("--")
        own, passthrough = argv[:cut], argv[cut + 1:]
    else:
        own, passthrough = argv, []
    p = argparse.ArgumentParser(prog="scale.py", usage=doc.split("\n\n")[1], add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--mode", default="weak")
    p.add_argument("--ranks")
    p.add_argument("--global-batch")
    p.add_argument("--batch-per-rank")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--target-accuracy", type=float)
    p.add_argument("--out")
    p.add_argument("--launcher", default="auto", choices=["auto", "mpirun", "srun"])
    p.add_argument("--launcher-args", default="")
    p.add_argument("--nn-dist")
    p.add_argument("--run-timeout", type=float)
    p.add_argument("--no-plots", action="store_true")
    a = p.parse_args(own)
    if a.help:
        print(doc)
        sys.exit(0)
    a.nn_args = list(passthrough)
    return a


def validate(a):
    modes = [m for m in a.mode.split(",") if m]
    if not modes or any(m not in ("strong", "weak") for m in modes):
        raise UsageError(f"--mode {a.mode!r}: expected strong, weak or strong,weak")
    if a.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if a.target_accuracy is not None and not 0 < a.target_accuracy <= 1:
        raise UsageError("--target-accuracy is a fraction in (0, 1]")
    for flag, why in (("--metrics", "scale.py writes one per run"), ("--resume", "every run must start fresh"),
                      ("--threads", "run more ranks instead")):
        if has_flag(a.nn_args, flag):
            raise UsageError(f"{flag} after --: {why}")
    nn_batch = take_flag(a.nn_args, "--batch-size")
    nn_global = take_flag(a.nn_args, "--global-batch-size")
    if nn_batch and "weak" not in modes:
        raise UsageError("--batch-size after --: strong scaling sets each run's batch per rank "
                         "to --global-batch / ranks")
    if nn_global and "strong" not in modes:
        raise UsageError("--global-batch-size after --: weak scaling keeps the batch per rank (--batch-per-rank)")
    a.launcher = a.launcher if a.launcher != "auto" else ("srun" if os.environ.get("SLURM_JOB_ID") else "mpirun")
    a.cores = slurm_cores() if a.launcher == "srun" else local_cores()
    tasks = int(os.environ.get("SLURM_NTASKS", "0"))
    if a.ranks:
        a.ranks_list = int_list(a.ranks, "--ranks")
    else:  # 1, 2, 4, ... up to the cores here or the allocation's tasks
        top = tasks if a.launcher == "srun" else a.cores
        a.ranks_list = [1 << k for k in range(max(top, 1).bit_length())]
    if a.launcher == "srun" and tasks and max(a.ranks_list) > tasks:
        raise UsageError(f"--ranks {max(a.ranks_list)} is more than the allocation's {tasks} tasks")
    a.global_batches = []
    if "strong" in modes:
        if not (a.global_batch or nn_global):
            raise UsageError("--mode strong needs --global-batch G (the samples per step over all ranks)")
        a.global_batches = int_list(a.global_batch or nn_global, "--global-batch")
        for g in a.global_batches:
            bad = [r for r in a.ranks_list if g % r]
            if bad:
                raise UsageError(f"--global-batch {g} is not divisible by {', '.join(map(str, bad))} rank(s): "
                                 f"strong scaling keeps the global batch, so every rank count must divide it")
    a.batches_per_rank = int_list(a.batch_per_rank or nn_batch or str(DEFAULT_BATCH), "--batch-per-rank") \
        if "weak" in modes else []
    a.reproducible = has_flag(a.nn_args, "--reproducible")
    if a.reproducible:
        a.block_size = block_size(a.nn_args)
        check_reproducible_batches(a)
    a.modes = modes
    a.nn_dist = find_nn_dist(a.nn_dist)
    if not a.out:
        a.out = "scale-" + (os.environ.get("SLURM_JOB_ID") or time.strftime("%Y%m%d-%H%M%S"))
    if os.path.exists(os.path.join(a.out, "runs.csv")):
        raise UsageError(f"{a.out}/runs.csv exists: pick another --out (or remove it)")
    return a
