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
torch.optim.lr_scheduler.LambdaLR stepped once per step, and that
--clip-grad-norm follows torch.nn.utils.clip_grad_norm_ (clipping on most
steps; the metrics CSV's grad_norm is torch's norm of the epoch's last step).
With --dropout, nn_dist writes the masks it applies (NN_DIST_DROPOUT_MASKS, a
test hook) and torch multiplies its hidden outputs by the same masks. Cases with
dtype float64 run torch in double precision: what is left is nn_dist's float32.
Cases with precision bf16 (one per bf16 kernel the CPU has: --gemm amx,
avx512_bf16) run one full step, torch computing every product as
x.bfloat16().float() @ w.bfloat16().float() (forward and both backward
products). Tolerance, derived: products of bf16 values are exact in f32, so
the two sides differ only in the order of f32 sums: at most k u sum|terms|,
u = 2^-24, k <= 16 here, ~1e-6 relative after one step: tolerance 2e-6. Plain
f32 torch must miss it by 10x or more, which shows the rounding is there.
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
    # --clip-grad-norm at 1, 2 and 3 ranks, the limit below most steps' norm: the shared-memory sums
    # (each rank updates its part: the norm adds the parts' squares) and Open MPI's (each rank sees the whole sum).
    dict(ranks=1, batch=16, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01), clip=0.2),
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="tanh", hidden=[9],
         opt=dict(name="adam", lr=0.01, weight_decay=0.001), clip=0.3),
    dict(ranks=3, batch=5, kind="regression", loss="mse", act="sigmoid", hidden=[10, 6],
         opt=dict(name="sgd", lr=0.05, momentum=0.5, weight_decay=0.0), clip=0.3),
    dict(ranks=3, batch=5, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0), clip=0.2, flags=["--allreduce", "mpi"]),
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         opt=dict(name="adam", lr=0.01, weight_decay=0.0), clip=0.2, flags=["--allreduce", "hierarchical"]),
    # --dropout with the masks nn_dist drew: one rate, a rate per layer (tanh: f' from the undropped output).
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01), dropout=[0.3, 0.3]),
    dict(ranks=3, batch=5, kind="regression", loss="mse", act="tanh", hidden=[10, 6],
         opt=dict(name="adam", lr=0.01, weight_decay=0.0), dropout=[0.5, 0.2], clip=0.3),
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
    # --reproducible: a global order (each global batch: the next ranks x batch rows of the file), the
    # gradient summed over blocks in 64-bit fixed point; with dropout (the same masks: keyed by row).
    dict(ranks=3, batch=10, kind="teacher", loss="softmax", act="relu", hidden=[12, 7], dtype="float64",
         opt=dict(name="adam", lr=0.01, weight_decay=0.0), dropout=[0.3, 0.2], global_order=True,
         flags=["--reproducible", "--block-size", "5"]),
    dict(ranks=2, batch=8, kind="regression", loss="mse", act="tanh", hidden=[10, 6], dtype="float64",
         opt=dict(name="sgd", lr=0.05, momentum=0.9, weight_decay=0.01), global_order=True,
         flags=["--reproducible", "--block-size", "4", "--allreduce", "mpi"]),
    # --dropout with gelu: f' kept from the forward pass, before the mask.
    dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="gelu", hidden=[12, 7], dtype="float64",
         opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01), dropout=[0.3, 0.2]),
    # --accumulate-steps K: torch adds K micro-batches' gradients (each loss sum over the step's samples), then
    # steps once. Each epoch's last step is short (fewer micro-batches, the last of them short). The schedule
    # counts steps and scales with the global batch K x batch x ranks (0.05 x 16/8 = 0.1).
    dict(ranks=2, batch=4, accumulate=2, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         dtype="float64", opt=dict(name="sgd", lr=0.05, momentum=0.9, weight_decay=0.01),
         sched=dict(schedule="cosine", warmup=0.5, scaling="linear", reference=8, lr_min=0.001)),
    dict(ranks=3, batch=5, accumulate=4, kind="regression", loss="mse", act="tanh", hidden=[10, 6],
         dtype="float64", opt=dict(name="adam", lr=0.01, weight_decay=0.0), dropout=[0.3, 0.2]),
    dict(ranks=2, batch=4, accumulate=4, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         dtype="float64", opt=dict(name="adam", lr=0.01, weight_decay=0.0), clip=0.1,
         flags=["--allreduce", "hierarchical"]),
    # --reproducible with K = 2: a step is 2 x 3 x 5 rows of the global order.
    dict(ranks=3, batch=5, accumulate=2, kind="teacher", loss="softmax", act="relu", hidden=[12, 7],
         dtype="float64", opt=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0), global_order=True,
         flags=["--reproducible", "--block-size", "5"]),
]


def bf16_kernels():
    """The --gemm bf16 kernels this CPU runs (as nn_dist decides: AMX needs AVX512_BF16 too)."""
    flags = set(next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), []))
    if "avx512_bf16" not in flags:
        return []
    return (["amx"] if {"amx_bf16", "amx_tile"} <= flags else []) + ["avx512_bf16"]


# One full step (16 samples, global batch 16: a power of two, so torch's mean and nn_dist's sum round alike).
for _kernel in bf16_kernels():
    CASES += [
        dict(ranks=2, batch=8, kind="teacher", loss="softmax", act="relu", hidden=[12, 7], samples=16, epochs=1,
             precision="bf16", opt=dict(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0),
             flags=["--precision", "bf16", "--gemm", _kernel]),
        dict(ranks=1, batch=16, kind="regression", loss="mse", act="tanh", hidden=[10, 6], samples=16, epochs=1,
             precision="bf16", opt=dict(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0),
             flags=["--precision", "bf16", "--gemm", _kernel]),
    ]


def bf16(t):
    """t rounded to bf16 (nearest even) and back to float32."""
    return t.bfloat16().float()


class Bf16Linear(torch.autograd.Function):
    """A linear layer whose three products take bf16-rounded inputs and sum in float32."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return bf16(x) @ bf16(w).t() + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return bf16(g) @ bf16(w), bf16(g).t() @ bf16(x), g.sum(0)


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
    must_run([NN_DATAGEN, "--kind", case["kind"], "--samples", str(case.get("samples", 203)), "--features", "5", "--classes", "3",
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


def run_nn_dist(case, data, init, out, epochs, metrics, masks):
    """nn_dist from init, without shuffling, its final weights in out, its metrics CSV in metrics,
    with --dropout the masks it applied in masks.<rank>."""
    o = case["opt"]
    cmd = [MPIEXEC, "-np", str(case["ranks"]), "--oversubscribe", "--mca", "mpi_yield_when_idle", "1",
           NN_DIST, "--data", data, "--init", init, "--loss", case["loss"], "--no-shuffle",
           "--batch-size", str(case["batch"]), "--accumulate-steps", str(case.get("accumulate", 1)),
           "--epochs", str(epochs), "--optimizer", o["name"],
           "--lr", str(o["lr"]), "--weight-decay", str(o["weight_decay"]), "--checkpoint", out, "--quiet"]
    if o["name"] == "sgd":
        cmd += ["--momentum", str(o["momentum"])]
    sched = case.get("sched")
    if sched:
        cmd += schedule_flags(sched)
    if "clip" in case:
        cmd += ["--clip-grad-norm", str(case["clip"]), "--metrics", metrics]
    if "dropout" in case:
        cmd += ["--dropout", ",".join(str(p) for p in case["dropout"])]
        cmd[1:1] = ["-x", f"NN_DIST_DROPOUT_MASKS={masks}"]  # mpirun passes it to every rank
    must_run(cmd + case.get("flags", []), seconds=120)


def read_masks(case, masks, widths):
    """The masks nn_dist applied: {(step, layer, row): mask as float32}, from every rank's file.
    Each record: step, layer, row as int64, then the layer's units as float32."""
    out = {}
    for r in range(case["ranks"]):
        raw = open(f"{masks}.{r}", "rb").read()
        at = 0
        while at < len(raw):
            step, layer, row = np.frombuffer(raw, np.int64, 3, at)
            at += 24
            units = widths[layer]
            out[(int(step), int(layer), int(row))] = torch.from_numpy(np.frombuffer(raw, np.float32, units, at).copy())
            at += 4 * units
    return out


def check_masks(case, masks):
    """(ok, words): the masks hold 0 and nn.Dropout's 1 / (1 - p), and drop about p of the units."""
    words, ok = [], True
    for layer, p in enumerate(case["dropout"]):
        values = torch.cat([m for (_, l, _), m in masks.items() if l == layer])
        kept = torch.nn.Dropout(p).train()(torch.ones(10000)).max()  # torch's scale of a kept unit
        share = float((values == 0).double().mean())
        sigma = math.sqrt(p * (1 - p) / len(values))
        ok = ok and bool(((values == 0) | (values == kept)).all()) and abs(share - p) < 3 * sigma
        words.append(f"{share:.3f}")
    return ok, f"; dropped shares {', '.join(words)} (within 3 sigma of p)"


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
    ratio = case.get("accumulate", 1) * case["batch"] * case["ranks"] / sched["reference"]
    peak = o["lr"] * (ratio if sched["scaling"] == "linear" else math.sqrt(ratio))
    for group in opt.param_groups:
        group["lr"] = peak
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: scheduled_lr(sched, peak, k, steps, epochs) / peak)


def forward(case, model, x, rows, masks, step):
    """model(x[rows]), with each hidden layer's output times nn_dist's dropout mask of (step, layer, row)."""
    if masks is None and case.get("precision") != "bf16":
        return model(x[rows])
    h, layer = x[rows], 0
    for module in model:
        if isinstance(module, torch.nn.Linear) and case.get("precision") == "bf16":
            h = Bf16Linear.apply(h, module.weight, module.bias)
        else:
            h = module(h)
        if not isinstance(module, torch.nn.Linear) and masks is not None:  # a hidden layer's activation
            h = h * torch.stack([masks[(step, layer, row)] for row in rows])
            layer += 1
    return h


def train_torch(case, model, x, y_raw, epochs, masks=None):
    """torch on the same global batches nn_dist took: each step, every rank's next rows of its shard
    (global_order: the file's next ranks x batch rows); with "accumulate" K, the next K such micro-batches,
    their gradients added (gradient accumulation, as torch does it: each micro-batch's loss sum divided by the
    step's sample count). Returns the gradient norms clip_grad_norm_ saw (with "clip"), step by step."""
    target, loss_fn = torch_loss(case, y_raw)
    parts = shards(len(x), case["ranks"])
    if case.get("global_order"):
        g = case["ranks"] * case["batch"]
        parts = [(0, len(x))]  # one sequence of global micro-batches of g rows
        case = dict(case, batch=g, ranks=1)
    k = case.get("accumulate", 1)
    micro = max((count + case["batch"] - 1) // case["batch"] for _, count in parts)
    steps = (micro + k - 1) // k
    opt, scheduler = torch_optimizer(case, model, steps, epochs)
    norms, step = [], 0
    for _ in range(epochs):
        for s in range(steps):
            batches = [[i for offset, count in parts
                        for i in range(offset + m * case["batch"], offset + min(count, (m + 1) * case["batch"]))]
                       for m in range(s * k, min(micro, (s + 1) * k))]
            samples = sum(len(rows) for rows in batches)
            opt.zero_grad()
            for rows in batches:
                if rows:  # the mean over the micro-batch, weighted to a share of the step's mean
                    loss = loss_fn(forward(case, model, x, rows, masks, step), target[rows])
                    (loss * (len(rows) / samples)).backward()
            step += 1
            if "clip" in case:
                norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), case["clip"])))
            opt.step()
            if scheduler:
                scheduler.step()
    return norms


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


def run_case(case, tmp):
    epochs = case.get("epochs", 2)
    data, x, y_raw = make_data(case, tmp)
    outputs = {"softmax": 3, "logistic": 1, "mse": y_raw.shape[1] if y_raw.ndim == 2 else 1}[case["loss"]]
    sizes = [x.shape[1]] + case["hidden"] + [outputs]
    model, linears = torch_model(case, sizes)
    init = os.path.join(tmp, "init.h5")
    write_init(init, case, sizes, linears)
    out, metrics, mask_file = (os.path.join(tmp, name) for name in ("out.h5", "metrics.csv", "masks"))
    run_nn_dist(case, data, init, out, epochs, metrics, mask_file)
    masks = read_masks(case, mask_file, case["hidden"]) if "dropout" in case else None
    norms = train_torch(case, model, x, y_raw, epochs, masks)
    plain = None
    if case.get("precision") == "bf16":  # torch without the rounding, to show the tolerance sees it
        f32 = {k: v for k, v in case.items() if k != "precision"}
        f32_model, f32_linears = torch_model(f32, sizes)
        train_torch(f32, f32_model, x, y_raw, epochs)
        plain = largest_difference(out, f32_linears)
    return largest_difference(out, linears), norms, metrics, masks, plain


def check_clipping(case, norms, metrics):
    """For a --clip-grad-norm case: (ok, words). Clipping must act on most steps, and each epoch's
    grad_norm in the metrics CSV must be torch's norm of that epoch's last step."""
    clipped = sum(n > case["clip"] for n in norms) / len(norms)
    rows = [line.split(",") for line in open(metrics).read().splitlines()]
    column = rows[0].index("grad_norm")
    steps = len(norms) // (len(rows) - 1)
    ours = [float(r[column]) for r in rows[1:]]
    theirs = [norms[(e + 1) * steps - 1] for e in range(len(ours))]
    worst = max(abs(a - b) / b for a, b in zip(ours, theirs))
    ok = clipped > 0.75 and worst < 1e-4
    return ok, f"; clipped on {clipped:.0%} of steps, grad_norm within {worst:.1e} of torch's (tolerance 1e-4)"


def main():
    failed = 0
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            worst, norms, metrics, masks, plain = run_case(case, tmp)
            ok, clip_words = check_clipping(case, norms, metrics) if "clip" in case else (True, "")
            mask_ok, mask_words = check_masks(case, masks) if masks else (True, "")
        tolerance = 2e-6 if case.get("precision") == "bf16" else 2e-5
        ok = ok and mask_ok and worst < tolerance
        plain_words = ""
        if plain is not None:
            ok = ok and plain > 10 * tolerance
            plain_words = f"; torch without bf16 rounding differs by {plain:.2e} (must exceed {10 * tolerance:.0e})"
        failed += not ok
        sched = f"/{case['sched']['schedule']}+warmup+{case['sched']['scaling']}" if "sched" in case else ""
        clip = f"/clip {case['clip']}" if "clip" in case else ""
        clip += f"/dropout {','.join(map(str, case['dropout']))}" if "dropout" in case else ""
        flags = " " + " ".join(case["flags"]) if "flags" in case else ""
        flags += f" --accumulate-steps {case['accumulate']}" if "accumulate" in case else ""
        act = f"{case['act']}({case['slope']})" if "slope" in case else case["act"]
        print(f"{'ok  ' if ok else 'FAIL'} {case['ranks']} rank(s){flags}, {case['loss']}/{act}/"
              f"{case['opt']['name']}{sched}{clip}, torch {case.get('dtype', 'float32')}{' bf16 products' if case.get('precision') else ''}: largest relative "
              f"weight difference {worst:.2e} (tolerance {tolerance:.0e}){clip_words}{mask_words}{plain_words}")
    print(f"{len(CASES) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
