#!/usr/bin/python3
"""The tools around the model, end to end, against NumPy and PyTorch:
  - nn_convert csv: a round trip (values, integer / float / string labels and
    their stored names, header by name or none, quotes, a tab delimiter, many
    chunks), and every error with its line and column;
  - nn_convert idx: a round trip keeping uint8, and wrong magic / size errors;
  - --standardize: the stored mean and scale equal NumPy's mean and std (a
    constant feature: scale 1 and a warning), and --resume reuses them;
  - nn_eval at 1 and 3 ranks: accuracy and loss equal what training reported on
    the same data; precision/recall/F1 and the confusion matrix equal NumPy's
    from the predictions file; regression MSE, MAE and R^2 likewise;
  - scripts/nn_model.py: NumPy and PyTorch predictions equal nn_eval's to float
    tolerance; a PyTorch nn.Sequential exported (h5py's defaults) loads in
    nn_eval with the same outputs and trains on with nn_dist --init.
Usage: tools_test.py NN_DIST NN_EVAL NN_CONVERT NN_DATAGEN MPIEXEC
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish, run_with_deadline, work_dir  # noqa: E402

NN_DIST, NN_EVAL, NN_CONVERT, NN_DATAGEN, MPIEXEC = sys.argv[1:6]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import nn_model  # noqa: E402

def run(cmd, ranks=None):
    if ranks:
        cmd = [MPIEXEC, "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle",
               "1"] + cmd
    p = run_with_deadline(cmd)
    return p.returncode, p.stdout, p.stderr


def error_line(err, tool):
    lines = [l for l in err.splitlines() if l.startswith(f"{tool}: error:")]
    return lines[0] if len(lines) == 1 else f"<{len(lines)} error lines: {err[-300:]}>"


work = work_dir()
os.chdir(work)
rng = np.random.default_rng(7)

# ---- nn_convert csv: round trips
n, d = 1000, 5
X = rng.normal(size=(n, d)).astype(np.float32)
names = np.array(["setosa", "versicolor", "virginica"])
ys = names[rng.integers(0, 3, n)]
ys[:2] = ["virginica", "setosa"]  # met out of sorted order: renumbered over all 16 chunks at the end
with open("iris_like.csv", "w") as f:
    f.write("a,b,species,c,d,e\n")
    for i in range(n):
        cells = [repr(float(v)) for v in X[i]]
        label = f'"{ys[i]}"' if i % 7 == 0 else ys[i]  # some quoted
        f.write(",".join(cells[:2] + [label] + cells[2:]) + "\n")
        if i == 500:
            f.write("\n")  # a blank line is skipped
code, out, err = run([NN_CONVERT, "csv", "--input", "iris_like.csv", "--out", "iris.h5", "--label", "species",
                      "--chunk-rows", "64"])
check("csv, string labels by name: exit 0", code == 0, err)
with h5py.File("iris.h5", "r") as f:
    stored = [s.decode() for s in f["label_names"][()]]
    check("csv: X equals the values written", np.array_equal(f["X"][()], X))
    check("csv: string labels map to 0.. in sorted order of their names, names stored",
          [stored[c] for c in f["y"][()]] == list(ys) and stored == sorted(set(ys)))
    check("csv: the header's names of the features stored", [s.decode() for s in f["feature_names"][()]] ==
          ["a", "b", "c", "d", "e"])

with open("preamble.csv", "w") as f:  # scikit-learn's layout: a line of counts, then the header
    f.write(f"{n},{d},setosa,versicolor,virginica\n" + open("iris_like.csv").read())
code, out, err = run([NN_CONVERT, "csv", "--input", "preamble.csv", "--out", "pre.h5", "--skip-lines", "1",
                      "--label", "species"])
with h5py.File("pre.h5", "r") as f, h5py.File("iris.h5", "r") as g:
    check("csv, --skip-lines 1: the same file as without the preamble",
          code == 0 and np.array_equal(f["X"][()], g["X"][()]) and np.array_equal(f["y"][()], g["y"][()]), err)

Y = rng.normal(size=(n, 1))
np.savetxt("reg.tsv", np.hstack([X, Y]), delimiter="\t")  # no header, float label last
code, out, err = run([NN_CONVERT, "csv", "--input", "reg.tsv", "--out", "reg.h5", "--delimiter", "\\t",
                      "--chunk-rows", "100"])
with h5py.File("reg.h5", "r") as f:
    check("csv, tab, no header, float targets: round trip",
          code == 0 and np.array_equal(f["X"][()], X) and np.array_equal(f["y"][()], Y[:, 0].astype(np.float32)), err)

labels_int = rng.integers(0, 4, n)
np.savetxt("int.csv", np.hstack([labels_int[:, None], X]), delimiter=",", fmt=["%d"] + ["%.9g"] * d)
code, out, err = run([NN_CONVERT, "csv", "--input", "int.csv", "--out", "int.h5", "--label", "0"])
with h5py.File("int.h5", "r") as f:
    check("csv, integer labels in column 0: round trip",
          code == 0 and f["y"].dtype == np.int64 and np.array_equal(f["y"][()], labels_int)
          and np.array_equal(f["X"][()], X), err)

# ---- nn_convert csv: errors, each one line naming the line and column
cases = [
    ("ragged", "a,b,y\n1,2,0\n3,4\n", [], "ragged.csv: line 3: has 2 fields, expected 3"),
    ("non-numeric", "a,b,y\n1,2,0\n3,x4,1\n", [], "line 3, column 'b': 'x4' is not a number"),
    ("empty field", "1,2,0\n3,,1\n", [], "line 2, column 1: the field is empty"),
    ("missing label column", "a,b,y\n1,2,0\n", ["--label", "species"], "--label species: no such column"),
    ("label index out of range", "1,2,0\n", ["--label", "7"], "--label 7: there are 3 columns"),
    ("empty input", "", [], "is empty (no rows)"),
    ("header only", "a,b,y\n", [], "no data rows"),
    ("integer labels then a word", "1,2,0\n3,4,1\n5,6,cat\n", ["--chunk-rows", "2"],
     "line 3, label column 2: 'cat' is not an integer"),
    ("unclosed quote", 'a,b,y\n1,"2,0\n', [], "line 2: a quoted field is not closed"),
    # Two columns of one name: the label could be either, and the other would become a feature.
    ("label name twice in the header", "a,label,b,label\n1,0,2,1\n", ["--label", "label"],
     "line 1: the header names column 'label' twice (columns 1 and 3)"),
    ("feature name twice in the header", "x,x,y\n1,2,0\n", [], "the header names column 'x' twice (columns 0 and 1)"),
    # A number too large is a number: say it is out of range, not that it is not a number.
    ("feature beyond float64", "a,b,y\n1,2,0\n3,1e400,1\n", [], "line 3, column 'b': '1e400' is out of float32's range"),
    ("feature beyond float32", "a,b,y\n1,-5e38,0\n", [], "line 2, column 'b': '-5e38' is out of float32's range"),
    ("float target beyond float32", "1,2,0.5\n3,4,1e39\n", [], "line 2, label column 2: '1e39' is out of float32's range"),
    ("float target beyond float64", "1,2,0.5\n3,4,1e400\n", [], "line 2, label column 2: '1e400' is out of float32's range"),
    ("integer label beyond int64", "1,2,0\n3,4,99999999999999999999\n", ["--label-type", "int"],
     "line 2, label column 2: '99999999999999999999' is out of int64's range"),
]
for name, text, extra, expected in cases:
    path = name.replace(" ", "_") + ".csv"
    if name == "ragged":
        path = "ragged.csv"
    with open(path, "w") as f:
        f.write(text)
    code, out, err = run([NN_CONVERT, "csv", "--input", path, "--out", "bad.h5"] + extra)
    line = error_line(err, "nn_convert")
    check(f"csv error, {name}: exit 2, one line with '{expected}'", code == 2 and expected in line, line)
check("csv errors: no output file left", not os.path.exists("bad.h5") and not any(".tmp." in p for p in os.listdir(".")))

# ---- nn_convert csv ended by a signal: no temporary file stays behind
def temporaries(out):
    return sorted(p for p in os.listdir(".") if p.startswith(f".{out}.tmp."))


def wait_for(what, probe, seconds=120):
    """probe()'s first true value, polled until a deadline that fails naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.002)
    check(f"{what} within {seconds} s", False)
    return None


with open("slow.csv", "w") as f:  # one row per chunk: seconds of writing after the temporary file appears
    f.write("0.5,1.25,0\n" * 200000)
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    # The signals at their default action in the child, whatever the shell that started the test ignores.
    p = subprocess.Popen([NN_CONVERT, "csv", "--input", "slow.csv", "--out", "slow.h5", "--chunk-rows", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL)
                                             for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)])
    seen = wait_for(f"{sig.name}: nn_convert's temporary file appears", lambda: temporaries("slow.h5"))
    p.send_signal(sig)
    err = p.communicate(timeout=120)[1]
    check(f"{sig.name}: nn_convert was stopped by it while writing {seen}", p.returncode == -sig, f"exit {p.returncode}")
    check(f"{sig.name}: no temporary file and no output left", not temporaries("slow.h5") and not os.path.exists("slow.h5"),
          f"{os.listdir('.')}; {err}")
    for t in temporaries("slow.h5"):
        os.remove(t)

# Temporary files left by killed conversions (SIGKILL cannot be caught): a later conversion to the same
# output removes those of processes that no longer exist on this host, in the old form (.NAME.tmp.PID)
# and the new (.NAME.tmp.HOST.PID), and keeps a live process's.
live = subprocess.Popen(["sleep", "600"])
try:  # the sleeper ends on every path, so nothing of the test outlives it
    host = socket.gethostname()
    dead_old, dead_new = ".int2.h5.tmp.999999999", f".int2.h5.tmp.{host}.999999999"
    alive, other_host = f".int2.h5.tmp.{host}.{live.pid}", ".int2.h5.tmp.elsewhere.999999999"
    for t in (dead_old, dead_new, alive, other_host):
        open(t, "w").write("left behind")
    code, out, err = run([NN_CONVERT, "csv", "--input", "int.csv", "--out", "int2.h5", "--label", "0"])
    check("stale temporaries: the conversion succeeds", code == 0, err)
    check("stale temporaries of dead processes are removed, each named in a note",
          not os.path.exists(dead_old) and not os.path.exists(dead_new)
          and all(f"note: removed {t}" in out + err or f"note: removed ./{t}" in out + err for t in (dead_old, dead_new)),
          f"{os.listdir('.')}; {out}{err}")
    check("a live writer's temporary file and another host's are kept",
          os.path.exists(alive) and os.path.exists(other_host))
finally:
    live.kill()
    live.wait()
for t in (alive, other_host):
    os.remove(t)

# ---- nn_convert idx
img = rng.integers(0, 256, size=(300, 7, 4), dtype=np.uint8)
lab = rng.integers(0, 10, size=300, dtype=np.uint8)
with open("img.idx", "wb") as f:
    f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 300, 7, 4) + img.tobytes())
with open("lab.idx", "wb") as f:
    f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 300) + lab.tobytes())
code, out, err = run([NN_CONVERT, "idx", "--images", "img.idx", "--labels", "lab.idx", "--out", "idx.h5"])
with h5py.File("idx.h5", "r") as f:
    check("idx: round trip keeping uint8",
          code == 0 and f["X"].dtype == np.uint8 and np.array_equal(f["X"][()], img.reshape(300, 28))
          and np.array_equal(f["y"][()], lab), err)
with open("gz.idx", "wb") as f:
    f.write(b"\x1f\x8b\x08\x00" + bytes(40))
with open("float.idx", "wb") as f:
    f.write(struct.pack(">BBBBIII", 0, 0, 0x0D, 3, 300, 7, 4) + bytes(4 * 300 * 28))
with open("short.idx", "wb") as f:
    f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 300, 7, 4) + img.tobytes()[:-10])
for name, args, expected in [
        ("wrong magic", ["--images", "gz.idx", "--labels", "lab.idx"], "magic number 0x1f8b0800 is not IDX"),
        ("size does not match the header", ["--images", "short.idx", "--labels", "lab.idx"],
         "holds 8406 bytes, but its header (300 x 7 x 4 unsigned bytes) needs 8416"),
        ("float elements (type 0x0d) in hexadecimal", ["--images", "float.idx", "--labels", "lab.idx"],
         "IDX element type 0x0d (float32) is not supported")]:
    code, out, err = run([NN_CONVERT, "idx"] + args + ["--out", "bad.h5"])
    line = error_line(err, "nn_convert")
    check(f"idx error, {name}: exit 2, one line", code == 2 and expected in line, line)
code, out, err = run([NN_DIST, "--data", "idx.h5", "--hidden", "8", "--epochs", "1", "--standardize", "--quiet"])
check("idx output trains (uint8 X, --standardize)", code == 0, err)

# ---- --standardize against NumPy, and its round trip through the checkpoint
run([NN_DATAGEN, "--kind", "teacher", "--samples", "3000", "--features", "12", "--classes", "4", "--out", "t.h5",
     "--val-out", "v.h5", "--val-samples", "1500", "--seed", "3"])
with h5py.File("t.h5", "a") as f:  # raw features on different scales, one constant
    x = f["X"][()]
    x = x * np.array([1, 1000, 0.001] + [1] * 9, dtype=np.float32) + np.float32(50)
    x[:, 5] = 4.25
    del f["X"]
    f["X"] = x
with h5py.File("v.h5", "a") as f:
    xv = f["X"][()] * np.array([1, 1000, 0.001] + [1] * 9, dtype=np.float32) + np.float32(50)
    xv[:, 5] = 4.25
    del f["X"]
    f["X"] = xv
train = [NN_DIST, "--data", "t.h5", "--val", "v.h5", "--hidden", "32", "--epochs", "4", "--standardize"]
code, out, err = run(train + ["--checkpoint", "std.h5", "--metrics", "m.csv"], ranks=3)
check("--standardize at 3 ranks: exit 0", code == 0, err)
check("--standardize: the constant feature is named in one warning",
      err.count("warning: --standardize: 1 of the 12 features") == 1 and "feature 5)" in err, err)
with h5py.File("std.h5", "r") as f:
    mean, scale = f["preprocess/mean"][()], f["preprocess/scale"][()]
x64 = x.astype(np.float64)
ref_mean, ref_std = x64.mean(axis=0), x64.std(axis=0)
ref_scale = np.where(np.arange(12) == 5, 1.0, ref_std)
check("--standardize: mean equals NumPy's", np.allclose(mean, ref_mean, rtol=1e-12, atol=0),
      f"{np.max(np.abs(mean - ref_mean))}")
check("--standardize: scale equals NumPy's std (1 for the constant feature)",
      np.allclose(scale, ref_scale, rtol=1e-12, atol=0), f"{scale} vs {ref_scale}")
code, out, err = run([NN_DIST, "--data", "t.h5", "--val", "v.h5", "--epochs", "5", "--resume", "std.h5",
                      "--checkpoint", "std5.h5"], ranks=2)
check("--resume applies the stored standardisation (and says so)",
      code == 0 and "applying the standardisation stored in std.h5" in out, out + err)
with h5py.File("std5.h5", "r") as f:
    check("--resume keeps the statistics in the next checkpoint",
          np.array_equal(f["preprocess/mean"][()], mean) and np.array_equal(f["preprocess/scale"][()], scale))
code, out, err = run([NN_DIST, "--data", "t.h5", "--epochs", "1", "--checkpoint", "raw.h5", "--hidden", "4", "--lr",
                      "1e-9", "--quiet"])
check("a model on raw features (for the next check)", code == 0, err)
code, out, err = run([NN_DIST, "--data", "t.h5", "--epochs", "6", "--resume", "raw.h5", "--standardize"])
check("--standardize on a checkpoint trained on raw features: one clear error",
      code == 2 and "was trained on features that were not standardised or scaled" in error_line(err, "nn_dist"), err)

# ---- nn_eval against training's own numbers, at 1 and 3 ranks
last = open("m.csv").read().strip().splitlines()[-1].split(",")
val_loss, val_acc = float(last[3]), float(last[4])
results = {}
for ranks in (1, 3):
    code, out, err = run([NN_EVAL, "--model", "std.h5", "--data", "v.h5", "--json", "--predictions",
                          f"pred{ranks}.h5"], ranks=ranks)
    r = json.loads(out) if code == 0 else {}
    results[ranks] = r
    check(f"nn_eval at {ranks} rank(s): accuracy equals training's val_accuracy",
          code == 0 and f"{r['accuracy']:.6f}" == f"{val_acc:.6f}", f"{r.get('accuracy')} vs {val_acc}; {err}")
    check(f"nn_eval at {ranks} rank(s): loss equals training's val_loss",
          code == 0 and abs(r["loss"] - val_loss) <= 1e-6 * abs(val_loss), f"{r.get('loss')} vs {val_loss}")
with h5py.File("pred1.h5", "r") as f1, h5py.File("pred3.h5", "r") as f3, h5py.File("v.h5", "r") as fv:
    p1, p3, yv = f1["outputs"][()], f3["outputs"][()], fv["y"][()]
    pred = f1["predicted"][()]
check("predictions: the same at 1 and 3 ranks, in file order, rows sum to 1",
      np.allclose(p1, p3, rtol=0, atol=1e-6) and p1.shape == (1500, 4) and np.allclose(p1.sum(1), 1, atol=1e-5))
conf = np.zeros((4, 4))
np.add.at(conf, (yv, pred), 1)
r = results[1]
check("nn_eval: the confusion matrix equals NumPy's from the predictions", np.array_equal(conf, np.array(r["confusion"])))
prec = np.diag(conf) / np.maximum(conf.sum(0), 1)
rec = np.diag(conf) / np.maximum(conf.sum(1), 1)
f1s = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0)
got = np.array([[c["precision"], c["recall"], c["f1"]] for c in r["classes"]])
check("nn_eval: precision, recall and F1 per class equal NumPy's", np.allclose(got, np.stack([prec, rec, f1s], 1), atol=1e-9))
check("nn_eval: accuracy equals the predictions' hit rate", abs(r["accuracy"] - np.mean(pred == yv)) < 1e-9)

# Regression: MSE, MAE and R^2 against NumPy.
run([NN_DATAGEN, "--kind", "regression", "--samples", "2000", "--features", "6", "--targets", "2", "--out", "r.h5"])
run([NN_DIST, "--data", "r.h5", "--hidden", "16", "--epochs", "3", "--checkpoint", "rmodel.h5", "--quiet"])
code, out, err = run([NN_EVAL, "--model", "rmodel.h5", "--data", "r.h5", "--json", "--predictions", "rp.h5"], ranks=3)
rr = json.loads(out) if code == 0 else {}
with h5py.File("rp.h5", "r") as f, h5py.File("r.h5", "r") as fd:
    h, yr = f["outputs"][()].astype(np.float64), fd["y"][()].astype(np.float64)
e = h - yr
r2 = 1 - (e ** 2).sum(0) / ((yr - yr.mean(0)) ** 2).sum(0)
check("nn_eval regression at 3 ranks: MSE, MAE and R^2 equal NumPy's from the predictions",
      code == 0 and abs(rr["mse"] - (e ** 2).mean()) < 1e-6 * (e ** 2).mean() and abs(rr["mae"] - np.abs(e).mean()) < 1e-6
      and np.allclose(rr["r2"], r2, atol=1e-6), f"{rr} vs mse {(e ** 2).mean()} mae {np.abs(e).mean()} r2 {r2}; {err}")

# ---- scripts/nn_model.py both ways
m = nn_model.load("std.h5")
check("nn_model.load: the standardisation is loaded", m["mean"] is not None and np.array_equal(m["scale"], scale))
np_pred = nn_model.predict(m, xv)
check("nn_model.predict (NumPy) equals nn_eval's predictions", np.allclose(np_pred, p1, rtol=0, atol=1e-5),
      f"{np.max(np.abs(np_pred - p1))}")
import torch  # noqa: E402

net = nn_model.to_torch(m)
with torch.no_grad():
    torch_pred = torch.softmax(net(torch.from_numpy(xv)), dim=1).numpy()
check("nn_model.to_torch (PyTorch) equals nn_eval's predictions", np.allclose(torch_pred, p1, rtol=0, atol=1e-5),
      f"{np.max(np.abs(torch_pred - p1))}")

torch.manual_seed(0)
fresh = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.Tanh(), torch.nn.Linear(24, 24), torch.nn.Tanh(),
                            torch.nn.Linear(24, 4))
nn_model.export(fresh, "exported.h5", loss="softmax", mean=ref_mean, scale=ref_scale)
code, out, err = run([NN_EVAL, "--model", "exported.h5", "--data", "v.h5", "--json", "--predictions", "ep.h5"])
with torch.no_grad():
    xs = torch.from_numpy(((xv.astype(np.float64) - ref_mean) / ref_scale).astype(np.float32))
    expected = torch.softmax(fresh(xs), dim=1).numpy()
with h5py.File("ep.h5", "r") as f:
    check("an exported nn.Sequential (h5py's default strings) loads in nn_eval with PyTorch's outputs",
          code == 0 and np.allclose(f["outputs"][()], expected, rtol=0, atol=1e-5), err)
before = json.loads(out)["accuracy"] if code == 0 else 1
code, out, err = run([NN_DIST, "--data", "t.h5", "--val", "v.h5", "--init", "exported.h5", "--epochs", "5",
                      "--checkpoint", "tuned.h5", "--quiet"], ranks=2)
check("nn_dist --init of the exported model trains (exit 0)", code == 0, err)
code, out, err = run([NN_EVAL, "--model", "tuned.h5", "--data", "v.h5", "--json"])
after = json.loads(out)["accuracy"] if code == 0 else 0
check("... and its validation accuracy rose", after > before + 0.1, f"{before} -> {after}")
with h5py.File("tuned.h5", "r") as f:
    check("... keeping the exported standardisation", np.array_equal(f["preprocess/mean"][()], ref_mean))

finish()
