"""What the Python end-to-end tests share: named checks that count failures, and how ranks are launched."""
import os
import subprocess
import sys

failures = 0


def check(name, ok, detail=""):
    """Prints ok/FAILED for one named check (with detail when it failed)."""
    global failures
    print(("ok: " if ok else "FAILED: ") + name + (f"  ({detail})" if detail and not ok else ""))
    if not ok:
        failures += 1


def finish():
    """Prints the failure count and exits non-zero if any check failed."""
    print(f"{failures} failed")
    sys.exit(1 if failures else 0)


def mpirun(mpiexec, ranks):
    """The words that launch `ranks` ranks: 3 ranks on 2 cores (oversubscribed, yielding, unbound).
    Running as root needs OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM), which ctest sets."""
    return [mpiexec, "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1"]


def run_per_rank(mpiexec, ranks, cmd, folder, timeout=120):
    """Runs cmd at `ranks` ranks, each rank's own exit code recorded in `folder` (mpirun is told not to end the
    others when one exits non-zero, so a rank that would hang shows as a timeout). Returns (mpirun's code,
    stdout, stderr, [each rank's code, None where a rank left none])."""
    prefix = os.path.join(folder, f"rank_code{len(os.listdir(folder))}.")
    wrapper = f'"$0" "$@"; code=$?; echo $code > {prefix}$OMPI_COMM_WORLD_RANK; exit $code'
    p = subprocess.run(mpirun(mpiexec, ranks) + ["--mca", "orte_abort_on_non_zero_status", "0", "sh", "-c", wrapper]
                       + cmd, capture_output=True, text=True, timeout=timeout)
    codes = []
    for r in range(ranks):
        try:
            codes.append(int(open(prefix + str(r)).read()))
        except (OSError, ValueError):
            codes.append(None)
    return p.returncode, p.stdout, p.stderr, codes
