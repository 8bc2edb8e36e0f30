#!/usr/bin/python3
"""Class and feature names across separately converted files, end to end:
  - nn_convert csv numbers text classes in sorted order (scikit-learn's
    LabelEncoder's), so a training and a test CSV converted apart agree: a
    wine-like set (13 features on scales from 0.4 to 750, three cultivars as
    words), shuffled, whose two files meet the classes in different orders,
    trains to the accuracy its integer-labelled twin reaches;
  - --classes-from imposes the classes of a data file or a checkpoint;
  - files whose classes differ are refused in one line naming both, at 2 ranks
    with every rank exiting 2: --data and --val, several --data, nn_eval's
    --model and --data, --init and --resume;
  - feature names (the CSV header) travel into the data file and the
    checkpoint; other names are refused likewise; unnamed features are
    compared by count only;
  - checkpoints without names (older ones, or written by other tools) load as
    unnamed; scripts/nn_model.py reads and writes the names.
Usage: class_names_test.py NN_DIST NN_EVAL NN_CONVERT MPIEXEC
"""
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish, mpirun, run_per_rank, run_with_deadline, work_dir  # noqa: E402

NN_DIST, NN_EVAL, NN_CONVERT, MPIEXEC = sys.argv[1:5]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import nn_model  # noqa: E402


def run(cmd, ranks=None):
    if ranks:
        cmd = mpirun(MPIEXEC, ranks) + cmd
    p = run_with_deadline(cmd)
    return p.returncode, p.stdout, p.stderr


def error_lines(text, tool):
    return [line for line in text.splitlines() if "error" in line]


def refused(name, tool, cmd, words, ranks=2):
    """cmd (nn_dist or nn_eval) at `ranks` ranks ends with one line '<tool>: error: ...' holding every word, and
    every rank exits 2."""
    code, out, err, codes = run_per_rank(MPIEXEC, ranks, cmd, work)
    lines = error_lines(out + err, tool)
    line = lines[0] if len(lines) == 1 else f"<{len(lines)} error lines>"
    check(f"{name}: every one of {ranks} ranks exits 2", codes == [2] * ranks, f"{codes}; {err[-500:]}")
    check(f"{name}: one line '{tool}: error: ...' naming {words}",
          line.startswith(f"{tool}: error: ") and all(w in line for w in words), f"{line}\n{out}{err[-1000:]}")


def names(path, where=""):
    if not os.path.exists(path):
        return {}
    with h5py.File(path, "r") as f:
        return {k: [s.decode() if isinstance(s, bytes) else s for s in f[where + k][()]]
                for k in ("label_names", "feature_names") if where + k in f}


def decoded(path):
    """The file's labels as their names (None without them)."""
    if "label_names" not in names(path):
        return None
    with h5py.File(path, "r") as f:
        label_names = [s.decode() for s in f["label_names"][()]]
        return [label_names[c] for c in f["y"][()]]


def write_csv(path, x, words, columns, header=True):
    with open(path, "w") as f:
        if header:
            f.write(",".join(["cultivar"] + columns) + "\n")
        for row, word in zip(x, words):
            f.write(",".join([word] + [f"{v:.6g}" for v in row]) + "\n")


def convert(csv, out, extra=()):
    code, o, err = run([NN_CONVERT, "csv", "--input", csv, "--out", out, "--label", "cultivar", *extra])
    check(f"nn_convert {csv} -> {out} {' '.join(extra)}: exit 0", code == 0, err)
    return o


def val_accuracy(metrics):
    return float(open(metrics).read().strip().splitlines()[-1].split(",")[4])


work = work_dir()
os.chdir(work)

# ---- a wine-like set: 178 samples, 13 features on the wine data's scales, three cultivars as words
rng = np.random.default_rng(5)
cultivars = np.array(["barolo", "grignolino", "barbera"])
features = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
            "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315", "proline"]
scale = np.array([13, 2.3, 2.4, 19.5, 100, 2.3, 2.0, 0.36, 1.6, 5.1, 0.96, 2.6, 750])
classes = np.repeat(np.arange(3), (59, 71, 48))
centres = rng.normal(size=(3, 13))
x = ((centres[classes] + 0.5 * rng.normal(size=(178, 13))) * 0.15 + 1) * scale
order = rng.permutation(178)
x, classes = x[order], classes[order]
words = cultivars[classes]
train, test = slice(0, 130), slice(130, 178)
first_seen = lambda w: list(dict.fromkeys(w))  # noqa: E731
check("setup: the two files meet the classes in different orders",
      first_seen(words[train]) != first_seen(words[test]), f"{first_seen(words[train])} {first_seen(words[test])}")
write_csv("train.csv", x[train], words[train], features)
write_csv("test.csv", x[test], words[test], features)
sorted_names = sorted(cultivars)

# ---- converted apart, numbered alike
out = convert("train.csv", "train.h5")
convert("test.csv", "test.h5")
check("train.h5 and test.h5: label_names sorted (LabelEncoder's order) and equal",
      names("train.h5").get("label_names") == sorted_names == names("test.h5").get("label_names"),
      f"{names('train.h5')} {names('test.h5')}")
check("labels decode to the words of the CSV",
      decoded("train.h5") == list(words[train]) and decoded("test.h5") == list(words[test]))
check("feature_names: the header's names but the label column's",
      names("train.h5").get("feature_names") == features == names("test.h5").get("feature_names"),
      names("train.h5").get("feature_names"))
check("nn_convert prints the numbering", "3 classes: 0=barbera 1=barolo 2=grignolino" in out, out)

# The same split with integer labels: what the words should reach.
for part, rows in (("train", train), ("test", test)):
    with h5py.File(f"{part}_int.h5", "w") as f:
        f["X"] = x[rows].astype(np.float32)
        f["y"] = np.searchsorted(sorted_names, words[rows]).astype(np.int64)
fit = ["--hidden", "16", "--epochs", "60", "--batch-size", "8", "--lr", "0.02", "--standardize", "--quiet"]
code, o, err = run([NN_DIST, "--data", "train_int.h5", "--val", "test_int.h5", "--metrics", "int.csv"] + fit, ranks=2)
check("integer labels: trains (exit 0)", code == 0, err)
reference = val_accuracy("int.csv") if code == 0 else 1.0
code, o, err = run([NN_DIST, "--data", "train.h5", "--val", "test.h5", "--metrics", "words.csv", "--checkpoint",
                    "wine.h5"] + fit, ranks=2)
check("words converted apart: trains (exit 0)", code == 0, err)
accuracy = val_accuracy("words.csv") if code == 0 else 0.0
check("words converted apart reach the integer labels' validation accuracy",
      reference >= 0.9 and accuracy == reference, f"{accuracy} vs {reference}")
check("the checkpoint records the classes and features it was trained with (/model/label_names, feature_names)",
      names("wine.h5", "model/") == {"label_names": sorted_names, "feature_names": features}, names("wine.h5", "model/"))
code, o, err = run([NN_EVAL, "--model", "wine.h5", "--data", "test.h5", "--json"], ranks=2)
check("nn_eval on the test file: its accuracy is training's", code == 0 and json.loads(o)["accuracy"] == accuracy,
      o + err)

# ---- a test file without one class: numbered on its own it disagrees, and every meeting refuses it
two = words[test] != "barolo"
write_csv("two.csv", x[test][two], words[test][two], features)
convert("two.csv", "two.h5")
check("setup: two.h5 alone has the classes barbera, grignolino",
      names("two.h5").get("label_names") == ["barbera", "grignolino"])
for what, cmd, tool, words_named in [
        ("--data and --val", [NN_DIST, "--data", "train.h5", "--val", "two.h5"], "nn_dist",
         ["--val two.h5", "--data train.h5", "classes", "barbera, grignolino", "barbera, barolo, grignolino"]),
        ("several --data", [NN_DIST, "--data", "train.h5", "--data", "two.h5"], "nn_dist",
         ["--data two.h5", "--data train.h5", "classes"]),
        ("nn_eval --model and --data", [NN_EVAL, "--model", "wine.h5", "--data", "two.h5"], "nn_eval",
         ["--data two.h5", "--model wine.h5", "classes"]),
        ("--init", [NN_DIST, "--data", "two.h5", "--init", "wine.h5"], "nn_dist",
         ["--data two.h5", "--init wine.h5", "classes"]),
        ("--resume", [NN_DIST, "--data", "two.h5", "--resume", "wine.h5", "--epochs", "61"], "nn_dist",
         ["--data two.h5", "--resume wine.h5", "classes"])]:
    refused(f"other classes, {what}", tool, cmd, words_named)

# ---- --classes-from: the classes of an existing data file or checkpoint
for source in ("train.h5", "wine.h5"):
    out = convert("two.csv", "two_fixed.h5", ["--classes-from", source])
    check(f"--classes-from {source}: the source's classes, the CSV's labels",
          names("two_fixed.h5").get("label_names") == sorted_names and decoded("two_fixed.h5") == list(words[test][two]))
    check(f"--classes-from {source}: said in nn_convert's line", f"classes from --classes-from {source}" in out, out)
code, o, err = run([NN_DIST, "--data", "train.h5", "--val", "two_fixed.h5", "--epochs", "1", "--quiet"], ranks=2)
check("--classes-from: the file trains with --val (exit 0)", code == 0, err)
code, o, err = run([NN_EVAL, "--model", "wine.h5", "--data", "two_fixed.h5", "--json"], ranks=2)
check("--classes-from: nn_eval takes the file, and classifies it", code == 0 and json.loads(o)["accuracy"] >= 0.9, o + err)
with open("nebbiolo.csv", "w") as f:
    f.write(open("two.csv").read() + "nebbiolo," + ",".join(["1"] * 13) + "\n")
lines = len(open("nebbiolo.csv").read().splitlines())
code, o, err = run([NN_CONVERT, "csv", "--input", "nebbiolo.csv", "--out", "neb.h5", "--label", "cultivar",
                    "--classes-from", "train.h5"])
check("--classes-from: a class the source lacks is one error naming the line and the source",
      code == 2 and f"line {lines}, label column 'cultivar': 'nebbiolo' is not one of the 3 classes of --classes-from "
      "train.h5 (barbera, barolo, grignolino)" in err and not os.path.exists("neb.h5"), err)
code, o, err = run([NN_CONVERT, "csv", "--input", "two.csv", "--out", "neb.h5", "--label", "cultivar",
                    "--classes-from", "train_int.h5"])
check("--classes-from a file of integer labels: one error", code == 2 and "--classes-from train_int.h5: has no "
      "'label_names'" in err, err)

# ---- feature names
swapped = [features[2], features[1], features[0]] + features[3:]
write_csv("swapped.csv", x[test][:, [2, 1, 0] + list(range(3, 13))], words[test], swapped)
convert("swapped.csv", "swapped.h5")
refused("other feature names, nn_eval", "nn_eval", [NN_EVAL, "--model", "wine.h5", "--data", "swapped.h5"],
        ["--data swapped.h5", "--model wine.h5", "feature 0 is 'ash'", "'alcohol'"])
refused("other feature names, --val", "nn_dist", [NN_DIST, "--data", "train.h5", "--val", "swapped.h5"],
        ["--val swapped.h5", "--data train.h5", "feature 0 is 'ash'"])
refused("other feature names, --init", "nn_dist", [NN_DIST, "--data", "swapped.h5", "--init", "wine.h5"],
        ["--data swapped.h5", "--init wine.h5", "feature 0 is 'ash'"])
write_csv("plain.csv", x[test], words[test], features, header=False)
code, o, err = run([NN_CONVERT, "csv", "--input", "plain.csv", "--out", "plain.h5", "--header", "no", "--label", "0"])
check("no header: no feature_names, classes named", code == 0 and names("plain.h5").keys() == {"label_names"}, err)
code, o, err = run([NN_EVAL, "--model", "wine.h5", "--data", "plain.h5", "--json"], ranks=2)
check("unnamed features, the same count: nn_eval takes them (the test file's accuracy)",
      code == 0 and json.loads(o)["accuracy"] == accuracy, o + err)
write_csv("twelve.csv", x[test][:, :12], words[test], features, header=False)
run([NN_CONVERT, "csv", "--input", "twelve.csv", "--out", "twelve.h5", "--header", "no", "--label", "0"])
refused("unnamed features, another count", "nn_eval", [NN_EVAL, "--model", "wine.h5", "--data", "twelve.h5"],
        ["--data twelve.h5", "12 features", "--model wine.h5", "13"])

# ---- checkpoints without names: unnamed, compared by count
with h5py.File("wine.h5", "r") as src, h5py.File("old.h5", "w") as dst:  # as written before names were recorded
    for group in src:
        src.copy(group, dst)
    for k in ("model/label_names", "model/feature_names"):
        if k in dst:
            del dst[k]
code, o, err = run([NN_EVAL, "--model", "old.h5", "--data", "two.h5", "--json"], ranks=2)
check("a checkpoint without names: nn_eval takes data of any names", code == 0, err)
code, o, err = run([NN_DIST, "--data", "train.h5", "--init", "old.h5", "--epochs", "1", "--checkpoint", "renamed.h5",
                    "--quiet"], ranks=2)
check("a checkpoint without names: --init takes it, and the next checkpoint has the data's names",
      code == 0 and names("renamed.h5", "model/") == {"label_names": sorted_names, "feature_names": features}, err)

# ---- scripts/nn_model.py
m = nn_model.load("wine.h5")
check("nn_model.load: the names", m.get("label_names") == sorted_names and m.get("feature_names") == features)
check("nn_model.load: no names in an older checkpoint", nn_model.load("old.h5").get("label_names", 0) is None)
net = nn_model.to_torch(m)
nn_model.export(net, "exported.h5", loss="softmax", label_names=["a", "b", "c"], feature_names=features)
refused("an exported model's other classes, nn_eval", "nn_eval", [NN_EVAL, "--model", "exported.h5", "--data",
                                                                   "test.h5"], ["--data test.h5", "--model exported.h5"])
nn_model.export(net, "exported.h5", loss="softmax", label_names=sorted_names, feature_names=features)
code, o, err = run([NN_EVAL, "--model", "exported.h5", "--data", "test.h5", "--json"])
check("an exported model with the same names: nn_eval gives the checkpoint's accuracy",
      code == 0 and json.loads(o)["accuracy"] == accuracy, o + err)

finish()
