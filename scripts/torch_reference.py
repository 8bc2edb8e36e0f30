#!/usr/bin/python3
"""PyTorch reference for nn_dist: the same MLP, data order scheme and timing.

Trains d -> hidden widths -> K with CrossEntropyLoss (mean) and torch.optim.SGD (or Adam, AdamW),
shuffling each rank's contiguous shard every epoch with torch.randperm and
gathering each minibatch by index into preallocated tensors
(torch.index_select(..., out=...)), so data loading costs what nn_dist's does.
--dropout and --clip-grad-norm as nn_dist's: nn.Dropout after each hidden
activation, torch.nn.utils.clip_grad_norm_ before each update. --precision bf16:
forward and loss under torch.autocast("cpu", dtype=torch.bfloat16), the standard
mixed-precision recipe (parameters, gradients and update stay float32).

Timing follows nn_dist --profile: a step runs from the batch gather to the end
of the optimizer update; the first --warmup-steps steps are left out; the
samples of all ranks are counted, divided by rank 0's summed step time. At the
end it prints one line

  BENCH_JSON {"ranks":..,"threads":..,"batch_per_rank":..,"samples_per_sec":..,"step_ms":..,...}

Single process:
  /usr/bin/python3 scripts/torch_reference.py --data train.h5 --hidden 512,256 \
      --batch-size 128 --epochs 1 --max-steps 300 --warmup-steps 50
Data parallel (DistributedDataParallel, gloo, one process per rank, spawned here):
  /usr/bin/python3 scripts/torch_reference.py --ddp --world-size 2 ...
or each rank launched by a driver (MASTER_ADDR=127.0.0.1, --master-port or MASTER_PORT):
  /usr/bin/python3 scripts/torch_reference.py --ddp --world-size 2 --rank 0 ... &
  /usr/bin/python3 scripts/torch_reference.py --ddp --world-size 2 --rank 1 ...
--check: print the training loss as it goes and exit 1 unless it decreased.
"""

import argparse
import contextlib
import json
import math
import os
import socket
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="training set, HDF5 with X (n x d float) and y (n labels)")
    p.add_argument("--x-dataset", default="X")
    p.add_argument("--y-dataset", default="y")
    p.add_argument("--hidden", default="128,64", help="hidden widths, e.g. 512,256; 'none' for none")
    p.add_argument("--activation", default="relu",
                   choices=["relu", "tanh", "sigmoid", "identity", "gelu", "gelu_tanh", "silu", "leaky_relu"])
    p.add_argument("--leaky-slope", type=float, default=0.01, help="leaky_relu's negative_slope")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--loss", default="softmax", choices=["softmax", "auto"],
                   help="only softmax cross-entropy (accepted for nn_dist compatibility)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                   help="bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16)")
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", default="0", help="nn.Dropout after each hidden activation: one rate, or one per layer")
    p.add_argument("--clip-grad-norm", type=float, default=0.0,
                   help="torch.nn.utils.clip_grad_norm_ before each update (0: off)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per rank per step")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--warmup-steps", type=int, default=10, help="steps left out of the timings")
    p.add_argument("--threads", type=int, default=1, help="threads per process (torch and OpenBLAS)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--init", default="nn_dist", choices=["nn_dist", "torch"],
                   help="nn_dist: He-normal (relu-like) / Glorot-uniform weights, zero biases; torch: torch defaults")
    p.add_argument("--ddp", action="store_true", help="DistributedDataParallel over --world-size processes")
    p.add_argument("--world-size", type=int, default=2, help="processes with --ddp")
    p.add_argument("--rank", type=int, default=-1, help="this process's rank when a driver launches each rank")
    p.add_argument("--master-port", type=int, default=0, help="gloo rendezvous port (0: MASTER_PORT or a free port)")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket_cap_mb (DDP's default 25)")
    p.add_argument("--bind-to-core", action="store_true", help="pin rank r to CPU r %% ncpus (like mpirun --bind-to core)")
    p.add_argument("--check", action="store_true", help="print the loss while training; exit 1 unless it decreases")
    p.add_argument("--log-every", type=int, default=0, help="--check: steps between loss lines (0: ~10 per epoch)")
    p.add_argument("--profile", action="store_true", help="accepted for nn_dist compatibility (BENCH_JSON is always printed)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    a = p.parse_args(argv)
    if a.batch_size < 1 or a.threads < 1 or a.world_size < 1 or a.epochs < 0 or a.max_steps < 0 or a.warmup_steps < 0:
        p.error("--batch-size, --threads, --world-size must be >= 1; --epochs, --max-steps, --warmup-steps >= 0")
    if a.rank >= 0 and not a.ddp:
        p.error("--rank needs --ddp")
    if a.rank >= a.world_size:
        p.error("--rank must be below --world-size")
    h = a.hidden.strip().lower()
    a.hidden_sizes = [] if h in ("", "none") else [int(w) for w in h.split(",")]
    rates = [float(r) for r in a.dropout.split(",")]
    if len(rates) not in (1, len(a.hidden_sizes)) and a.hidden_sizes:
        p.error("--dropout: give one rate, or one per hidden layer")
    a.dropout_rates = rates * len(a.hidden_sizes) if len(rates) == 1 else rates
    return a


def set_thread_env(threads):
    # Must happen before torch (and with it OpenBLAS and OpenMP) is loaded;
    # torch.set_num_threads does not reach OpenBLAS's own thread pool.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def shard_range(n, p, r):
    """nn_dist's split: the first n % p ranks get one sample more."""
    base, extra = divmod(n, p)
    return r * base + min(r, extra), base + (1 if r < extra else 0)


def openblas_info(threads):
    """(core name, config) of the OpenBLAS that torch loaded; also sets its thread count."""
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_set_num_threads(threads)
        return lib.openblas_get_corename().decode(), lib.openblas_get_config().decode()
    except (OSError, AttributeError):
        return "unknown", "unknown"


def build_model(torch, d, hidden, k, activation, init, dropout=(), leaky_slope=0.01):
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity, "gelu": nn.GELU,
            "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "silu": nn.SiLU,
            "leaky_relu": lambda: nn.LeakyReLU(leaky_slope)}
    layers, width = [], d
    for i, h in enumerate(hidden):
        layers += [nn.Linear(width, h), acts[activation]()]
        if dropout and dropout[i] > 0:
            layers.append(nn.Dropout(dropout[i]))
        width = h
    layers.append(nn.Linear(width, k))
    model = nn.Sequential(*layers)
    if init == "nn_dist":
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    if activation in ("relu", "leaky_relu", "gelu", "gelu_tanh", "silu"):  # as nn_dist
                        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_features))
                    else:
                        nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
    return model


def start_process(rank, world, args, port):
    """This process's threads, its core (--bind-to-core) and, with --ddp, its process group; returns the
    OpenBLAS core name. Before torch (and numpy, h5py) are first imported."""
    set_thread_env(args.threads)
    if args.bind_to_core and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[rank % len(cpus)]})
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    blas_core, _ = openblas_info(args.threads)
    if args.ddp:
        import torch.distributed as dist
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    return blas_core


class Shard:
    """This rank's contiguous shard of the training set (all of it in one process): x (count, d) float32,
    y (count,) int64 labels, n_total samples in the set, k classes."""

    def __init__(self, args, world, rank):
        import h5py
        import numpy as np
        import torch
        with h5py.File(args.data, "r") as f:
            xd, yd = f[args.x_dataset], f[args.y_dataset]
            self.n_total, self.d = xd.shape
            offset, self.count = shard_range(self.n_total, world, rank)
            self.x = torch.from_numpy(np.ascontiguousarray(xd[offset:offset + self.count], dtype=np.float32))
            self.y = torch.from_numpy(np.asarray(yd[offset:offset + self.count]).reshape(-1).astype(np.int64))
            # Every rank needs the class count; read all labels (small).
            self.k = int(np.asarray(yd[:]).max()) + 1


def make_model(args, d, k):
    """The MLP from --seed (with --ddp wrapped in DistributedDataParallel, which broadcasts rank 0's
    parameters) and its optimizer."""
    import torch
    torch.manual_seed(args.seed)
    model = build_model(torch, d, args.hidden_sizes, k, args.activation, args.init, args.dropout_rates,
                        args.leaky_slope)
    if args.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, bucket_cap_mb=args.bucket_mb)  # broadcasts rank 0's parameters
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        kind = torch.optim.Adam if args.optimizer == "adam" else torch.optim.AdamW
        opt = kind(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return model, opt


class StepTimes:
    """Seconds of each phase summed over the steps after --warmup-steps, and their samples over all ranks."""

    def __init__(self):
        self.data = self.forward = self.backward = self.optimizer = self.total = 0.0
        self.steps = 0
        self.samples = 0

    def add(self, t0, t1, t2, t3, t4, global_n):
        self.data += t1 - t0
        self.forward += t2 - t1
        self.backward += t3 - t2
        self.optimizer += t4 - t3
        self.total += t4 - t0
        self.steps += 1
        self.samples += global_n


class Training:
    """One rank's training: every rank takes the largest shard's steps per epoch, gathers each minibatch
    by index into preallocated tensors, and times the step as nn_dist --profile does."""

    def __init__(self, args, rank, world, shard, model, opt):
        import torch
        import torch.nn.functional as F
        self.torch, self.F = torch, F
        if args.ddp:
            import torch.distributed as dist
            self.dist = dist
        self.args, self.rank, self.world, self.shard, self.model, self.opt = args, rank, world, shard, model, opt
        self.root = rank == 0
        B = self.B = args.batch_size
        self.shard_counts = [shard_range(shard.n_total, world, r)[1] for r in range(world)]
        self.steps_per_epoch = max(1, -(-max(self.shard_counts) // B))  # every rank takes the largest shard's steps
        self.xbuf = torch.empty(B, shard.d, dtype=torch.float32)
        self.ybuf = torch.empty(B, dtype=torch.int64)
        self.gen = torch.Generator()
        # f32 runs the same code under a context that does nothing.
        self.autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16"
                         else contextlib.nullcontext)
        self.log_every = args.log_every or max(1, self.steps_per_epoch // 10)
        self.times = StepTimes()
        self.global_step = 0
        self.first_losses, self.last_losses = [], []
        self.epoch_loss = float("nan")

    def size_of(self, c, step):
        return min(max(c - step * self.B, 0), self.B)

    def train(self):
        for epoch in range(self.args.epochs):
            if not self.epoch(epoch):
                break

    def epoch(self, epoch):
        """One epoch, and its line; returns False when training ends (--max-steps, or no samples left)."""
        torch, args = self.torch, self.args
        self.gen.manual_seed(args.seed * 1000003 + epoch * 1009 + self.rank)
        perm = torch.randperm(self.shard.count, generator=self.gen)
        self.loss_sum = torch.zeros((), dtype=torch.float64)
        self.correct = torch.zeros((), dtype=torch.int64)
        epoch_samples, done = 0, False
        t_epoch = time.perf_counter()
        for step in range(self.steps_per_epoch):
            if args.max_steps and self.global_step >= args.max_steps:
                done = True
                break
            epoch_samples += self.step(epoch, step, perm)
        seconds = time.perf_counter() - t_epoch
        if epoch_samples == 0:
            return False
        self.end_epoch(epoch, epoch_samples, seconds)
        return not done

    def step(self, epoch, step, perm):
        """One step: gather, forward, backward (with --ddp: the gradient allreduce), update; returns its
        samples over all ranks."""
        args, B, n = self.args, self.B, self.size_of(self.shard.count, step)
        global_n = sum(self.size_of(c, step) for c in self.shard_counts)
        t0 = time.perf_counter()
        idx = perm[step * B:step * B + n]
        xb, yb = self.xbuf[:n], self.ybuf[:n]
        self.torch.index_select(self.shard.x, 0, idx, out=xb)
        self.torch.index_select(self.shard.y, 0, idx, out=yb)
        t1 = time.perf_counter()
        with self.autocast():
            out = self.model(xb)
            if n > 0:
                loss = self.F.cross_entropy(out, yb)  # mean over this rank's batch
                if n * self.world != global_n:  # uneven batches: weight so the DDP average is the global mean
                    loss = loss * (n * self.world / global_n)
            else:
                loss = out.sum() * 0.0
        if n > 0:  # loss and accuracy sums, as nn_dist's forward pass computes them
            with self.torch.no_grad():
                self.loss_sum += loss.detach().double() * (global_n / self.world)
                self.correct += (out.detach().argmax(1) == yb).sum()
        t2 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # with DDP: includes the gradient allreduce
        t3 = time.perf_counter()
        if args.clip_grad_norm > 0:
            self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.clip_grad_norm)
        self.opt.step()
        t4 = time.perf_counter()
        self.global_step += 1
        if self.global_step > args.warmup_steps:
            self.times.add(t0, t1, t2, t3, t4, global_n)
        if args.check:
            self.watch_loss(loss, global_n, epoch, step)
        return global_n

    def watch_loss(self, loss, global_n, epoch, step):
        """--check: the step's loss over all ranks, kept for the verdict and printed every --log-every steps."""
        lv = loss.item()
        if self.args.ddp:
            t = self.torch.tensor([lv * global_n / self.world])
            self.dist.all_reduce(t)
            lv = t.item() / global_n
        if epoch == 0 and step < self.log_every:
            self.first_losses.append(lv)
        self.last_losses.append(lv)
        self.last_losses = self.last_losses[-self.log_every:]
        if self.root and ((step + 1) % self.log_every == 0 or step + 1 == self.steps_per_epoch):
            print(f"check: epoch {epoch + 1} step {step + 1}/{self.steps_per_epoch} loss {lv:.5f}", flush=True)

    def end_epoch(self, epoch, epoch_samples, seconds):
        """The epoch's loss and accuracy over all ranks, and its line."""
        sums = self.torch.stack([self.loss_sum, self.correct.double()])
        if self.args.ddp:
            self.dist.all_reduce(sums)
        self.epoch_loss = sums[0].item() / epoch_samples
        if self.root and not self.args.quiet:
            print(f"epoch {epoch + 1}/{self.args.epochs}  loss {self.epoch_loss:.5f}  "
                  f"acc {sums[1].item() / epoch_samples:.4f}  "
                  f"{epoch_samples / seconds:.0f} samples/s  {seconds:.2f} s", flush=True)

    def loss_decreased(self):
        """--check's verdict, printed: did the mean loss of the last steps fall below the first steps'?"""
        first = sum(self.first_losses) / max(1, len(self.first_losses))
        last = sum(self.last_losses) / max(1, len(self.last_losses))
        ok = math.isfinite(last) and last < first
        print(f"check: mean loss of the first {len(self.first_losses)} steps {first:.5f}, "
              f"of the last {len(self.last_losses)} steps {last:.5f}: {'decreased' if ok else 'DID NOT DECREASE'}",
              flush=True)
        return ok


def print_bench(args, world, times, epoch_loss, blas_core):
    """The BENCH_JSON line (rank 0), as nn_dist --profile prints it."""
    import torch
    if times.steps == 0:
        print(f"profile: no steps measured (raise --max-steps above --warmup-steps {args.warmup_steps})", flush=True)
        return
    ms = 1000.0 / times.steps
    rec = {
        "impl": "torch-ddp" if args.ddp else "torch",
        "ranks": world, "threads": args.threads, "batch_per_rank": args.batch_size,
        "steps": times.steps, "precision": args.precision,
        "samples_per_sec": round(times.samples / times.total, 1),
        "step_ms": round(times.total * ms, 4), "data_ms": round(times.data * ms, 4),
        "forward_ms": round(times.forward * ms, 4), "backward_ms": round(times.backward * ms, 4),
        "optimizer_ms": round(times.optimizer * ms, 4),
        "loss": round(epoch_loss, 6),
        "blas_core": blas_core,
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", ""),
        "torch": torch.__version__,
    }
    print("BENCH_JSON " + json.dumps(rec, separators=(",", ":")), flush=True)


def run(rank, world, args, port):
    """Trains on one rank; returns False when --check saw the loss not decrease (rank 0)."""
    blas_core = start_process(rank, world, args, port)
    import torch
    shard = Shard(args, world, rank)
    model, opt = make_model(args, shard.d, shard.k)
    training = Training(args, rank, world, shard, model, opt)
    root = rank == 0
    if root and not args.quiet:
        print(f"torch {torch.__version__}: {world} rank(s), {shard.n_total} samples x {shard.d} features, "
              f"{shard.d}-{'-'.join(map(str, args.hidden_sizes + [shard.k]))} {args.activation}, "
              f"batch {args.batch_size}/rank, {training.steps_per_epoch} steps/epoch, OpenBLAS core {blas_core}",
              flush=True)
    training.train()
    ok = training.loss_decreased() if args.check and root else True
    if root:
        print_bench(args, world, training.times, training.epoch_loss, blas_core)
    if args.ddp:
        training.dist.barrier()
        training.dist.destroy_process_group()
    return ok


def _spawned(rank, world, args, port):
    if not run(rank, world, args, port):
        sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    args = parse_args()
    set_thread_env(args.threads)
    if not args.ddp:
        return 0 if run(0, 1, args, 0) else 1
    port = args.master_port or int(os.environ.get("MASTER_PORT", "0")) or (free_port() if args.rank < 0 else 29517)
    if args.rank >= 0:  # launched per rank by a driver
        return 0 if run(args.rank, args.world_size, args, port) else 1
    import torch.multiprocessing as mp
    context = mp.spawn(_spawned, args=(args.world_size, args, port), nprocs=args.world_size, join=False)
    return join_ranks(context)


# Seconds the other ranks get to exit once one has: once, a PyTorch 1.13 DDP
# worker whose results were written kept a thread spinning for 23 minutes.
EXIT_GRACE_SECONDS = 60


def join_ranks(context):
    """Waits for the spawned ranks (a failed one raises, as mp.spawn's join
    does); ranks still running EXIT_GRACE_SECONDS after another exited are
    terminated, named on stderr. 0 when every rank that exited by itself
    succeeded."""
    first_exit = None
    while not context.join(timeout=5):
        if first_exit is None and any(p.exitcode is not None for p in context.processes):
            first_exit = time.monotonic()
        if first_exit is not None and time.monotonic() - first_exit > EXIT_GRACE_SECONDS:
            stuck = [rank for rank, p in enumerate(context.processes) if p.exitcode is None]
            print(f"torch_reference.py: DDP rank(s) {stuck} still running {EXIT_GRACE_SECONDS} s after another "
                  "rank ended: terminated", file=sys.stderr)
            for p in context.processes:
                if p.exitcode is None:
                    p.terminate()
            return 0 if all(p.exitcode == 0 for p in context.processes if p.exitcode is not None) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
