#!/bin/bash
# nn_dist across emulated hosts (cluster/emulated/hosts.sh: network and UTS
# namespaces on a private bridge, TCP between hosts, shared memory inside):
#   - the MPI test suite at 2 hosts x 2 ranks and 3 hosts x 1 rank (the
#     hierarchical sum across nodes: the union gradient, N ranks equal one
#     process, the same bits on every rank and run to run, bitwise resume);
#   - nn_dist at 2 x 2: auto picks the hierarchical sum and says why, and the
#     final parameters equal a one-host run within float tolerance;
#   - --reproducible at 2 x 2 and 3 x 1: the bits of one rank on one host;
#   - nodes of unequal size fall back to Open MPI's allreduce, and say so;
#   - bad data seen only by a rank on the second host stops every rank with
#     one error line and exit code 2;
#   - a link cut mid-run ends the job with a clear line, through the watchdog
#     (--collective-timeout 3) or Open MPI's keepalive (the default 300 s).
# Usage: emulated_hosts_test.sh BUILD_DIR. Exit 77 (ctest: skipped) only where
# the machine cannot make namespaces; everything it creates is removed on exit.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOSTS="$ROOT/cluster/emulated/hosts.sh"
export NN_HOSTS_PREFIX=nnt NN_HOSTS_SUBNET=10.231.9
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
PASS_ENV=(-x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x OMP_NUM_THREADS)

if [[ $(id -u) -ne 0 ]]; then echo "SKIPPED: creating network namespaces needs root"; exit 77; fi
if ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  echo "SKIPPED: iproute2 and util-linux (ip, unshare) are needed"; exit 77
fi
# Beside the build, not in /tmp: each emulated host has a /tmp and /dev/shm of its own.
WORK=$(mktemp -d "$BUILD/hosts-test.XXXXXX")
source "$ROOT/tests/cores.sh"
cores_begin "$WORK/cores"
cleanup() {
  local rc=$?
  if ! cores_end; then echo "FAILED: a process dumped core (backtraces above)"; rc=1; fi
  "$HOSTS" down >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$rc"
}
# Kills the processes named NAME on emulated host HOST only (the hosts share
# the machine's process IDs: pkill would reach every host and the machine).
kill_on_host() {
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}
trap cleanup EXIT
trap 'exit 143' TERM INT
"$HOSTS" down >/dev/null 2>&1  # leftovers of a killed run
if ! "$HOSTS" up 3 >"$WORK/up.log" 2>&1; then
  echo "SKIPPED: cannot create network namespaces here: $(head -c 300 "$WORK/up.log")"; exit 77
fi

failures=0
check() {  # check NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name"; failures=$((failures + 1)); fi
}
on_hosts() {  # on_hosts HOSTLIST NP CMD... (output in $WORK/out, exit code in $rc)
  local hosts=$1 np=$2; shift 2
  timeout -k 5 300 "$HOSTS" mpirun -np "$np" --host "$hosts" --oversubscribe "${PASS_ENV[@]}" "$@" >"$WORK/out" 2>&1
  rc=$?
}

for layout in "nnt1:2,nnt2:2 4" "nnt1:1,nnt2:1,nnt3:1 3"; do
  set -- $layout
  # The suite's files go where every host sees them (rank 0 writes, the others read): TMPDIR.
  mkdir -p "$WORK/tmp"
  TMPDIR="$WORK/tmp" on_hosts "$1" "$2" -x TMPDIR "$BUILD/tests/mpi_tests"
  check "mpi_tests on $1" grep -q "PASSED" "$WORK/out"
  check "mpi_tests on $1: no failure" test "$rc" -eq 0
  [[ $rc -eq 0 ]] || tail -40 "$WORK/out"
done

"$BUILD/nn_datagen" --kind spirals --samples 2000 --out "$WORK/d.h5" >/dev/null
train=(--data "$WORK/d.h5" --hidden 32,16 --epochs 2 --batch-size 25 --seed 5)
mpirun -np 4 --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "$BUILD/nn_dist" "${train[@]}" --quiet \
  --checkpoint "$WORK/one_host.h5" >"$WORK/one_host.out" 2>&1
check "one-host reference run" test -f "$WORK/one_host.h5"

on_hosts nnt1:2,nnt2:2 4 "$BUILD/nn_dist" "${train[@]}" --checkpoint "$WORK/two_hosts.h5"
check "2 x 2: trained" test "$rc" -eq 0
check "2 x 2: auto chose the hierarchical sum and said why" \
  grep -q "gradient sum: hierarchical (2 nodes x 2 rank(s), chosen by --allreduce auto)" "$WORK/out"
[[ $rc -eq 0 ]] || tail -20 "$WORK/out"
check "2 x 2 equals one host within float tolerance" /usr/bin/python3 - "$WORK/one_host.h5" "$WORK/two_hosts.h5" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
worst = max(float(np.max(np.abs(a["model"][k][...] - b["model"][k][...]) / np.maximum(1, np.abs(a["model"][k][...]))))
            for k in a["model"])
print("  largest relative difference:", worst)
sys.exit(0 if worst < 1e-4 else 1)
PY

# The overlapped hierarchical sum keeps the guarantees: the same layout repeats bit for bit, and a
# mid-epoch checkpoint (step 10 of 20 in epoch 2) resumed at 2 x 2 ends with the uninterrupted bits.
# Buckets of 4 KB: the 3 KB gradient of 32,16 at --bucket-mb's default would be one bucket.
hier=("${train[@]}" --allreduce hierarchical --bucket-mb 0.001 --optimizer adam --lr 0.01)
on_hosts nnt1:2,nnt2:2 4 "$BUILD/nn_dist" "${hier[@]}" --checkpoint "$WORK/hier_a.h5"
check "2 x 2 hierarchical: trained in buckets" grep -q "gradient sum: hierarchical" "$WORK/out"
[[ $rc -eq 0 ]] || tail -20 "$WORK/out"
on_hosts nnt1:2,nnt2:2 4 "$BUILD/nn_dist" "${hier[@]}" --checkpoint "$WORK/hier_b.h5"
check "2 x 2 hierarchical: the same layout twice, bit for bit" \
  /usr/bin/python3 "$ROOT/tests/same_bits.py" "$WORK/hier_a.h5" "$WORK/hier_b.h5"
on_hosts nnt1:2,nnt2:2 4 "$BUILD/nn_dist" "${hier[@]}" --checkpoint "$WORK/hier_mid.h5" --checkpoint-every-steps 30 \
  --max-steps 30
on_hosts nnt1:2,nnt2:2 4 "$BUILD/nn_dist" "${hier[@]}" --resume "$WORK/hier_mid.h5" --checkpoint "$WORK/hier_resumed.h5"
check "2 x 2 hierarchical: resumed mid-epoch = uninterrupted, bit for bit" \
  /usr/bin/python3 "$ROOT/tests/same_bits.py" "$WORK/hier_a.h5" "$WORK/hier_resumed.h5"

on_hosts nnt1:2,nnt2:1 3 "$BUILD/nn_dist" "${train[@]}"
check "2 + 1: trained" test "$rc" -eq 0
check "2 + 1: unequal nodes use Open MPI's allreduce and say so" \
  grep -q "gradient sum: mpi (nodes of 1 to 2 ranks, chosen by --allreduce auto)" "$WORK/out"

# --reproducible across hosts: 2 x 2 and 3 x 1 (the hierarchical exact sum, and Open MPI's across all ranks)
# hold the bits of one rank on one host.
repro=(--data "$WORK/d.h5" --hidden 32,16 --epochs 2 --global-batch-size 96 --block-size 8 --seed 5 --reproducible
       --optimizer adam --lr 0.01 --quiet)
"$BUILD/nn_dist" "${repro[@]}" --checkpoint "$WORK/repro_one.h5" >"$WORK/repro_one.out" 2>&1
check "--reproducible: one-rank reference run" test -f "$WORK/repro_one.h5"
for layout in "nnt1:2,nnt2:2 4 hierarchical" "nnt1:2,nnt2:2 4 mpi" "nnt1:1,nnt2:1,nnt3:1 3 hierarchical"; do
  set -- $layout
  rm -f "$WORK/repro.h5"
  on_hosts "$1" "$2" "$BUILD/nn_dist" "${repro[@]}" --allreduce "$3" --checkpoint "$WORK/repro.h5"
  check "--reproducible on $1, --allreduce $3: trained" test "$rc" -eq 0
  [[ $rc -eq 0 ]] || tail -20 "$WORK/out"
  check "--reproducible on $1, --allreduce $3: the bits of one rank on one host" \
    /usr/bin/python3 "$ROOT/tests/same_bits.py" "$WORK/repro_one.h5" "$WORK/repro.h5"
done

# nn_allreduce_bench across hosts: 2 nodes counted; shared memory skipped with a note (2 x 2), and
# the hierarchical sum too on unequal nodes (2 + 1); every other path measured (and its sums checked).
for layout in "nnt1:2,nnt2:2 4 nn-shared" "nnt1:2,nnt2:1 3 nn-shared,nn-hierarchical"; do
  set -- $layout
  on_hosts "$1" "$2" "$BUILD/nn_allreduce_bench" --max-bytes 16K --factor 16 --min-seconds 0.01 --csv "$WORK/bench.csv"
  check "nn_allreduce_bench on $1: exit 0" test "$rc" -eq 0
  check "nn_allreduce_bench on $1: $3 skipped with a note, the others measured on 2 nodes" \
    /usr/bin/python3 - "$WORK/bench.csv" "$WORK/out" "$3" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out, skipped = open(sys.argv[2]).read(), sys.argv[3].split(",")
paths = {"mpi", "impi", "nn-shared", "nn-hierarchical", "nn-mpi"} - set(skipped)
sys.exit(0 if {r["path"] for r in rows} == paths and len(rows) == 4 * len(paths) and
         all(r["nodes"] == "2" for r in rows) and all(f"# note: skipping {p}: " in out for p in skipped) else 1)
PY
  [[ $rc -eq 0 ]] || tail -20 "$WORK/out"
done

# NaN in the last sample: only rank 3, on the second host, reads it.
/usr/bin/python3 - "$WORK/d.h5" "$WORK/nan.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    x = f["X"][...]; x[-1, 0] = float("nan"); g["X"] = x; g["y"] = f["y"][...]
PY
on_hosts nnt1:2,nnt2:2 4 "$BUILD/nn_dist" --data "$WORK/nan.h5" --hidden 8 --epochs 1
check "bad input on host 2: exit code 2" test "$rc" -eq 2
check "bad input on host 2: one error line naming the file" \
  test "$(grep -c 'nn_dist: error: --data .*nan.h5.*NaN' "$WORK/out")" -eq 1
check "bad input on host 2: no abort" bash -c "! grep -q 'MPI_ABORT' '$WORK/out'"

# Shaping: tbf's bucket is 0.5 ms of the rate, at least 32 KB (with 32 KB a 2 Gbit/s link
# carried 2 Gbit/s in total, not each way).
bucket() { ip netns exec nnt2 tc qdisc show dev eth0 | grep -o 'rate [^ ]* burst [0-9]*' | awk '{print $2, $4}'; }
"$HOSTS" shape nnt2 2gbit
read -r shaped_rate shaped_burst <<<"$(bucket)"
check "shape 2gbit: tbf at 2 Gbit/s with a bucket of ~125 KB (0.5 ms)" \
  test "$shaped_rate" = 2Gbit -a "${shaped_burst:-0}" -ge 120000 -a "${shaped_burst:-0}" -le 130000
"$HOSTS" shape nnt2 300mbit
read -r shaped_rate shaped_burst <<<"$(bucket)"
check "shape 300mbit: the 32 KB floor" test "$shaped_rate" = 300Mbit -a "${shaped_burst:-0}" -ge 32000 -a "${shaped_burst:-0}" -le 33000
"$HOSTS" shape nnt2 fast 2>"$WORK/shape.err"
rc=$?
check "shape with a bad rate: exit 2 and one line naming it" \
  bash -c "test $rc -eq 2 && test \$(wc -l <'$WORK/shape.err') -eq 1 && grep -q 'rate fast' '$WORK/shape.err'"
"$HOSTS" unshape nnt2

# A link cut mid-run (host 2's veth taken down). Either the watchdog
# (--collective-timeout) or Open MPI's out-of-band keepalive (hosts.sh's
# settings, ~11 s) notices first; either way the job ends with a clear line.
"$BUILD/nn_datagen" --kind teacher --samples 24000 --features 64 --classes 10 --out "$WORK/t.h5" >/dev/null
for timeout in 3 300; do
  # A file of its own, made empty here: `>FILE &` truncates in the child, which a loaded machine may
  # run after this shell's first grep, and the previous job's "epoch 1/" line then cut the link
  # before the job had started (its daemon on host 2 found no interface: a failed CI run).
  cut_out="$WORK/cut-$timeout.out"
  : >"$cut_out"
  "$HOSTS" mpirun -np 2 --host nnt1:1,nnt2:1 "${PASS_ENV[@]}" "$BUILD/nn_dist" --data "$WORK/t.h5" --hidden 256,128 \
    --batch-size 16 --epochs 100000 --collective-timeout $timeout >"$cut_out" 2>&1 &
  job=$!
  deadline=$((SECONDS + 120))
  until grep -q "^epoch 1/" "$cut_out" || ! kill -0 $job 2>/dev/null || ((SECONDS > deadline)); do sleep 0.1; done
  check "link cut, timeout $timeout: the job ran its first epoch before the cut" grep -q "^epoch 1/" "$cut_out"
  if ! grep -q "^epoch 1/" "$cut_out"; then
    kill -0 $job 2>/dev/null && why="no epoch line within 120 s" || why="the job ended before its first epoch"
    echo "($why; its output:)"
    tail -30 "$cut_out"
  fi
  ip -n nnt2 link set eth0 down
  start=$(date +%s.%N)
  ( sleep 120; kill -KILL $job ) 2>/dev/null &
  guard=$!
  wait $job
  rc=$?
  took=$(echo "$(date +%s.%N) - $start" | bc)
  kill $guard 2>/dev/null
  echo "TIME link cut -> job ends (--collective-timeout $timeout): $took s, exit code $rc"
  check "link cut, timeout $timeout: the job ended (exit code $rc) within 60 s" \
    bash -c "[[ $rc -ne 0 && $rc -ne 137 ]] && (( \$(echo '$took < 60' | bc) ))"
  if [[ $timeout == 3 ]]; then
    check "link cut, timeout 3: the watchdog's line names the wait" \
      grep -q "nn_dist: error: rank [01]: summing the gradients at step [0-9]*: .*aborting the job" "$cut_out"
  else
    check "link cut, timeout 300: Open MPI names the lost host" grep -q "lost communication with a remote daemon" "$cut_out"
  fi
  [[ $rc -ne 0 ]] || cat "$cut_out"
  ip -n nnt2 link set eth0 up
  kill_on_host nnt1 nn_dist; kill_on_host nnt2 nn_dist
  # The next job needs the link back: wait until host 2's eth0 is up again (operstate UP: carrier),
  # since a job started before could fail to launch and leave nothing for the cut to test.
  deadline=$((SECONDS + 60))
  until ip -n nnt2 -br link show eth0 | grep -q " UP " || ((SECONDS > deadline)); do sleep 0.05; done
  ip -n nnt2 -br link show eth0 | grep -q " UP " || echo "host 2's eth0 not up 60 s after it was set up"
done

echo "$failures failed"
[[ $failures -eq 0 ]]
