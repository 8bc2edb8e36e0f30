#!/usr/bin/python3
"""Real data as it comes, end to end:
  - several files as one dataset (--data a --data b, and @list.txt): the same
    final bits as one file holding the same rows, at 2 and 3 ranks, with file
    boundaries inside ranks' shards; mismatched files are one error naming both;
  - chunked and gzip-compressed HDF5: the same bits as a contiguous file;
  - uint8 and uint16 X stay compact in memory and give the same bits as the
    same values stored as float32 (raw, --scale 1/255, --standardize); each
    rank's peak RSS is measured, uint8 against float32;
  - --val-split: the same held-out samples at any rank count, about the
    asked fraction, and training reports validation on them.
Usage: data_scale_test.py NN_DIST NN_DATAGEN MPIEXEC
"""
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish  # noqa: E402

NN_DIST, NN_DATAGEN, MPIEXEC = sys.argv[1:4]
SAME_BITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "same_bits.py")
def run(args, ranks=2, wrap=None):
    cmd = [MPIEXEC, "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1"]
    cmd += (wrap or []) + [NN_DIST] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def same_bits(a, b):
    return subprocess.run(["/usr/bin/python3", SAME_BITS, a, b], capture_output=True).returncode == 0


work = tempfile.mkdtemp()
os.chdir(work)
subprocess.run([NN_DATAGEN, "--kind", "teacher", "--samples", "3001", "--features", "24", "--classes", "5",
                "--out", "all.h5", "--seed", "4"], check=True, capture_output=True)
with h5py.File("all.h5", "r") as f:
    X, y = f["X"][()], f["y"][()]
train = ["--hidden", "16", "--epochs", "2", "--batch-size", "16", "--seed", "2"]

# ---- several files as one dataset
cuts = [0, 500, 507, 1999, 3001]  # a 7-row file, and boundaries inside every rank's shard at 2 and 3 ranks
for i in range(4):
    with h5py.File(f"part{i}.h5", "w") as g:
        g["X"], g["y"] = X[cuts[i]:cuts[i + 1]], y[cuts[i]:cuts[i + 1]]
os.makedirs("lists", exist_ok=True)
with open("lists/parts.txt", "w") as f:
    f.write("# the middle two\n../part1.h5\n\n../part2.h5\n")
for ranks in (2, 3):
    run(train + ["--data", "all.h5", "--checkpoint", f"one{ranks}.h5"], ranks)
    code, out, err = run(train + ["--data", "part0.h5", "--data", "@lists/parts.txt", "--data", "part3.h5",
                                  "--checkpoint", f"multi{ranks}.h5"], ranks)
    check(f"{ranks} ranks: 4 files (one via @list, relative to it) train: exit 0", code == 0, err)
    check(f"{ranks} ranks: 4 files give the bits of one file with the same rows",
          same_bits(f"one{ranks}.h5", f"multi{ranks}.h5"))
with h5py.File("narrow.h5", "w") as g:
    g["X"], g["y"] = X[:10, :20], y[:10]
with h5py.File("floaty.h5", "w") as g:
    g["X"], g["y"] = X[:10], y[:10].astype(np.float32)
for name, other, expected in [
        ("feature counts", "narrow.h5", "--data narrow.h5: has 20 features, but --data part0.h5 has 24"),
        ("label kinds", "floaty.h5", "--data floaty.h5: 'y' holds 1 float target column(s), but --data part0.h5 holds integer labels")]:
    code, out, err = run(train + ["--data", "part0.h5", "--data", other])
    lines = [l for l in err.splitlines() if l.startswith("nn_dist: error:")]
    check(f"mismatched {name}: exit 2, one line naming both files",
          code == 2 and len(lines) == 1 and expected in lines[0], err[-400:])

# ---- chunked and compressed HDF5
with h5py.File("gz.h5", "w") as g:
    g.create_dataset("X", data=X, chunks=(64, 24), compression="gzip", compression_opts=6, shuffle=True)
    g.create_dataset("y", data=y, chunks=(256,), compression="gzip")
code, out, err = run(train + ["--data", "gz.h5", "--checkpoint", "gz_model.h5"])
check("chunked, gzip-compressed X and y: the bits of the contiguous file", code == 0 and same_bits("one2.h5", "gz_model.h5"),
      err)

# ---- uint8 / uint16 kept compact
rng = np.random.default_rng(5)
n, d = 60000, 784
pixels = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
pixels[:, :10] = 0  # constant border pixels, as MNIST has
w = rng.normal(size=(d, 10))
labels = np.argmax((pixels / 255.0) @ w, axis=1)
for name, data in (("u8", pixels), ("u16", pixels.astype(np.uint16) * 3), ("f32", pixels.astype(np.float32))):
    with h5py.File(f"{name}.h5", "w") as g:
        g["X"], g["y"] = data, labels
with h5py.File("f32x3.h5", "w") as g:  # the uint16 values as float32
    g["X"], g["y"] = pixels.astype(np.float32) * 3, labels
small = ["--hidden", "32", "--epochs", "1", "--batch-size", "64", "--lr", "0.0005"]  # whole epochs: a checkpoint at the end
for flags in ([], ["--scale", "1/255"], ["--standardize"]):
    tag = " ".join(flags) or "raw"
    for kind, ref in (("u8", "f32"), ("u16", "f32x3")):
        run(small + flags + ["--data", f"{kind}.h5", "--checkpoint", f"{kind}.ck.h5"])
        run(small + flags + ["--data", f"{ref}.h5", "--checkpoint", f"{ref}.ck.h5"])
        check(f"{kind} X ({tag}): the bits of the same values stored as float32",
              same_bits(f"{kind}.ck.h5", f"{ref}.ck.h5"))
rss = {}
for kind in ("u8", "f32"):
    code, out, err = run(small + ["--scale", "1/255", "--data", f"{kind}.h5"], 2, ["/usr/bin/time", "-f", "RSS %M"])
    rss[kind] = [int(v) for v in re.findall(r"RSS (\d+)", err)]
print(f"peak RSS per rank, 60000 x 784: uint8 {rss['u8']} KiB, float32 {rss['f32']} KiB")
data_kib = n * d / 2 / 1024  # one rank's uint8 shard
check("uint8 X is kept as bytes: each rank's peak RSS is below float32's by at least 2.5x its uint8 shard",
      len(rss["u8"]) == 2 and len(rss["f32"]) == 2 and max(rss["u8"]) + 2.5 * data_kib < min(rss["f32"]),
      f"{rss}, shard {data_kib:.0f} KiB")

# ---- --val-split
held = {}
for ranks in (1, 3):
    code, out, err = run(["--data", "all.h5", "--hidden", "16", "--epochs", "1", "--val-split", "0.2"], ranks)
    m = re.search(r"--val-split 0.2: (\d+) of the 3001 samples held out for validation, (\d+) for training", out)
    held[ranks] = m.groups() if m else None
    check(f"--val-split at {ranks} rank(s): reported, and validation runs",
          code == 0 and m is not None and "val_loss" in out, out + err)
check("--val-split: the same samples held out at 1 and 3 ranks", held[1] is not None and held[1] == held[3], str(held))
if held[1]:
    k = int(held[1][0])
    check("--val-split 0.2: about a fifth (within 4 sigma)", abs(k - 600.2) < 4 * (3001 * 0.2 * 0.8) ** 0.5, str(k))
code, out, err = run(["--data", "all.h5", "--val-split", "0.2", "--val", "all.h5"])
check("--val-split with --val: one clear error", code == 2 and "--val-split and --val: give one, not both" in err, err)

finish()
