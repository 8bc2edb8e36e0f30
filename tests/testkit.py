"""What the Python end-to-end tests share: named checks that count failures, and how ranks are launched."""
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
