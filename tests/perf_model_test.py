#!/usr/bin/python3
"""The performance model and the scaling experiments' scripts:
  - perf_model.py's algorithm costs against their closed forms (ring,
    Rabenseifner, recursive doubling, powers of two and not);
  - its copy of Open MPI 4.1's allreduce decision at the table's boundaries,
    with the fallbacks (segmented ring -> ring -> recursive doubling,
    Rabenseifner -> linear);
  - calibrate on bench files made from known alpha, beta, duplex and gamma
    gives them back; predict's rows add up (efficiency = compute / step,
    global batch = ranks x batch);
  - scripts/validate_model.sh --quick end to end on 2 emulated hosts with a
    shaped link (root and network namespaces; SKIPPED where missing): a
    predicted and a measured step per link, and the plot;
  - scripts/batch_sweep.py on a tiny task: every recipe and batch in its
    summary, and its figure.
Usage: perf_model_test.py BUILD_DIR
"""
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from testkit import check, finish, work_dir  # noqa: E402
import perf_model as pm  # noqa: E402

BUILD = os.path.abspath(sys.argv[1])
PY = "/usr/bin/python3"
work = work_dir()


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-18)


# ---- algorithm costs: alpha, beta, gamma terms separately (set the others to 0)
a, b, g = 1.0, 1.0, 1.0
n = 1 << 20
for p in (2, 4, 16, 1024):
    k = int(math.log2(p))
    check(f"ring, p={p}: 2(p-1) steps, 2n(p-1)/p bytes, n(p-1)/p reduced",
          close(pm.algorithm_cost("ring", p, n, a, 0, 0), 2 * (p - 1))
          and close(pm.algorithm_cost("ring", p, n, 0, b, 0), 2 * n * (p - 1) / p)
          and close(pm.algorithm_cost("ring", p, n, 0, 0, g), n * (p - 1) / p))
    check(f"rabenseifner, p={p}: 2 log2 p steps, 2n(1-1/p) bytes, n(1-1/p) reduced",
          close(pm.algorithm_cost("rabenseifner", p, n, a, 0, 0), 2 * k)
          and close(pm.algorithm_cost("rabenseifner", p, n, 0, b, 0), 2 * n * (1 - 1 / p))
          and close(pm.algorithm_cost("rabenseifner", p, n, 0, 0, g), n * (1 - 1 / p)))
    check(f"recursive doubling, p={p}: log2 p steps of the whole vector",
          close(pm.algorithm_cost("recursive_doubling", p, n, a, 0, 0), k)
          and close(pm.algorithm_cost("recursive_doubling", p, n, 0, b, 0), k * n))
for p in (3, 6, 100):
    k = int(math.floor(math.log2(p)))
    check(f"p={p} (not a power of two): recursive doubling +2 steps and +2n bytes; Rabenseifner +3 steps, +2n bytes",
          close(pm.algorithm_cost("recursive_doubling", p, n, a, 0, 0), k + 2)
          and close(pm.algorithm_cost("recursive_doubling", p, n, 0, b, 0), (k + 2) * n)
          and close(pm.algorithm_cost("rabenseifner", p, n, a, 0, 0), 2 * k + 3)
          and close(pm.algorithm_cost("rabenseifner", p, n, 0, b, 0), 2 * n * (1 - 1 / 2 ** k) + 2 * n))
check("one rank, or nothing to sum: no time", pm.algorithm_cost("ring", 1, n, a, b, g) == 0
      and pm.algorithm_cost("ring", 8, 0, a, b, g) == 0)

# ---- Open MPI 4.1's pick (commutative op, float32), at the table's edges
K = 1024
cases = [
    ((2, 4), "recursive_doubling"),       # the table's ring, but count 1 < p 2: recursive doubling runs
    ((2, 8), "recursive_doubling"),       # the ring only below 8 bytes
    ((2, 4 * K - 4), "recursive_doubling"),
    ((2, 4 * K), "ring"),
    ((2, 64 * K), "ring"),                # the table's segmented ring, segment size 0: the plain ring
    ((2, 256 * K - 4), "ring"),
    ((2, 256 * K), "rabenseifner"),
    ((2, 2143272), "rabenseifner"),
    ((4, 8 * K), "rabenseifner"),
    ((16, 32), "recursive_doubling"),     # segmented ring -> ring, count 8 < 16: recursive doubling
    ((64, 256 * K - 4), "recursive_doubling"),
    ((128, 128 * K - 4), "nonoverlapping"),
    ((128, 128 * K), "recursive_doubling"),
    ((300, 4 * K), "rabenseifner"),
    ((4096, 8), "nonoverlapping"),
]
for (p, nbytes), want in cases:
    got = pm.ompi_allreduce_algorithm(p, nbytes)[0]
    check(f"Open MPI 4.1 pick, p={p}, {nbytes} bytes of floats: {want}", got == want, got)
# Rabenseifner needs count >= 32 at p = 32: 16 doubles fall back to the linear reduce + broadcast
got = pm.ompi_allreduce_algorithm(32, 128, type_size=8)[0]
check("Open MPI 4.1 pick, p=32, 16 doubles: linear", got == "linear", got)

# ---- libnbc's pick for nn_dist's MPI_Iallreduce (not in place): the ring below 4 ranks (nn_dist asks for
# it), then the binomial tree under 64 KiB, Rabenseifner from there when count >= the power of two
for (p, nbytes), want in (((2, 4 * K), "ring"), ((3, 2 * K * K), "ring"), ((4, 64 * K - 4), "binomial"),
                          ((4, 64 * K), "rabenseifner"), ((1024, 64 * K), "rabenseifner"),
                          ((8192, 16 * K), "binomial")):
    got = pm.libnbc_iallreduce_algorithm(p, nbytes)
    check(f"libnbc pick, p={p}, {nbytes} bytes: {want}", got == want, got)
check("traffic: the ring sends 2(p-1)/p n in 2(p-1) steps; a binomial tree's root log2(p) n each way",
      pm.allreduce_traffic("ring", 3, 300.0)[:2] == (4, 400.0)
      and pm.allreduce_traffic("binomial", 4, 100.0)[:2] == (4, 200.0))

# ---- calibrate gives back the parameters its inputs were made from
alpha, beta, duplex, gamma = 12e-6, 0.8e-9, 1.7, 0.05e-9
shm_a, shm_b = 1e-6, gamma
sizes = [4 << k for k in range(0, 23)]
alg = pm.ompi_allreduce_algorithm(2, 1 << 21)[0]
steps = pm.algorithm_cost(alg, 2, 1.0, 1.0, 0, 0)
rows = []
for s in sizes:
    small = s <= 4096
    t_mpi = alpha * steps if small else alpha * steps + pm.algorithm_cost(alg, 2, s, 0, duplex * beta, gamma)
    t_relay = 2 * alpha if small else 2 * alpha + s * (2 * beta + gamma)
    t_exchange = alpha if small else alpha + s * (duplex * beta + gamma)
    t_shm = shm_a if small else shm_a + s * shm_b
    for path, nodes, t in (("mpi", 2, t_mpi), ("p2p-relay", 2, t_relay), ("p2p-exchange", 2, t_exchange),
                           ("nn-shared", 1, t_shm)):
        rows.append({"path": path, "ranks": 2, "nodes": nodes, "bytes": s, "iters": 10, "time_us_median": t * 1e6,
                     "time_us_min": t * 1e6, "algbw_GBps": 0, "busbw_GBps": 0})
bench = os.path.join(work, "bench.csv")
with open(bench, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
roof = os.path.join(work, "roofline.log")
with open(roof, "w") as f:
    f.write('ROOFLINE_JSON {"products":"nn_dist","batch":128,"gemm_ms":2.0,"gflops":150,"samples_per_sec":64000}\n')
prof = os.path.join(work, "profile.log")
with open(prof, "w") as f:
    f.write('BENCH_JSON {"ranks":1,"batch_per_rank":128,"step_ms":2.5,"optimizer_ms":0.2,"data_ms":0.1}\n')
model_path = os.path.join(work, "model.json")
p = subprocess.run([PY, os.path.join(ROOT, "scripts", "perf_model.py"), "calibrate", "--allreduce", bench, "--roofline",
                    roof, "--profile", prof, "--out", model_path], capture_output=True, text=True)
check("calibrate: exit 0", p.returncode == 0, p.stderr)
if p.returncode == 0:
    m = json.load(open(model_path))
    net = m["links"]["network"]
    check("calibrate: alpha, beta, duplex and gamma come back",
          close(net["alpha_s"], alpha, 1e-6) and close(net["beta_s_per_byte"], beta, 1e-6)
          and close(net["duplex"], duplex, 1e-6) and close(m["gamma_s_per_byte"], gamma, 1e-6), json.dumps(net))
    c = m["compute"]
    check("calibrate: the GEMM rate is the model's FLOPs over the products' time; the update and the rest split the step",
          close(c["gemm_gflops"], 2407424 * 128 / 2e-3 * 1e-9, 1e-9)
          and close(c["update_s_per_param"] * 535818 + c["other_s_per_sample"] * 128 + 2e-3, 2.5e-3, 1e-9), json.dumps(c))
    p = subprocess.run([PY, os.path.join(ROOT, "scripts", "perf_model.py"), "predict", "--model", model_path,
                        "--network", "eth25", "--cores-per-node", "4", "--ranks", "1,4,64", "--csv",
                        os.path.join(work, "pred.csv")], capture_output=True, text=True)
    pred = list(csv.DictReader(open(os.path.join(work, "pred.csv")))) if p.returncode == 0 else []
    ok = len(pred) == 3
    for r in pred:
        ok = ok and close(float(r["efficiency"]), float(r["compute_ms"]) / float(r["step_ms"]), 1e-9)
        ok = ok and int(r["global_batch"]) == 128 * int(r["ranks"])
        ok = ok and close(float(r["step_ms"]), float(r["compute_ms"]) + float(r["sum_ms"]), 1e-9)
    check("predict: step = compute + sum, efficiency = compute / step, global batch = ranks x 128; 1 rank sums nothing",
          ok and float(pred[0]["sum_ms"]) == 0 and pred[1]["nodes"] == "1" and pred[2]["nodes"] == "16",
          p.stdout + p.stderr)
    # The overlapped hierarchical sum: on a link with no rate limit only the CPU's part is left (it scales
    # with ranks per core on an emulating machine); on a slow one the link's bytes are, minus the backprop
    # they overlap; K micro-batches per update cost K times the compute and one sum.
    sizes_std = [784, 512, 256, 10]
    fast = pm.predict_step(m, 2, 1, None, sizes_std, 128, compute_s=3e-3)
    shared = pm.predict_step(m, 4, 2, None, sizes_std, 128, compute_s=3e-3, machine_cores=2)
    check("overlapped, 2 x 1 unshaped: the sum is the CPU's (ring: duplex x beta x n, gamma x n/2)",
          close(fast["sum_ms"] * 1e-3, duplex * beta * 535818 * 4 + gamma * 535818 * 2 + 2 * alpha, 0.02), str(fast))
    check("overlapped, 2 x 2 on 2 cores: compute doubles (ranks share the machine's cores)",
          close(shared["compute_ms"], 6.0, 1e-9), str(shared))
    slow = pm.predict_step(m, 2, 1, 0.3, sizes_std, 128, compute_s=3e-3)
    wire = 535818 * 4 * 8 / (0.3e9 * pm.TCP_PAYLOAD_SHARE)
    check("overlapped, 2 x 1 at 300 Mbit/s: the link's time minus at most the backprop it overlaps",
          wire - 3e-3 < slow["sum_ms"] * 1e-3 < wire * 1.01, f"{slow['sum_ms']} ms vs wire {wire * 1e3} ms")
    acc = pm.predict_step(m, 2, 1, 0.3, sizes_std, 128, compute_s=3e-3, accumulate=4)
    check("--accumulate-steps 4: 4x the compute and samples, the same sum",
          close(acc["compute_ms"], 4 * slow["compute_ms"], 1e-9) and close(acc["sum_ms"], slow["sum_ms"], 1e-9)
          and acc["global_batch"] == 4 * slow["global_batch"], str(acc))
    p = subprocess.run([PY, os.path.join(ROOT, "scripts", "perf_model.py"), "predict", "--model", model_path,
                        "--ranks", "0"], capture_output=True, text=True)
    check("predict --ranks 0: refused", p.returncode == 2 and "rank counts must be >= 1" in p.stderr, p.stderr)

# ---- the validation harness, end to end (root and namespaces)
if os.geteuid() != 0:
    print("SKIPPED: validate_model.sh: emulated hosts need root")
elif subprocess.run(["sh", "-c", "command -v ip && command -v unshare && command -v tc"],
                    capture_output=True).returncode != 0:
    print("SKIPPED: validate_model.sh: ip, unshare and tc (iproute2, util-linux) are needed")
else:
    # Beside the build, not in /tmp: the emulated hosts have /tmp and /dev/shm of their own.
    vout = tempfile.mkdtemp(prefix="validate-test.", dir=BUILD)
    env = dict(os.environ, NN_BUILD=BUILD)
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "validate_model.sh"), "--quick", "--repeats", "1",
                        "--rates", "none 1gbit", "--layouts", "1,1", "--modes", "hierarchical", "--out", vout], capture_output=True, text=True, env=env)
    rows = list(csv.DictReader(open(os.path.join(vout, "validation.csv")))) if p.returncode == 0 else []
    good = [r for r in rows if float(r["predicted_step_ms"]) > float(r["compute_ms"]) > 0
            and float(r["measured_step_ms"]) > 0 and math.isfinite(float(r["error_pct"]))]
    check("validate_model.sh --quick: an unshaped and a 1gbit row, each predicted and measured",
          p.returncode == 0 and [r["rate"] for r in good] == ["none", "1gbit"], (p.stdout + p.stderr)[-800:])
    if len(good) == 2:
        check("validate_model.sh: the shaped link's step is longer, measured and predicted",
              float(good[1]["measured_step_ms"]) > float(good[0]["measured_step_ms"])
              and float(good[1]["predicted_step_ms"]) > float(good[0]["predicted_step_ms"]), str(good))
    png = os.path.join(vout, "perf_model.png")
    check("validate_model.sh: the plot is a PNG", os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n")
    shutil.rmtree(vout, ignore_errors=True)

# ---- batch_sweep.py on a tiny task
data = os.path.join(work, "spirals.h5")
subprocess.run([os.path.join(BUILD, "nn_datagen"), "--out", data, "--kind", "spirals", "--samples", "2000",
                "--classes", "3", "--seed", "2"], check=True, capture_output=True)
out = os.path.join(work, "sweep")
p = subprocess.run([PY, os.path.join(ROOT, "scripts", "batch_sweep.py"), "--out", out, "--data", data, "--batches",
                    "32,64", "--epochs", "3", "--warmup-epochs", "1"], capture_output=True, text=True, env=dict(os.environ, NN_BUILD=BUILD))
summary = list(csv.DictReader(open(os.path.join(out, "batch_summary.csv")))) if p.returncode == 0 else []
check("batch_sweep.py: every recipe at every batch, 3 epochs each",
      sorted((r["recipe"], r["global_batch"], r["epochs"]) for r in summary)
      == sorted((k, b, "3") for k in ("constant", "linear", "linear+warmup", "sqrt+warmup") for b in ("32", "64")),
      (p.stdout + p.stderr)[-800:])
png = os.path.join(out, "batch_sweep.png")
check("batch_sweep.py: its figure is a PNG", os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n")
p = subprocess.run([PY, os.path.join(ROOT, "scripts", "batch_sweep.py"), "--batches", "33"], capture_output=True,
                   text=True)
check("batch_sweep.py --batches 33 at 2 ranks: refused", p.returncode == 2 and "--batches" in p.stderr, p.stderr)

finish()
