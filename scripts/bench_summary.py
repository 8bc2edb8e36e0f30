#!/usr/bin/python3
"""Helpers for scripts/compare_torch.sh.

  bench_summary.py record OUT.jsonl CONFIG REPEAT SIDE WALL_S LOG [key=value ...]
      Find the last 'BENCH_JSON {...}' line in LOG (or, for nn_roofline, the
      'ROOFLINE_JSON {...}' line of nn_dist's products, or of the kernel that
      products=KERNEL names, e.g. products=amx) and append one JSON line
      {"config","repeat","side","wall_s",...extra, "bench": {...}} to OUT.jsonl
      (with "error" instead of "bench" when the run printed none). Exit 1 then.

  bench_summary.py table OUT.jsonl
      For each comparison row: median samples/s (min-max) of side A and of
      side B, and the median (min-max) of the per-repeat ratios A/B, where a
      pair is the two runs of the same config and repeat.
"""

import json
import statistics
import sys

# (row label, config, side A, side B); rows whose config is absent are skipped.
ROWS = [
    ("(a) 1 rank, batch 128: nn_dist vs torch [OpenBLAS default]", "a_1rank_b128", "nn_dist", "torch_default"),
    ("(a) 1 rank, batch 128: nn_dist vs torch [SkylakeX]", "a_1rank_b128", "nn_dist", "torch_skylakex"),
    ("(a) 1 rank, batch 128: nn_dist vs its GEMM roofline (nn_roofline)", "a_1rank_b128", "nn_dist", "roofline"),
    ("(b) 1 rank, batch 32: nn_dist vs torch [OpenBLAS default]", "b_1rank_b32", "nn_dist", "torch_default"),
    ("(b) 1 rank, batch 32: nn_dist vs torch [SkylakeX]", "b_1rank_b32", "nn_dist", "torch_skylakex"),
    ("(b) 1 rank, batch 32: nn_dist vs its GEMM roofline (nn_roofline)", "b_1rank_b32", "nn_dist", "roofline"),
    ("(c) 2 ranks, batch 128/rank: nn_dist vs torch DDP [OpenBLAS default]", "c_2rank_b128", "nn_dist", "torch_default"),
    ("(c) 2 ranks, batch 128/rank: nn_dist vs torch DDP [SkylakeX]", "c_2rank_b128", "nn_dist", "torch_skylakex"),
    ("(d) nn_dist scaling: 2 ranks vs 1 rank, batch 128/rank", "d_scaling_b128", "nn_dist_2rank", "nn_dist_1rank"),
    ("(d) ceiling: 2 ranks with no gradient sum (--allreduce none) vs 1 rank", "d_scaling_b128",
     "nn_dist_2rank_none", "nn_dist_1rank"),
    ("(d) nn_dist 2 ranks, batch 128/rank: --overlap on vs off [--allreduce auto]", "d_overlap_b128",
     "overlap_on", "overlap_off"),
    ("(d) nn_dist 2 ranks, batch 128/rank: --overlap on vs off [--allreduce hierarchical]",
     "d_overlap_hierarchical_b128", "overlap_on", "overlap_off"),
]

# nn_roofline times only the bf16 kernels the CPU runs: a row of one it lacks is left out, not shown empty.
BF16_KERNELS = ("amx", "avx512_bf16")
OPTIONAL_SIDES = {f"roofline_{kernel}" for kernel in BF16_KERNELS}


def bf16_rows(ranks, batch):
    """(e)'s rows: nn_dist --precision bf16 against f32, torch's bf16 autocast and (1 rank) nn_roofline's bf16
    kernels."""
    config = f"e_{ranks}rank_b{batch}"
    where = f"(e) 1 rank, batch {batch}" if ranks == 1 else f"(e) {ranks} ranks, batch {batch}/rank"
    torch = "torch bf16 autocast" if ranks == 1 else "torch DDP bf16 autocast"
    rows = [(f"{where}: nn_dist bf16 vs nn_dist f32", config, "nn_dist_bf16", "nn_dist_f32"),
            (f"{where}: nn_dist bf16 vs {torch}", config, "nn_dist_bf16", "torch_bf16")]
    if ranks == 1:
        rows += [(f"{where}: nn_dist bf16 vs GEMM roofline [{kernel}]", config, "nn_dist_bf16", f"roofline_{kernel}")
                 for kernel in BF16_KERNELS]
    return rows


ROWS += [row for ranks, batch in ((1, 128), (1, 32), (2, 128), (2, 32)) for row in bf16_rows(ranks, batch)]


def record(argv):
    out, config, repeat, side, wall, log = argv[:6]
    rec = {"config": config, "repeat": int(repeat), "side": side, "wall_s": round(float(wall), 2)}
    for kv in argv[6:]:
        k, _, v = kv.partition("=")
        rec[k] = v
    bench = None
    products = rec.get("products", "nn_dist")
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("BENCH_JSON "):
                    bench = json.loads(line[len("BENCH_JSON "):])
                elif line.startswith("ROOFLINE_JSON "):
                    roof = json.loads(line[len("ROOFLINE_JSON "):])
                    if roof.get("products") == products:
                        bench = dict(roof, step_ms=roof["gemm_ms"])
    except (OSError, ValueError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    if bench is None:
        rec.setdefault("error", "no BENCH_JSON line in the output")
        with open(log, errors="replace") as f:
            rec["log_tail"] = f.read()[-600:]
    else:
        rec["bench"] = bench
    with open(out, "a") as f:
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    if bench is None:
        print(f"  {config} #{repeat} {side}: FAILED ({rec['error']})", file=sys.stderr)
        return 1
    extra = f"  [{bench['blas_core']}]" if "blas_core" in bench else ""
    if "allreduce" in bench:
        extra = f"  [allreduce {bench['allreduce']}, overlap {str(bench.get('overlap')).lower()}]"
    if bench.get("precision", "f32") != "f32":
        extra += f"  [{bench['precision']}" + (f", kernel {bench['kernel']}]" if "kernel" in bench else "]")
    if rec.get("core_rtt_ns"):
        extra += f"  [cores {float(rec['core_rtt_ns']):.0f} ns]"
    print(f"  {config} #{repeat} {side:15s} {bench['samples_per_sec']:10.0f} samples/s  "
          f"step {bench['step_ms']:.3f} ms  ({rec['wall_s']:.1f} s){extra}", flush=True)
    return 0


def fmt_range(values):
    return f"{statistics.median(values):8.0f} ({min(values):.0f}-{max(values):.0f})"


def table(argv):
    runs = {}
    cores = {}
    rtts = {}
    with open(argv[0]) as f:
        for line in f:
            rec = json.loads(line)
            if "bench" not in rec:
                continue
            b = rec["bench"]
            runs[(rec["config"], rec["side"], rec["repeat"])] = b["samples_per_sec"]
            if rec.get("core_rtt_ns") and rec["side"].startswith("nn_dist") and b.get("ranks", 1) > 1:
                rtts.setdefault((rec["config"], rec["side"]), []).append(f"{float(rec['core_rtt_ns']):.0f}")
            if "blas_core" in b:
                cores.setdefault(rec["side"], set()).add(b["blas_core"])
    header = ("config", "A samples/s median (min-max)", "B samples/s median (min-max)", "A/B median (min-max)", "n")
    rows = []
    for label, config, a, b in ROWS:
        reps = sorted({r for (c, s, r) in runs if c == config and s in (a, b)})
        av = [runs[(config, a, r)] for r in reps if (config, a, r) in runs]
        bv = [runs[(config, b, r)] for r in reps if (config, b, r) in runs]
        ratios = [runs[(config, a, r)] / runs[(config, b, r)] for r in reps
                  if (config, a, r) in runs and (config, b, r) in runs]
        if (not av and not bv) or (not bv and b in OPTIONAL_SIDES):
            continue
        rows.append((label,
                     fmt_range(av) if av else "-",
                     fmt_range(bv) if bv else "-",
                     f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})" if ratios else "-",
                     str(len(ratios))))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    for (config, side), values in sorted(rtts.items()):
        print(f"cross-core round trip (ns) before each run of {config} {side}: {' '.join(values)}")
    if cores:
        print("OpenBLAS core used by torch: " +
              ", ".join(f"{side}={'/'.join(sorted(c))}" for side, c in sorted(cores.items())))
    return 0


def main():
    if len(sys.argv) >= 8 and sys.argv[1] == "record":
        return record(sys.argv[2:])
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        return table(sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
