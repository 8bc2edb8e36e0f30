#!/usr/bin/python3
"""nn_dist against PyTorch, step for step.

Starts nn_dist (under mpirun) and a torch.nn model from the same initial
weights (a checkpoint this script writes), trains both on the same global
batches without shuffling, and compares the final weights. Checks the
forward/backward math, the losses' means over the global batch, that
SGD (momentum, weight decay), Adam and AdamW follow torch.optim's rules, that
gelu (both approximations), silu and leaky_relu (its slope read from the --init
checkpoint) are torch's nn.GELU, nn.SiLU and nn.LeakyReLU, and that the
learning-rate schedules (warmup, step, cosine, lr scaling) give the lrs of a
torch.optim.lr_scheduler.LambdaLR stepped once per step. Cases with
dtype float64 run torch in double precision: what is left is nn_dist's float32.
Usage: torch_parity.py NN_DIST NN_DATAGEN MPIEXEC
"""
import math
import os
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import must_run  # noqa: E402

NN_DIST, NN_DATAGEN, MPIEXEC = sys.argv[1:4]
ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "identity": torch.nn.Identity, "gelu": torch.nn.GELU,
               "gelu_tanh": lambda: torch.nn.GELU(approximate="tanh"), "silu": torch.nn.SiLU}

CASES = [
    # ranks, per-rank batch, kind, loss, activation, hidden, optimizer flags
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    dict(ranks=1, batch=16, kind="teacher", loss="softmax", act="tanh", hidden=[9],
         opt=dict(name="adam", lr=0.01, weight_decay=0.001)),
    dict(ranks=3, batch=5, kind="regression", loss="mse", act="sigmoid", hidden=[10, 6],
         opt=dict(name="sgd", lr=0.05, momentum=0.0, weight_decay=0.0)),
    dict(ranks=2, batch=8, kind="xor", loss="logistic", act="tanh", hidden=[8],
         opt=dict(name="adam", lr=0.02, weight_decay=0.0)),
    # Peak lr 0.05 x 16/8 = 0.1 after half an epoch of warmup, then cosine to 0.001.
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         opt=dict(name="sgd", lr=0.05, momentum=0.9, weight_decay=0.01),
         sched=dict(schedule="cosine", warmup=0.5, scaling="linear", reference=8, lr_min=0.001)),
    # Peak lr 0.01 x sqrt(15/60) = 0.005, a quarter epoch of warmup, halved from epoch 1 on.
    dict(ranks=3, batch=5, kind="regression", loss="mse", act="tanh", hidden=[10, 6],
         opt=dict(name="adam", lr=0.01, weight_decay=0.0),
         sched=dict(schedule="step", warmup=0.25, scaling="sqrt", reference=60, decay_epochs=[1], factor=0.5)),
    # Against torch in float64. AdamW with a decay large enough to matter (0.05 x lr per step).
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="relu", hidden=[12, 7], dtype="float64",
         opt=dict(name="adamw", lr=0.01, weight_decay=0.05)),
    dict(ranks=1, batch=16, kind="teacher", loss="softmax", act="relu", hidden=[9], dtype="float64",
         opt=dict(name="adamw", lr=0.02, weight_decay=0.5)),
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="gelu", hidden=[12, 7], dtype="float64",
         opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    dict(ranks=3, batch=5, kind="regression", loss="mse", act="gelu_tanh", hidden=[10, 6], dtype="float64",
         opt=dict(name="adam", lr=0.01, weight_decay=0.0)),
    dict(ranks=2, batch=8, kind="xor", loss="logistic", act="silu", hidden=[8], dtype="float64",
         opt=dict(name="adamw", lr=0.02, weight_decay=0.01)),
    dict(ranks=3, batch=5, kind="teacher", loss="softmax", act="leaky_relu", slope=0.2, hidden=[10, 6],
         dtype="float64", opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0)),
]


def scheduled_lr(sched, peak, k, steps_per_epoch, epochs):
    """nn_dist's lr of step k (README, Learning-rate schedules), written out again."""
    warm = min(1.0, (k + 1) / (sched["warmup"] * steps_per_epoch)) if sched["warmup"] > 0 else 1.0
    t = k / steps_per_epoch
    if sched["schedule"] == "cosine":
        p = min(max((t - sched["warmup"]) / (epochs - sched["warmup"]), 0.0), 1.0)
        return warm * (sched["lr_min"] + (peak - sched["lr_min"]) * (1 + math.cos(math.pi * p)) / 2)
    if sched["schedule"] == "step":
        return peak * warm * sched["factor"] ** sum(e <= t for e in sched["decay_epochs"])
    return peak * warm


def schedule_flags(sched):
    flags = ["--lr-schedule", sched["schedule"], "--warmup-epochs", str(sched["warmup"]),
             "--lr-scaling", sched["scaling"], "--lr-reference-batch", str(sched["reference"])]
    if sched["schedule"] == "cosine":
        flags += ["--lr-min", str(sched["lr_min"])]
    if sched["schedule"] == "step":
        flags += ["--lr-decay-epochs", ",".join(str(e) for e in sched["decay_epochs"]),
                  "--lr-decay-factor", str(sched["factor"])]
    return flags


def shards(n, p):
    base, extra = divmod(n, p)
    out, offset = [], 0
    for r in range(p):
        count = base + (1 if r < extra else 0)
        out.append((offset, count))
        offset += count
    return out


def dtype(case):
    return torch.float64 if case.get("dtype") == "float64" else torch.float32


def make_data(case, tmp):
    """The case's data set (nn_datagen): its path, X as a tensor (the case's dtype) and y as stored."""
    data = os.path.join(tmp, "data.h5")
    must_run([NN_DATAGEN, "--kind", case["kind"], "--samples", "203", "--features", "5", "--classes", "3",
              "--targets", "2", "--seed", "3", "--out", data])
    with h5py.File(data) as f:
        x = torch.from_numpy(f["X"][:].astype(np.float32)).to(dtype(case))
        y_raw = f["y"][:]
    return data, x, y_raw


def torch_model(case, sizes):
    """torch's MLP of these layer sizes from seed 0 (float32 weights, in the case's dtype), and its Linear layers."""
    torch.manual_seed(0)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.LeakyReLU(case["slope"]) if case["act"] == "leaky_relu"
                          else ACTIVATIONS[case["act"]]())
    model = torch.nn.Sequential(*layers).to(dtype(case))
    return model, [m for m in model if isinstance(m, torch.nn.Linear)]


def write_init(path, case, sizes, linears):
    """torch's initial weights as an nn_dist --init checkpoint."""
    with h5py.File(path, "w") as f:
        g = f.create_group("model")
        for l, lin in enumerate(linears, start=1):
            g[f"W{l}"] = lin.weight.detach().numpy().astype(np.float32)  # exact: drawn in float32
            g[f"b{l}"] = lin.bias.detach().numpy().astype(np.float32)
        g.attrs["sizes"] = np.array(sizes, dtype=np.int64)
        g.attrs["activation"] = np.bytes_(case["act"])
        if case["act"] == "leaky_relu":
            g.attrs["leaky_slope"] = case["slope"]  # nn_dist --init takes it from here
        g.attrs["loss"] = np.bytes_(case["loss"])


def run_nn_dist(case, data, init, out, epochs):
    """nn_dist from init, without shuffling, its final weights in out."""
    o = case["opt"]
    cmd = [MPIEXEC, "-np", str(case["ranks"]), "--oversubscribe", "--mca", "mpi_yield_when_idle", "1",
           NN_DIST, "--data", data, "--init", init, "--loss", case["loss"], "--no-shuffle",
           "--batch-size", str(case["batch"]), "--epochs", str(epochs), "--optimizer", o["name"],
           "--lr", str(o["lr"]), "--weight-decay", str(o["weight_decay"]), "--checkpoint", out, "--quiet"]
    if o["name"] == "sgd":
        cmd += ["--momentum", str(o["momentum"])]
    sched = case.get("sched")
    if sched:
        cmd += schedule_flags(sched)
    must_run(cmd, seconds=120)


def torch_loss(case, y_raw):
    """(targets, loss function) of nn_dist's loss, as torch computes it."""
    if case["loss"] == "softmax":
        return torch.from_numpy(y_raw.astype(np.int64)), torch.nn.CrossEntropyLoss()
    if case["loss"] == "logistic":
        # mean of log(1 + exp(z)) - y z
        return torch.from_numpy(y_raw.astype(np.float32)).reshape(-1, 1).to(dtype(case)), torch.nn.BCEWithLogitsLoss()
    target = torch.from_numpy(y_raw.astype(np.float32)).reshape(len(y_raw), -1).to(dtype(case))
    mse = torch.nn.MSELoss(reduction="sum")
    return target, lambda z, t: 0.5 * mse(z, t) / len(t)  # 1/(2n) sum ||h(x) - y||^2


def torch_optimizer(case, model, steps, epochs):
    """torch.optim's optimizer for the case, and a LambdaLR of nn_dist's schedule (or None)."""
    o, sched = case["opt"], case.get("sched")
    if o["name"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"],
                              weight_decay=o["weight_decay"])
    elif o["name"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
    if not sched:
        return opt, None
    ratio = case["batch"] * case["ranks"] / sched["reference"]
    peak = o["lr"] * (ratio if sched["scaling"] == "linear" else math.sqrt(ratio))
    for group in opt.param_groups:
        group["lr"] = peak
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: scheduled_lr(sched, peak, k, steps, epochs) / peak)


def train_torch(case, model, x, y_raw, epochs):
    """torch on the same global batches nn_dist took: each step, every rank's next rows of its shard."""
    target, loss_fn = torch_loss(case, y_raw)
    parts = shards(len(x), case["ranks"])
    steps = max((count + case["batch"] - 1) // case["batch"] for _, count in parts)
    opt, scheduler = torch_optimizer(case, model, steps, epochs)
    for _ in range(epochs):
        for s in range(steps):
            rows = [i for offset, count in parts
                    for i in range(offset + s * case["batch"], offset + min(count, (s + 1) * case["batch"]))]
            opt.zero_grad()
            loss_fn(model(x[rows]), target[rows]).backward()
            opt.step()
            if scheduler:
                scheduler.step()


def largest_difference(out, linears):
    """The largest difference between nn_dist's weights in out and torch's, relative to the layer's largest."""
    worst = 0.0
    with h5py.File(out) as f:
        for l, lin in enumerate(linears, start=1):
            for name, mine in (("W", lin.weight), ("b", lin.bias)):
                theirs = f[f"model/{name}{l}"][:]
                diff = np.abs(theirs - mine.detach().numpy()).max()
                worst = max(worst, diff / max(1.0, np.abs(theirs).max()))
    return worst


def run_case(case, tmp, epochs=2):
    data, x, y_raw = make_data(case, tmp)
    outputs = {"softmax": 3, "logistic": 1, "mse": y_raw.shape[1] if y_raw.ndim == 2 else 1}[case["loss"]]
    sizes = [x.shape[1]] + case["hidden"] + [outputs]
    model, linears = torch_model(case, sizes)
    init = os.path.join(tmp, "init.h5")
    write_init(init, case, sizes, linears)
    out = os.path.join(tmp, "out.h5")
    run_nn_dist(case, data, init, out, epochs)
    train_torch(case, model, x, y_raw, epochs)
    return largest_difference(out, linears)


def main():
    failed = 0
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            worst = run_case(case, tmp)
        ok = worst < 2e-5
        failed += not ok
        sched = f"/{case['sched']['schedule']}+warmup+{case['sched']['scaling']}" if "sched" in case else ""
        act = f"{case['act']}({case['slope']})" if "slope" in case else case["act"]
        print(f"{'ok  ' if ok else 'FAIL'} {case['ranks']} rank(s), {case['loss']}/{act}/"
              f"{case['opt']['name']}{sched}, torch {case.get('dtype', 'float32')}: largest relative weight "
              f"difference {worst:.2e} (tolerance 2e-5)")
    print(f"{len(CASES) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
