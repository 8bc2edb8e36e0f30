#!/usr/bin/python3
"""nn_dist models in Python (Debian's python3-h5py, python3-numpy, python3-torch).

Load a checkpoint into NumPy or into a PyTorch nn.Sequential, with its input
standardisation (/preprocess), and export a PyTorch nn.Sequential of Linear and
activation layers to nn_dist's format, for `nn_dist --init`:

    import nn_model                                    # scripts/ on sys.path
    m = nn_model.load("ckpt.h5")                       # weights, activation, loss, standardisation
    probs = nn_model.predict(m, X)                     # NumPy: what nn_eval --predictions writes
    net = nn_model.to_torch(m)                         # nn.Sequential(Standardize, Linear, ReLU, ..., Linear)
    nn_model.export(net, "init.h5", loss="softmax")    # then: nn_dist --init init.h5 ...

Activations both ways: relu, tanh, sigmoid, identity, gelu (nn.GELU()),
gelu_tanh (nn.GELU(approximate="tanh")), silu (nn.SiLU) and leaky_relu
(nn.LeakyReLU(negative_slope), the slope in /model's leaky_slope). export
skips nn.Dropout: at inference it passes its input through.

to_torch's network returns the last layer's z (logits), as nn.Linear does;
predict() applies the loss's output function (softmax, sigmoid, or none for mse).

Command line:
    nn_model.py predict CKPT.h5 DATA.h5 OUT.h5   the outputs of every sample of DATA's X, in file order
"""
import math
import sys

import h5py
import numpy as np

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity", "gelu", "gelu_tanh", "silu", "leaky_relu")
LOSSES = ("softmax", "logistic", "mse")


def _text(value):
    """An HDF5 string attribute, fixed-length (bytes) or variable-length (str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def load(path):
    """The model in a checkpoint: a dict with sizes, activation, leaky_slope
    (leaky_relu's, else None), loss, W (list of float32 (out, in) arrays,
    PyTorch's orientation), b, mean/scale (float64 arrays, or None without
    standardisation), and feature_names/label_names (lists of str: the names
    of the inputs and of the classes 0..K-1 it was trained with, or None where
    the checkpoint has none)."""
    with h5py.File(path, "r") as f:
        model = f["model"]
        sizes = [int(v) for v in model.attrs["sizes"]]
        m = {
            "sizes": sizes,
            "activation": _text(model.attrs["activation"]),
            "leaky_slope": float(model.attrs["leaky_slope"]) if "leaky_slope" in model.attrs else None,
            "loss": _text(model.attrs["loss"]),
            "W": [np.asarray(model[f"W{l}"][()], dtype=np.float32) for l in range(1, len(sizes))],
            "b": [np.asarray(model[f"b{l}"][()], dtype=np.float32) for l in range(1, len(sizes))],
            "mean": None,
            "scale": None,
        }
        for key in ("feature_names", "label_names"):
            m[key] = [_text(s) for s in model[key][()]] if key in model else None
        if "preprocess" in f:
            m["mean"] = np.asarray(f["preprocess/mean"][()], dtype=np.float64)
            m["scale"] = np.asarray(f["preprocess/scale"][()], dtype=np.float64)
    return m


def standardize(m, x):
    """x (samples, features) as the model sees it: (x - mean) / scale in float64,
    rounded once to float32, as nn_dist computes it."""
    x = np.asarray(x)
    if m["mean"] is None:
        return x.astype(np.float32)
    return ((x.astype(np.float64) - m["mean"]) / m["scale"]).astype(np.float32)


_erf = np.vectorize(math.erf, otypes=[np.float64])  # NumPy has no erf


def _activate(m, z):
    """The hidden activation of z (float32), in float64 where it needs exp or erf, rounded back."""
    name = m["activation"]
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, np.float32(m["leaky_slope"]) * z)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    x = z.astype(np.float64)
    if name == "gelu":
        return (0.5 * x * (1 + _erf(x / math.sqrt(2)))).astype(np.float32)
    if name == "gelu_tanh":
        return (0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))).astype(np.float32)
    if name == "silu":
        return (x / (1 + np.exp(-x))).astype(np.float32)
    return z


def logits(m, x):
    """The last layer's z for every row of x, in float32."""
    a = standardize(m, x)
    for l, (w, b) in enumerate(zip(m["W"], m["b"])):
        a = a @ w.T + b
        if l + 1 < len(m["W"]):
            a = _activate(m, a)
    return a


def predict(m, x):
    """Class probabilities (softmax), the probability of class 1 (logistic), or
    the predicted values (mse): what nn_eval --predictions writes."""
    z = logits(m, x)
    if m["loss"] == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if m["loss"] == "logistic":
        return 1 / (1 + np.exp(-z))
    return z


def to_torch(m):
    """A torch.nn.Sequential computing the model's logits from raw features."""
    import torch
    from torch import nn

    class Standardize(nn.Module):
        """(x - mean) / scale in float64, rounded to float32 (nn_dist's /preprocess)."""

        def __init__(self, mean, scale):
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(np.asarray(mean, dtype=np.float64)))
            self.register_buffer("scale", torch.from_numpy(np.asarray(scale, dtype=np.float64)))

        def forward(self, x):
            return ((x.double() - self.mean) / self.scale).float()

    kinds = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity, "gelu": nn.GELU,
             "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "silu": nn.SiLU,
             "leaky_relu": lambda: nn.LeakyReLU(m["leaky_slope"])}
    layers = []
    if m["mean"] is not None:
        layers.append(Standardize(m["mean"], m["scale"]))
    for l, (w, b) in enumerate(zip(m["W"], m["b"])):
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if l + 1 < len(m["W"]):
            layers.append(kinds[m["activation"]]())
    return nn.Sequential(*layers)


def export(net, path, loss="softmax", mean=None, scale=None, feature_names=None, label_names=None):
    """Writes a torch nn.Sequential of Linear layers with one kind of activation
    between them (ReLU, Tanh, Sigmoid, Identity, GELU of either approximation,
    SiLU or LeakyReLU of one slope; nn.Dropout is skipped, as at inference; a
    leading Standardize from to_torch, or mean/scale given here, becomes
    /preprocess) as an nn_dist model file for `nn_dist --init` or nn_eval. The
    last module must be Linear: nn_dist applies the loss's own output function.
    feature_names and label_names (lists of str) name the inputs and the
    classes; nn_dist and nn_eval refuse data that names them otherwise."""
    from torch import nn

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
    names = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity", nn.SiLU: "silu"}

    def kind(module):
        """(nn_dist's name, leaky slope or None) of an activation module, or None for another module."""
        if type(module) in names:
            return names[type(module)], None
        if isinstance(module, nn.GELU):
            return {"none": "gelu", "tanh": "gelu_tanh"}[module.approximate], None
        if isinstance(module, nn.LeakyReLU):
            if not module.negative_slope > 0:  # nn_dist reads the sign of z from f(z)
                raise ValueError(f"nn.LeakyReLU's negative_slope must be above 0 for nn_dist, not "
                                 f"{module.negative_slope}")
            return "leaky_relu", float(module.negative_slope)
        return None

    def described(activation):
        name, slope = activation
        return name if slope is None else f"{name} (slope {slope:g})"

    linears, activation = [], None
    for i, module in enumerate(net):
        if isinstance(module, nn.Linear):
            linears.append(module)
        elif isinstance(module, nn.Dropout):
            continue  # the identity at inference
        elif kind(module) is not None:
            if activation not in (None, kind(module)):
                raise ValueError(f"module {i}: nn_dist uses one activation for every hidden layer, "
                                 f"found {described(activation)} and {described(kind(module))}")
            activation = kind(module)
        elif hasattr(module, "mean") and hasattr(module, "scale") and i == 0:
            mean, scale = module.mean.cpu().numpy(), module.scale.cpu().numpy()
        else:
            raise ValueError(f"module {i} ({type(module).__name__}) has no nn_dist equivalent")
    if not linears or not isinstance(net[len(net) - 1], nn.Linear):
        raise ValueError("the network must end with nn.Linear (nn_dist applies softmax/sigmoid itself)")
    sizes = [linears[0].in_features] + [lin.out_features for lin in linears]
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"layer widths do not chain: {a.out_features} outputs into {b.in_features} inputs")
    with h5py.File(path, "w") as f:  # h5py's defaults: variable-length UTF-8 strings, which nn_dist reads
        g = f.create_group("model")
        for l, lin in enumerate(linears, start=1):
            g[f"W{l}"] = lin.weight.detach().cpu().numpy().astype(np.float32)
            g[f"b{l}"] = lin.bias.detach().cpu().numpy().astype(np.float32)
        g.attrs["sizes"] = np.asarray(sizes, dtype=np.int64)
        name, slope = activation or ("identity", None)
        g.attrs["activation"] = name
        if slope is not None:
            g.attrs["leaky_slope"] = slope
        g.attrs["loss"] = loss
        for key, value in (("feature_names", feature_names), ("label_names", label_names)):
            if value is not None:
                g[key] = [str(v) for v in value]  # h5py's variable-length UTF-8 strings
        if mean is not None:
            p = f.create_group("preprocess")
            p.attrs["kind"] = "standardize"
            p["mean"] = np.asarray(mean, dtype=np.float64)
            p["scale"] = np.asarray(scale, dtype=np.float64)


def main(argv):
    if len(argv) == 5 and argv[1] == "predict":
        m = load(argv[2])
        with h5py.File(argv[3], "r") as f:
            x = f["X"][()]
        with h5py.File(argv[4], "w") as f:
            f["outputs"] = predict(m, x).astype(np.float32)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
