#!/usr/bin/python3
"""PyTorch reference for nn_dist: the same MLP, data order scheme and timing.

Trains d -> hidden widths -> K with CrossEntropyLoss (mean) and torch.optim.SGD,
shuffling each rank's contiguous shard every epoch with torch.randperm and
gathering each minibatch by index into preallocated tensors
(torch.index_select(..., out=...)), so data loading costs what nn_dist's does.

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
    p.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "identity"])
    p.add_argument("--loss", default="softmax", choices=["softmax", "auto"],
                   help="only softmax cross-entropy (accepted for nn_dist compatibility)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32, help="samples per rank per step")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--warmup-steps", type=int, default=10, help="steps left out of the timings")
    p.add_argument("--threads", type=int, default=1, help="threads per process (torch and OpenBLAS)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--init", default="nn_dist", choices=["nn_dist", "torch"],
                   help="nn_dist: He-normal (relu) / Glorot-uniform weights, zero biases; torch: torch defaults")
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


def build_model(torch, d, hidden, k, activation, init):
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
    layers, width = [], d
    for h in hidden:
        layers += [nn.Linear(width, h), acts[activation]()]
        width = h
    layers.append(nn.Linear(width, k))
    model = nn.Sequential(*layers)
    if init == "nn_dist":
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    if activation == "relu":
                        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_features))
                    else:
                        nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
    return model


def run(rank, world, args, port):
    set_thread_env(args.threads)
    if args.bind_to_core and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[rank % len(cpus)]})
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    blas_core, blas_config = openblas_info(args.threads)
    root = rank == 0

    if args.ddp:
        import torch.distributed as dist
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)

    # This rank's contiguous shard (all of it in one process).
    with h5py.File(args.data, "r") as f:
        xd, yd = f[args.x_dataset], f[args.y_dataset]
        n_total, d = xd.shape
        offset, count = shard_range(n_total, world, rank)
        x = torch.from_numpy(np.ascontiguousarray(xd[offset:offset + count], dtype=np.float32))
        y = torch.from_numpy(np.asarray(yd[offset:offset + count]).reshape(-1).astype(np.int64))
        # Every rank needs the class count; read all labels (small).
        k = int(np.asarray(yd[:]).max()) + 1

    torch.manual_seed(args.seed)
    model = build_model(torch, d, args.hidden_sizes, k, args.activation, args.init)
    if args.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, bucket_cap_mb=args.bucket_mb)  # broadcasts rank 0's parameters
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)

    B = args.batch_size
    shard_counts = [shard_range(n_total, world, r)[1] for r in range(world)]
    steps_per_epoch = max(1, -(-max(shard_counts) // B))  # every rank takes the largest shard's steps

    def size_of(c, step):
        return min(max(c - step * B, 0), B)

    xbuf = torch.empty(B, d, dtype=torch.float32)
    ybuf = torch.empty(B, dtype=torch.int64)
    gen = torch.Generator()
    log_every = args.log_every or max(1, steps_per_epoch // 10)

    t_data = t_fwd = t_bwd = t_opt = t_total = 0.0
    timed_steps = 0
    timed_samples = 0
    global_step = 0
    first_losses, last_losses = [], []
    epoch_loss = float("nan")
    done = False
    if root and not args.quiet:
        print(f"torch {torch.__version__}: {world} rank(s), {n_total} samples x {d} features, "
              f"{d}-{'-'.join(map(str, args.hidden_sizes + [k]))} {args.activation}, batch {B}/rank, "
              f"{steps_per_epoch} steps/epoch, OpenBLAS core {blas_core}", flush=True)
    for epoch in range(args.epochs):
        gen.manual_seed(args.seed * 1000003 + epoch * 1009 + rank)
        perm = torch.randperm(count, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        epoch_samples = 0
        t_epoch = time.perf_counter()
        for step in range(steps_per_epoch):
            if args.max_steps and global_step >= args.max_steps:
                done = True
                break
            n = size_of(count, step)
            global_n = sum(size_of(c, step) for c in shard_counts)
            t0 = time.perf_counter()
            idx = perm[step * B:step * B + n]
            xb, yb = xbuf[:n], ybuf[:n]
            torch.index_select(x, 0, idx, out=xb)
            torch.index_select(y, 0, idx, out=yb)
            t1 = time.perf_counter()
            out = model(xb)
            if n > 0:
                loss = F.cross_entropy(out, yb)  # mean over this rank's batch
                if n * world != global_n:  # uneven batches: weight so the DDP average is the global mean
                    loss = loss * (n * world / global_n)
            else:
                loss = out.sum() * 0.0
            if n > 0:  # loss and accuracy sums, as nn_dist's forward pass computes them
                with torch.no_grad():
                    loss_sum += loss.detach().double() * (global_n / world)
                    correct += (out.detach().argmax(1) == yb).sum()
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()  # with DDP: includes the gradient allreduce
            t3 = time.perf_counter()
            opt.step()
            t4 = time.perf_counter()
            global_step += 1
            if global_step > args.warmup_steps:
                t_data += t1 - t0
                t_fwd += t2 - t1
                t_bwd += t3 - t2
                t_opt += t4 - t3
                t_total += t4 - t0
                timed_steps += 1
                timed_samples += global_n
            epoch_samples += global_n
            if args.check:
                lv = loss.item()
                if args.ddp:
                    t = torch.tensor([lv * global_n / world])
                    dist.all_reduce(t)
                    lv = t.item() / global_n
                if epoch == 0 and step < log_every:
                    first_losses.append(lv)
                last_losses.append(lv)
                last_losses = last_losses[-log_every:]
                if root and ((step + 1) % log_every == 0 or step + 1 == steps_per_epoch):
                    print(f"check: epoch {epoch + 1} step {step + 1}/{steps_per_epoch} loss {lv:.5f}", flush=True)
        seconds = time.perf_counter() - t_epoch
        if epoch_samples == 0:
            break
        sums = torch.stack([loss_sum, correct.double()])
        if args.ddp:
            dist.all_reduce(sums)
        epoch_loss = sums[0].item() / epoch_samples
        if root and not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}  loss {epoch_loss:.5f}  acc {sums[1].item() / epoch_samples:.4f}  "
                  f"{epoch_samples / seconds:.0f} samples/s  {seconds:.2f} s", flush=True)
        if done:
            break

    ok = True
    if args.check and root:
        first = sum(first_losses) / max(1, len(first_losses))
        last = sum(last_losses) / max(1, len(last_losses))
        ok = math.isfinite(last) and last < first
        print(f"check: mean loss of the first {len(first_losses)} steps {first:.5f}, "
              f"of the last {len(last_losses)} steps {last:.5f}: {'decreased' if ok else 'DID NOT DECREASE'}", flush=True)

    if root:
        if timed_steps == 0:
            print(f"profile: no steps measured (raise --max-steps above --warmup-steps {args.warmup_steps})", flush=True)
        else:
            ms = 1000.0 / timed_steps
            rec = {
                "impl": "torch-ddp" if args.ddp else "torch",
                "ranks": world, "threads": args.threads, "batch_per_rank": B,
                "steps": timed_steps,
                "samples_per_sec": round(timed_samples / t_total, 1),
                "step_ms": round(t_total * ms, 4), "data_ms": round(t_data * ms, 4),
                "forward_ms": round(t_fwd * ms, 4), "backward_ms": round(t_bwd * ms, 4),
                "optimizer_ms": round(t_opt * ms, 4),
                "loss": round(epoch_loss, 6),
                "blas_core": blas_core,
                "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", ""),
                "torch": torch.__version__,
            }
            print("BENCH_JSON " + json.dumps(rec, separators=(",", ":")), flush=True)
    if args.ddp:
        dist.barrier()
        dist.destroy_process_group()
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
    mp.spawn(_spawned, args=(args.world_size, args, port), nprocs=args.world_size, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
