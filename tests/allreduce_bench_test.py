#!/usr/bin/env python3
"""nn_allreduce_bench at 1, 2 and 3 ranks on one host: every rank exits 0; the CSV has its columns and one row
per path and size (every path that applies on one node, every size); algbw = bytes / time and
busbw = algbw * 2(p-1)/p in the CSV and in the printed table; a path that does not apply is a note, not a row;
a wrong sum (injected through NN_ALLREDUCE_BENCH_FAULT) and a bad flag are one error line and the same
non-zero exit code on every rank.

Usage: allreduce_bench_test.py NN_ALLREDUCE_BENCH MPIEXEC
"""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish, mpirun, run_with_deadline, work_dir  # noqa: E402

BENCH, MPIEXEC = sys.argv[1:3]
TOOL = "nn_allreduce_bench"
PATHS = ["mpi", "impi", "nn-shared", "nn-hierarchical", "nn-mpi"]
P2P = ["p2p-exchange", "p2p-relay"]  # exactly 2 ranks
SIZES = [4 * 4**k for k in range(10)]  # 4 B to 1 MiB with --factor 4
COLUMNS = "path,ranks,nodes,bytes,iters,time_us_median,time_us_min,algbw_GBps,busbw_GBps".split(",")
MIN_ITERS = 3
QUICK = ["--factor", "4", "--min-seconds", "0.005", "--warmup-iters", "2", "--min-iters", str(MIN_ITERS)]

work = work_dir()
runs = 0


def run(ranks, args, env=None):
    """Runs the bench; returns (mpirun's code, each rank's code, stdout, stderr). mpirun is told not to end
    the other ranks when one exits non-zero, so a rank that would hang shows as a timeout."""
    global runs
    runs += 1
    codes = os.path.join(work, f"codes{runs}.")
    wrapper = f'"$0" "$@"; code=$?; echo $code > {codes}$OMPI_COMM_WORLD_RANK; exit $code'
    cmd = mpirun(MPIEXEC, ranks) + ["--mca", "orte_abort_on_non_zero_status", "0", "sh", "-c", wrapper, BENCH] + args
    p = run_with_deadline(cmd, seconds=60, env=dict(os.environ, **(env or {})))
    if p.returncode == 124:  # killed at the deadline: no rank's code counts
        return -1, [], p.stdout, p.stderr
    rank_codes = []
    for r in range(ranks):
        try:
            with open(codes + str(r)) as f:
                rank_codes.append(int(f.read()))
        except OSError:
            rank_codes.append(None)
    return p.returncode, rank_codes, p.stdout, p.stderr


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith(f"{TOOL}: error:")]


def close(a, b, rel=1e-4, abs_tol=0.0):
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_tol)


def table_rows(out):
    """The table's rows: path, bytes, iters, time_us, min_us, algbw, busbw (comments and header skipped)."""
    rows = []
    for line in out.splitlines():
        words = line.split()
        if not words or line.startswith("#") or words[0] == "path":
            continue
        rows.append((words[0], int(words[1]), int(words[2])) + tuple(float(w) for w in words[3:7]))
    return rows


for ranks in (2, 3):
    name = f"{ranks} ranks"
    out_csv = os.path.join(work, f"bench{ranks}.csv")
    code, codes, out, err = run(ranks, QUICK + ["--max-bytes", "1M", "--csv", out_csv])
    check(f"{name}: exit 0 on every rank", code == 0 and codes == [0] * ranks, f"{code} {codes} {err[-500:]}")
    check(f"{name}: the table says what time it reports",
          "median over iterations of the slowest rank's time" in out and "2(p-1)/p" in out, out[:400])
    with open(out_csv, newline="") as f:
        table = list(csv.reader(f))
    check(f"{name}: CSV header", table[0] == COLUMNS, str(table[0]))
    rows = [dict(zip(COLUMNS, row)) for row in table[1:]]
    check(f"{name}: CSV rows, one per path and size", sorted((r["path"], int(r["bytes"])) for r in rows) ==
          sorted((p, s) for p in PATHS + (P2P if ranks == 2 else []) for s in SIZES), f"{len(rows)} rows")
    if ranks != 2:
        check(f"{name}: the 2-rank p2p paths are skipped with a note",
              all(f"# note: skipping {p}: it pairs exactly 2 ranks (here {ranks})" in out for p in P2P), out[-600:])
    check(f"{name}: every row has every column", all(len(row) == len(COLUMNS) for row in table))
    factor = 2 * (ranks - 1) / ranks
    bad = []
    for r in rows:
        t, t_min, alg, bus = (float(r[c]) for c in ("time_us_median", "time_us_min", "algbw_GBps", "busbw_GBps"))
        if not (r["ranks"] == str(ranks) and r["nodes"] == "1" and int(r["iters"]) >= MIN_ITERS):
            bad.append(f"ranks/nodes/iters: {r}")
        if not 0 < t_min <= t:
            bad.append(f"min > median: {r}")
        if not close(alg, int(r["bytes"]) / t / 1e3):
            bad.append(f"algbw != bytes/time: {r}")
        if not close(bus, alg * factor):
            bad.append(f"busbw != algbw * 2(p-1)/p: {r}")
    check(f"{name}: CSV algbw = bytes/time_us_median, busbw = algbw*2(p-1)/p, 0 < min <= median, iters >= "
          f"{MIN_ITERS}", not bad and rows, "; ".join(bad[:3]))
    printed = table_rows(out)
    by_key = {(r["path"], int(r["bytes"])): r for r in rows}
    bad = []
    for path, size, iters, t, t_min, alg, bus in printed:
        r = by_key.get((path, size))
        if r is None or int(r["iters"]) != iters or not close(t, float(r["time_us_median"]), abs_tol=0.006):
            bad.append(f"not as in the CSV: {path} {size}")
        if not close(bus, alg * factor, abs_tol=1e-4 * (1 + factor)):
            bad.append(f"busbw != algbw * 2(p-1)/p: {path} {size} {alg} {bus}")
    check(f"{name}: the table has the CSV's rows and busbw = algbw*2(p-1)/p", len(printed) == len(rows) and not bad,
          f"{len(printed)} rows; " + "; ".join(bad[:3]))

# One rank: shared memory does not apply (a note saying why, no row); MPI's allreduce runs.
out_csv = os.path.join(work, "bench1.csv")
code, codes, out, err = run(1, QUICK + ["--max-bytes", "64", "--paths", "nn-shared,mpi", "--csv", out_csv])
paths = set()
if os.path.exists(out_csv):
    with open(out_csv, newline="") as f:
        paths = {row["path"] for row in csv.DictReader(f)}
check("1 rank: nn-shared skipped with a note, mpi measured", code == 0 and paths == {"mpi"} and
      any(line.startswith("# note: skipping nn-shared: ") for line in out.splitlines()), f"{code} {paths} {out} {err}")

# A wrong sum is an error naming the path and size, on every rank (the last rank adds 1 to one value).
for ranks, path in ((2, "nn-hierarchical"), (3, "nn-shared"), (2, "mpi"), (2, "p2p-exchange"), (2, "p2p-relay")):
    code, codes, out, err = run(ranks, QUICK + ["--max-bytes", "64", "--paths", path],
                                env={"NN_ALLREDUCE_BENCH_FAULT": path})
    lines = error_lines(err)
    check(f"{ranks} ranks, wrong sum from {path}: one error line naming path and size, exit 1 everywhere",
          codes == [1] * ranks and len(lines) == 1 and f"wrong sum: path {path}, 4 bytes: " in lines[0],
          f"{codes} {err[-500:]}")

# A bad flag: one line naming it, exit 2 on every rank.
for ranks, args, flag in ((2, ["--factor", "1"], "--factor"), (3, ["--paths", "mpi,nccl"], "--paths"),
                          (2, ["--min-bytes", "6"], "--min-bytes")):
    code, codes, out, err = run(ranks, args)
    lines = error_lines(err)
    check(f"{ranks} ranks, bad {flag}: one error line naming it, exit 2 on every rank",
          codes == [2] * ranks and len(lines) == 1 and flag in lines[0], f"{codes} {err[-500:]}")

finish()
