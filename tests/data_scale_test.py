#!/usr/bin/python3
"""Real data as it comes, end to end:
  - several files as one dataset (--data a --data b, and @list.txt): the same
    final bits as one file holding the same rows, at 2 and 3 ranks, with file
    boundaries inside ranks' shards; mismatched files are one error naming both;
  - chunked (read directly: odd chunk shapes, h5py's chunks=True) and gzip-compressed
    HDF5: the same bits as a contiguous file, in memory, streamed and
    --reproducible;
  - uint8 and uint16 X stay compact in memory and give the same bits as the
    same values stored as float32 (raw, --scale 1/255, --standardize); each
    rank's peak RSS is measured, uint8 against float32;
  - streaming (--cache-mb): without shuffle the in-memory run's bits (one
    file or four, uint8 or float32, compressed too); resuming mid-epoch gives
    the uninterrupted run's bits; each rank's peak RSS stays under a tiny-data
    run's plus the cache plus 8 MiB, for a shard six times the cache; X read
    with pread (whole rows, or gathered from chunks) and X copied through
    HDF5 (gzip, float64, chunks behind a user block) give
    the same shuffled bits;
  - --val-split: the same held-out samples at any rank count, about the
    asked fraction, and training reports validation on them;
  - progress within an epoch: plain lines (--progress lines, or auto under a
    batch system) at most one per --log-every-seconds, one line rewritten in
    place on a terminal, nothing when off; the epochs last a few seconds on
    any machine (the data is sized from a measured speed).
Every command has a deadline (testkit.run).
Usage: data_scale_test.py NN_DIST NN_DATAGEN MPIEXEC
"""
import math
import os
import re
import select
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import DEADLINE, check, finish, kill_session, must_run, run_with_deadline, work_dir  # noqa: E402

NN_DIST, NN_DATAGEN, MPIEXEC = sys.argv[1:4]
SAME_BITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "same_bits.py")
def run(args, ranks=2, wrap=None):
    cmd = [MPIEXEC, "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1"]
    cmd += (wrap or []) + [NN_DIST] + args
    p = run_with_deadline(cmd)
    return p.returncode, p.stdout, p.stderr


def peak_rss(args, ranks=2):
    """Each rank's peak RSS in KiB (/usr/bin/time's "Maximum resident set size"), one file per rank:
    ranks writing to one stream interleave their lines."""
    prefix = os.path.join(work, f"rss{len(os.listdir(work))}")
    wrap = ["sh", "-c", '/usr/bin/time -f "%M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"', prefix]
    code, out, err = run(args, ranks, wrap)
    values = []
    for r in range(ranks):
        try:
            values.append(int(open(f"{prefix}.{r}").read().split()[-1]))
        except (OSError, ValueError, IndexError):
            pass
    return values


def same_bits(a, b):
    return run_with_deadline(["/usr/bin/python3", SAME_BITS, a, b]).returncode == 0


work = work_dir()
os.chdir(work)
must_run([NN_DATAGEN, "--kind", "teacher", "--samples", "3001", "--features", "24", "--classes", "5", "--out",
          "all.h5", "--seed", "4"])
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
# Unfiltered chunks are read directly and gathered: partial edge chunks both ways
# (7, 5), one row a chunk, one feature a chunk, and h5py's own choice.
chunked = {"c7x5": (7, 5), "c1x24": (1, 24), "c3001x1": (3001, 1), "cauto": True}
for name, shape in chunked.items():
    with h5py.File(f"{name}.h5", "w") as g:
        g.create_dataset("X", data=X, chunks=shape)
        g.create_dataset("y", data=y, chunks=True)
for name in chunked:
    code, out, err = run(train + ["--data", f"{name}.h5", "--checkpoint", f"{name}_model.h5"])
    check(f"{name}.h5 (X chunked {chunked[name]}, unfiltered) in memory: the bits of the contiguous file",
          code == 0 and same_bits("one2.h5", f"{name}_model.h5"), err)
repro = ["--hidden", "16", "--epochs", "2", "--seed", "2", "--global-batch-size", "24", "--reproducible",
         "--block-size", "4"]
run(repro + ["--data", "all.h5", "--checkpoint", "repro_all.h5"])
for name in ("c7x5", "cauto"):
    code, out, err = run(repro + ["--data", f"{name}.h5", "--checkpoint", f"repro_{name}.h5"], 3)
    check(f"--reproducible on {name}.h5 (chunks read directly) at 3 ranks: the bits of the contiguous file at 2",
          code == 0 and same_bits("repro_all.h5", f"repro_{name}.h5"), err)

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
rss = {kind: peak_rss(small + ["--scale", "1/255", "--data", f"{kind}.h5"]) for kind in ("u8", "f32")}
print(f"peak RSS per rank, 60000 x 784: uint8 {rss['u8']} KiB, float32 {rss['f32']} KiB")
data_kib = n * d / 2 / 1024  # one rank's uint8 shard
check("uint8 X is kept as bytes: each rank's peak RSS is below float32's by at least 2.5x its uint8 shard",
      len(rss["u8"]) == 2 and len(rss["f32"]) == 2 and max(rss["u8"]) + 2.5 * data_kib < min(rss["f32"]),
      f"{rss}, shard {data_kib:.0f} KiB")

# ---- streaming (--cache-mb): bounded memory, the same samples, exact resume
for kind in ("f32", "u8"):
    run(small + ["--no-shuffle", "--data", f"{kind}.h5", "--checkpoint", f"mem-{kind}.h5"])
    code, out, err = run(small + ["--no-shuffle", "--data", f"{kind}.h5", "--cache-mb", "4", "--checkpoint",
                                  f"stream-{kind}.h5"])
    check(f"streaming {kind} without shuffle: the in-memory run's bits (file order both)",
          code == 0 and "streaming: 4 MiB" in out and same_bits(f"mem-{kind}.h5", f"stream-{kind}.h5"), err)
code, out, err = run(train + ["--no-shuffle", "--data", "part0.h5", "--data", "@lists/parts.txt", "--data", "part3.h5",
                              "--cache-mb", "0.05", "--checkpoint", "stream-multi.h5"], 3)
run(train + ["--no-shuffle", "--data", "all.h5", "--checkpoint", "mem-all.h5"], 3)
check("streaming 4 files at 3 ranks, windows smaller than a file: the bits of one file in memory",
      code == 0 and same_bits("mem-all.h5", "stream-multi.h5"), err)
run(small + ["--no-shuffle", "--data", "u8.h5", "--standardize", "--checkpoint", "mem-std.h5"])
code, out, err = run(small + ["--no-shuffle", "--data", "u8.h5", "--standardize", "--cache-mb", "4", "--checkpoint",
                              "stream-std.h5"])
with h5py.File("mem-std.h5", "r") as a, h5py.File("stream-std.h5", "r") as b:
    check("streaming --standardize: the in-memory statistics and bits (its passes over the file agree)",
          code == 0 and np.array_equal(a["preprocess/scale"][()], b["preprocess/scale"][()])
          and np.array_equal(a["preprocess/mean"][()], b["preprocess/mean"][()]) and same_bits("mem-std.h5", "stream-std.h5"),
          err)
# X read with pread (contiguous or chunked, unfiltered, float32) and X copied
# (chunked and compressed, or float64 converted on reading) give the same
# shuffled windows, so the same bits; so does a file with a 512-byte user
# block before its HDF5 data (the read's offsets must count it).
with h5py.File("f64.h5", "w") as g:
    g["X"], g["y"] = X.astype(np.float64), y
with h5py.File("ublock.h5", "w", userblock_size=512) as g:
    g["X"], g["y"] = X, y
# Chunks behind a user block, and a chunk never written (HDF5 reads it as
# the fill value, 0), are read through HDF5: the latter gives the bits of a
# contiguous file holding those zeros.
with h5py.File("c7x5_ublock.h5", "w", userblock_size=512) as g:
    g.create_dataset("X", data=X, chunks=(7, 5))
    g["y"] = y
holes = X.copy()
holes[7:14, 5:10] = 0
with h5py.File("holes.h5", "w") as g:
    d = g.create_dataset("X", shape=X.shape, dtype=X.dtype, chunks=(7, 5))
    d[:7], d[14:], d[7:14, :5], d[7:14, 10:] = X[:7], X[14:], X[7:14, :5], X[7:14, 10:]  # chunk (1, 1) never written
    g["y"] = y
with h5py.File("holes_ref.h5", "w") as g:
    g["X"], g["y"] = holes, y
stream_runs = {}
for name in ("all", "gz", "f64", "ublock", "c7x5", "c1x24", "c3001x1", "cauto", "c7x5_ublock", "holes", "holes_ref"):
    code, out, err = run(train + ["--data", f"{name}.h5", "--cache-mb", "0.05", "--checkpoint", f"stream-{name}.h5"])
    stream_runs[name] = (code, out, err)
    check(f"streaming {name}.h5, shuffled: exit 0", code == 0, err)
# Chunked X is read with io_uring where the kernel allows it, else with pread.
gathered, whole = "rows gathered from its chunks", "X read with pread, whole rows"
for name, how in (("all", whole), ("gz", "X copied"), ("f64", "X copied"),
                  ("ublock", whole), ("c7x5", f"{gathered} (5 a row)"),
                  ("c1x24", whole), ("c3001x1", f"{gathered} (24 a row)"),
                  ("cauto", f"{gathered} (4 a row)"), ("c7x5_ublock", "X copied"), ("holes", "X copied")):
    check(f"streaming {name}.h5 says '{how}'", how in stream_runs[name][1], stream_runs[name][1])
for name in ("gz", "f64", "ublock", "c7x5", "c1x24", "c3001x1", "cauto", "c7x5_ublock"):
    check(f"streaming {name}.h5, shuffled: the bits of the contiguous file",
          same_bits("stream-all.h5", f"stream-{name}.h5"))
check("streaming holes.h5 (a chunk never written, read through HDF5): the bits of a contiguous file with its zeros",
      same_bits("stream-holes_ref.h5", "stream-holes.h5") and not same_bits("stream-all.h5", "stream-holes.h5"))
# Mid-epoch resume while streaming: the same bits as the run that never stopped.
ref = [a if a != "1" else "2" for a in small] + ["--data", "u8.h5", "--scale", "1/255", "--cache-mb", "4"]  # 2 epochs
run(ref + ["--checkpoint-dir", "sref", "--checkpoint-every-steps", "150", "--keep-checkpoints", "100"])
mids = sorted(f for f in os.listdir("sref") if int(f[5:15]) % 469)
final = sorted(os.listdir("sref"))[-1]
code, out, err = run(ref + ["--resume", f"sref/{mids[2]}", "--checkpoint", "sresumed.h5"])
check(f"streaming: resumed mid-epoch from {mids[2]}: the uninterrupted run's bits",
      code == 0 and same_bits(f"sref/{final}", "sresumed.h5"), err)
# Memory: 60000 x 784 float32 is 94 MB per rank at 2 ranks; --cache-mb 16 holds a sixth of it.
rss_base = max(peak_rss(small + ["--data", "all.h5"]) or [0])
rss_stream = peak_rss(small + ["--data", "f32.h5", "--cache-mb", "16"])
print(f"peak RSS per rank: streaming 60000 x 784 float32 with --cache-mb 16: {rss_stream} KiB; in memory: {rss['f32']} KiB;"
      f" the same program on a 3001 x 24 file: {rss_base} KiB")
check("streaming: every rank's peak RSS is under the tiny-data run's + 16 MiB cache + 8 MiB",
      len(rss_stream) == 2 and max(rss_stream) <= rss_base + 16 * 1024 + 8 * 1024, f"{rss_stream} vs {rss_base}")
with h5py.File("f32_chunked.h5", "w") as g:  # h5py's chunks: (938, 25), 32 a row
    g.create_dataset("X", data=pixels.astype(np.float32), chunks=True)
    g.create_dataset("y", data=labels, chunks=True)
rss_chunked = peak_rss(small + ["--data", "f32_chunked.h5", "--cache-mb", "16"])
print(f"peak RSS per rank: streaming the same from chunks (938, 25): {rss_chunked} KiB")
check("streaming chunked X (read directly, gathered): every rank's peak RSS is under the same bound",
      len(rss_chunked) == 2 and max(rss_chunked) <= rss_base + 16 * 1024 + 8 * 1024, f"{rss_chunked} vs {rss_base}")
code, out, err = run(["--data", "all.h5", "--val-split", "0.1", "--cache-mb", "8"])
check("--val-split with streaming: one clear error", code == 2 and "give --val" in err, err)

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

# ---- progress within an epoch
# One rank run directly (no mpirun), so this process owns its stdout: a pty
# (a terminal), or a pipe (a log file).
def run_direct(args, tty, env=None):
    env = {k: v for k, v in dict(os.environ, **(env or {})).items() if v != ""}  # "": unset it
    if not tty:
        p = run_with_deadline([NN_DIST] + args, env=env)
        return p.returncode, p.stdout
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([NN_DIST] + args, stdout=slave, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    os.close(slave)
    chunks = []
    end = time.monotonic() + DEADLINE
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([master], [], [], left)[0]:
            kill_session(p.pid)
            chunks.append(f"\nnn_dist did not end within {DEADLINE} s (killed)".encode())
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(), b"".join(chunks).decode(errors="replace")


# The checks need epochs of a few seconds on any machine: several progress
# lines at an interval set from the epoch's length, and several of the
# terminal's rewrites (every 0.5 s, fixed). So the data follows the measured
# speed: u8.h5 (60000 rows) listed as many times as an epoch of
# EPOCH_SECONDS needs at the samples/s of a 300-step run.
EPOCH_SECONDS = 3.0
model = ["--scale", "1/255", "--hidden", "512,256", "--lr", "0.0005"]
code, out = run_direct(["--data", "u8.h5"] + model + ["--epochs", "1", "--max-steps", "300", "--progress", "off"],
                       tty=False)
m = re.search(r"^epoch 1/1 .*  (\d+) samples/s", out, re.M)
rate = int(m.group(1)) if code == 0 and m else 0
check("progress: a 300-step run measures the speed", rate > 0, out[-300:])
copies = max(1, math.ceil(EPOCH_SECONDS * rate / n))
steps = copies * n // 32  # batch 32 on one rank
slow = ["--data", "u8.h5"] * copies + model + ["--epochs", "2"]
interval = EPOCH_SECONDS / 20
print(f"progress: {rate} samples/s: u8.h5 x {copies}, {steps} steps per epoch (about {copies * n / max(rate, 1):.1f} s), "
      f"--log-every-seconds {interval}")
PROGRESS = re.compile(r"epoch 1/2  step (\d+)/(\d+) \((\d+)%\)  (\d+) samples/s  ETA [0-9.]+ s")
batch_env = {k: "" for k in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID")}
code, out = run_direct(slow + ["--progress", "lines", "--log-every-seconds", str(interval)], tty=False)
seen = [(int(a), int(b), int(c)) for a, b, c, _ in PROGRESS.findall(out)]
lines_ok = all(l.startswith("progress: ") for l in out.splitlines() if "ETA" in l)
check(f"--progress lines: several plain lines in epoch 1 (steps rising, below the epoch's {steps}: its last step has "
      "the epoch line, percent right)",
      code == 0 and lines_ok and len(seen) >= 3 and all(b == steps for _, b, _ in seen)
      and all(x[0] < y[0] for x, y in zip(seen, seen[1:])) and seen[-1][0] < steps
      and all(abs(c - 100 * a / b) <= 0.5 for a, b, c in seen), out[-600:])
m = re.search(r"^epoch 1/2 .*  ([0-9.]+) s$", out, re.M)
epoch_seconds = float(m.group(1)) if m else 0
check(f"--progress lines: at most one line per --log-every-seconds {interval} ({len(seen)} in epoch 1 of "
      f"{epoch_seconds} s)", m is not None and len(seen) <= (epoch_seconds + 0.005) / interval, out[-600:])
code, out = run_direct(slow, tty=True, env=batch_env)
rewrites = out.count("\r\x1b[K")
check("--progress auto on a terminal: one line rewritten in place (\\r, erase line), cleared before the epoch line",
      code == 0 and rewrites >= 3 and "progress: " not in out and re.search(r"\r\x1b\[Kepoch\s+1", out) is not None,
      repr(out[-400:]))
code, out = run_direct(slow + ["--log-every-seconds", str(interval)], tty=True, env={"SLURM_JOB_ID": "12345"})
check("--progress auto on a terminal under SLURM: plain lines, nothing rewritten",
      code == 0 and "\x1b[K" not in out and "progress: epoch 1/2" in out, repr(out[-400:]))
code, out = run_direct(slow + ["--progress", "off"], tty=True, env=batch_env)
check("--progress off: no progress output (where auto rewrote a line above)", code == 0 and "ETA" not in out,
      repr(out[-300:]))

finish()
