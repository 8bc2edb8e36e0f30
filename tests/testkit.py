"""What the Python end-to-end tests share: named checks that count failures, a work folder removed on every
exit, how ranks are launched, and commands run with a deadline."""
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile

failures = 0
DEADLINE = 300  # seconds for one command: far beyond any run in these tests, short of ctest's timeouts


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


def work_dir(keep_on_failure=False):
    """A fresh folder in the temp dir (TMPDIR), named for the test, removed when the test exits: through finish(),
    sys.exit or an uncaught exception (atexit). keep_on_failure: kept when a check failed, and its path printed."""
    path = tempfile.mkdtemp(prefix=os.path.splitext(os.path.basename(sys.argv[0]))[0] + ".")

    def remove():
        if keep_on_failure and failures:
            print(f"files kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def mpirun(mpiexec, ranks):
    """The words that launch `ranks` ranks: 3 ranks on 2 cores (oversubscribed, yielding, unbound).
    Running as root needs OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM), which ctest sets."""
    return [mpiexec, "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1"]


def kill_session(sid):
    """Kills every process of session `sid` (a command started with start_new_session: mpirun puts its ranks in
    process groups of their own, but they stay in its session)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            if int(fields[3]) == sid:
                os.kill(int(name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


def run_with_deadline(cmd, seconds=DEADLINE, text=True, **kwargs):
    """subprocess.run(cmd, capture_output=True) with a deadline: past it, everything the command started is killed
    and the result has returncode 124 and a last stderr line naming the command and the deadline."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, start_new_session=True,
                         **kwargs)
    try:
        out, err = p.communicate(timeout=seconds)
        return subprocess.CompletedProcess(cmd, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        kill_session(p.pid)
        out, err = p.communicate()
        note = f"\n{' '.join(map(str, cmd))}: did not end within {seconds} s (killed)\n"
        return subprocess.CompletedProcess(cmd, 124, out, err + (note if text else note.encode()))


def must_run(cmd, seconds=DEADLINE):
    """Runs a command that prepares a test (e.g. nn_datagen) with a deadline; exits naming it if it fails."""
    p = run_with_deadline(cmd, seconds)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))}: exit code {p.returncode}\n{p.stderr}")
    return p


def run_per_rank(mpiexec, ranks, cmd, folder, timeout=120):
    """Runs cmd at `ranks` ranks, each rank's own exit code recorded in `folder` (mpirun is told not to end the
    others when one exits non-zero, so a rank that would hang shows as a timeout: code 124). Returns (mpirun's code,
    stdout, stderr, [each rank's code, None where a rank left none])."""
    prefix = os.path.join(folder, f"rank_code{len(os.listdir(folder))}.")
    wrapper = f'"$0" "$@"; code=$?; echo $code > {prefix}$OMPI_COMM_WORLD_RANK; exit $code'
    p = run_with_deadline(mpirun(mpiexec, ranks) + ["--mca", "orte_abort_on_non_zero_status", "0", "sh", "-c", wrapper]
                          + cmd, seconds=timeout)
    codes = []
    for r in range(ranks):
        try:
            codes.append(int(open(prefix + str(r)).read()))
        except (OSError, ValueError):
            codes.append(None)
    return p.returncode, p.stdout, p.stderr, codes
