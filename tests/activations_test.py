#!/usr/bin/python3
"""gelu, gelu_tanh, silu, leaky_relu and AdamW through the programs, against NumPy and PyTorch:
  - a checkpoint of each activation records it (leaky_relu: and its slope); nn_eval's predictions at 2
    ranks equal scripts/nn_model.py's in NumPy and through to_torch (nn.GELU of each approximation,
    nn.SiLU, nn.LeakyReLU(slope));
  - --init and --resume of a leaky_relu checkpoint train with its slope and keep it;
  - nn_model.export of nn.Sequentials with those modules and nn.Dropout (skipped: the identity at
    inference) loads in nn_eval with PyTorch's eval-mode outputs; mixed activations or slopes are refused;
  - a leaky_relu model file without its slope is refused in one line;
  - --optimizer adamw writes /optimizer name adamw.
Usage: activations_test.py NN_DIST NN_EVAL NN_DATAGEN MPIEXEC
"""
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish, mpirun, run_with_deadline, work_dir  # noqa: E402

NN_DIST, NN_EVAL, NN_DATAGEN, MPIEXEC = sys.argv[1:5]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import nn_model  # noqa: E402


def run(cmd, ranks=None):
    p = run_with_deadline((mpirun(MPIEXEC, ranks) if ranks else []) + cmd)
    return p.returncode, p.stdout, p.stderr


def eval_outputs(model, ranks=2):
    """nn_eval's predictions of v.h5 (exit code, outputs, stderr)."""
    code, _, err = run([NN_EVAL, "--model", model, "--data", "v.h5", "--predictions", "p.h5"], ranks=ranks)
    if code != 0:
        return code, None, err
    with h5py.File("p.h5", "r") as f:
        return code, f["outputs"][()], err


os.chdir(work_dir())
code, _, err = run([NN_DATAGEN, "--kind", "teacher", "--samples", "600", "--val-samples", "200", "--features", "6",
                    "--classes", "3", "--out", "t.h5", "--val-out", "v.h5"])
check("nn_datagen", code == 0, err)
with h5py.File("v.h5", "r") as f:
    xv = f["X"][()].astype(np.float32)

# ---- each activation: its checkpoint, nn_eval, NumPy and PyTorch agree
torch_modules = {"gelu": (torch.nn.GELU, "none"), "gelu_tanh": (torch.nn.GELU, "tanh"), "silu": (torch.nn.SiLU, None),
                 "leaky_relu": (torch.nn.LeakyReLU, 0.2)}
for act, (module_type, detail) in torch_modules.items():
    flags = ["--leaky-slope", "0.2"] if act == "leaky_relu" else []
    code, _, err = run([NN_DIST, "--data", "t.h5", "--hidden", "16,8", "--activation", act, "--epochs", "3",
                        "--standardize", "--checkpoint", f"{act}.h5", "--quiet"] + flags, ranks=2)
    check(f"{act}: nn_dist trains (exit 0)", code == 0, err)
    with h5py.File(f"{act}.h5", "r") as f:
        attrs = f["model"].attrs
        check(f"{act}: /model records the activation", nn_model._text(attrs["activation"]) == act)
        slope = attrs.get("leaky_slope")
        check(f"{act}: /model has leaky_slope only for leaky_relu, 0.2 as given",
              slope == 0.2 if act == "leaky_relu" else slope is None, f"{slope}")
    code, outputs, err = eval_outputs(f"{act}.h5")
    m = nn_model.load(f"{act}.h5")
    np_pred = nn_model.predict(m, xv)
    check(f"{act}: nn_model.predict (NumPy) equals nn_eval's predictions",
          code == 0 and np.allclose(np_pred, outputs, rtol=0, atol=1e-5),
          err if code else f"{np.max(np.abs(np_pred - outputs))}")
    net = nn_model.to_torch(m).eval()
    hidden = [mod for mod in net if isinstance(mod, module_type)]
    check(f"{act}: to_torch puts {module_type.__name__} between the Linear layers", len(hidden) == 2, str(net))
    if module_type is torch.nn.GELU:
        check(f"{act}: nn.GELU(approximate='{detail}')", all(mod.approximate == detail for mod in hidden), str(net))
    if module_type is torch.nn.LeakyReLU:
        check(f"{act}: nn.LeakyReLU(negative_slope={detail})", all(mod.negative_slope == detail for mod in hidden),
              str(net))
    with torch.no_grad():
        torch_pred = torch.softmax(net(torch.from_numpy(xv)), dim=1).numpy()
    check(f"{act}: nn_model.to_torch (PyTorch) equals nn_eval's predictions",
          code == 0 and np.allclose(torch_pred, outputs, rtol=0, atol=1e-5),
          err if code else f"{np.max(np.abs(torch_pred - outputs))}")

# ---- --init and --resume take leaky_relu's slope from the checkpoint
for flag, epochs in (("--init", "2"), ("--resume", "5")):
    out_file = f"continued{flag}.h5"
    code, out, err = run([NN_DIST, "--data", "t.h5", flag, "leaky_relu.h5", "--epochs", epochs, "--checkpoint",
                          out_file], ranks=2)
    check(f"{flag} of a leaky_relu checkpoint trains with its slope (the banner says so)",
          code == 0 and "leaky_relu (slope 0.2) hidden" in out, out + err)
    with h5py.File(out_file, "r") as f:
        check(f"{flag}: the new checkpoint keeps leaky_slope 0.2", f["model"].attrs.get("leaky_slope") == 0.2)

# ---- export: PyTorch's modules, nn.Dropout skipped, nn_eval gives PyTorch's outputs
mean, scale = xv.mean(0).astype(np.float64), xv.std(0).astype(np.float64) + 0.5
for name, make in (("gelu", lambda: torch.nn.GELU()), ("gelu_tanh", lambda: torch.nn.GELU(approximate="tanh")),
                   ("silu", torch.nn.SiLU), ("leaky_relu", lambda: torch.nn.LeakyReLU(0.3))):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(6, 12), make(), torch.nn.Dropout(0.5), torch.nn.Linear(12, 7), make(),
                              torch.nn.Linear(7, 3)).eval()
    nn_model.export(net, f"exported_{name}.h5", loss="softmax", mean=mean, scale=scale)
    with h5py.File(f"exported_{name}.h5", "r") as f:
        check(f"export {name}: /model says {name}", nn_model._text(f["model"].attrs["activation"]) == name)
        check(f"export {name}: 3 layers (Dropout skipped)", list(f["model"].attrs["sizes"]) == [6, 12, 7, 3])
    code, outputs, err = eval_outputs(f"exported_{name}.h5", ranks=1)
    with torch.no_grad():
        xs = torch.from_numpy(((xv.astype(np.float64) - mean) / scale).astype(np.float32))
        expected = torch.softmax(net(xs), dim=1).numpy()
    check(f"export {name} (with nn.Dropout): nn_eval gives PyTorch's eval-mode outputs",
          code == 0 and np.allclose(outputs, expected, rtol=0, atol=1e-5),
          err if code else f"{np.max(np.abs(outputs - expected))}")


def export_error(net):
    try:
        nn_model.export(net, "refused.h5")
    except ValueError as e:
        return str(e)
    return "exported"


lin = torch.nn.Linear
check("export refuses two GELU approximations",
      "found gelu and gelu_tanh" in export_error(torch.nn.Sequential(lin(2, 3), torch.nn.GELU(), lin(3, 3),
                                                                     torch.nn.GELU(approximate="tanh"), lin(3, 2))))
check("export refuses two leaky slopes",
      "leaky_relu (slope 0.1) and leaky_relu (slope 0.2)" in export_error(
          torch.nn.Sequential(lin(2, 3), torch.nn.LeakyReLU(0.1), lin(3, 3), torch.nn.LeakyReLU(0.2), lin(3, 2))))
check("export refuses a slope not above 0",
      "negative_slope must be above 0" in export_error(torch.nn.Sequential(lin(2, 3), torch.nn.LeakyReLU(-0.1),
                                                                           lin(3, 2))))

# ---- a leaky_relu model without its slope: one line, exit 2
with h5py.File("exported_leaky_relu.h5", "r") as f, h5py.File("no_slope.h5", "w") as g:
    f.copy("model", g)
    del g["model"].attrs["leaky_slope"]
code, _, err = run([NN_EVAL, "--model", "no_slope.h5", "--data", "v.h5"], ranks=2)
lines = [l for l in err.splitlines() if l.startswith("nn_eval: error:")]
check("a leaky_relu model without leaky_slope: nn_eval exits 2 with one line naming it",
      code == 2 and len(lines) == 1 and "no_slope.h5" in lines[0] and "leaky_slope" in lines[0], err)

# ---- AdamW's checkpoint
code, _, err = run([NN_DIST, "--data", "t.h5", "--hidden", "8", "--epochs", "1", "--optimizer", "adamw",
                    "--weight-decay", "0.01", "--lr", "0.01", "--checkpoint", "adamw.h5", "--quiet"])
with h5py.File("adamw.h5", "r") as f:
    check("--optimizer adamw: /optimizer name adamw, with exp_avg and exp_avg_sq",
          code == 0 and nn_model._text(f["optimizer"].attrs["name"]) == "adamw" and "exp_avg_sq" in f["optimizer"],
          err)

finish()
