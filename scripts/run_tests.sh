#!/usr/bin/env bash
# README command 2: install what is missing, build everything, run the whole
# test suite (unit, MPI at 1/2/3 ranks, end-to-end) under ctest, and fail if
# the tests left anything in their temp dir.
set -euo pipefail
source "$(dirname "$0")/common.sh"
"$NN_ROOT/scripts/install_deps.sh"
nn_build
cd "$NN_BUILD"

# The tests' temp dir (TMPDIR, which C++'s temp_directory_path, Python's tempfile
# and mktemp follow): a fresh folder beside the build, so that the emulated hosts,
# which have a /tmp of their own, see it too. Only ctest's environment has it.
tests_tmp=$(mktemp -d "$NN_BUILD/test-tmp.XXXXXX")

# The processes of this run that are still alive (they inherited its TMPDIR).
run_processes() {
  grep -lsxzF "TMPDIR=$tests_tmp" /proc/[0-9]*/environ | sed 's|^/proc/\([0-9]*\)/environ$|\1|' || true
}
# What is mounted in the temp dir (a test killed with its tmpfs mounted), deepest first.
mounts_in_tmp() {
  awk -v d="$tests_tmp/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
cleanup() {
  local mount
  for mount in $(mounts_in_tmp); do umount -l "$mount" || true; done
  rm -rf "$tests_tmp"
}
trap cleanup EXIT

# Fails, naming each, if the tests left a process running, a mount or an entry in
# the temp dir. Processes are waited for first: what they still write is theirs.
check_nothing_left() {
  local left=0 pid entry
  local deadline=$((SECONDS + 60))
  while [[ -n $(run_processes) ]] && ((SECONDS < deadline)); do sleep 0.2; done
  for pid in $(run_processes); do
    echo "run_tests.sh: a test left process $pid running: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
    left=1
  done
  for entry in $(mounts_in_tmp); do
    echo "run_tests.sh: a test left a mount in the temp dir: ${entry#"$tests_tmp/"}"
    left=1
  done
  while read -r entry; do
    echo "run_tests.sh: a test left $(du -sh -- "$entry" | cut -f1) in the temp dir: ${entry#"$tests_tmp/"}"
    left=1
  done < <(find "$tests_tmp" -mindepth 1 -maxdepth 1 | sort)
  return "$left"
}

# Two suites at a time (NN_TEST_JOBS): most wait on mpirun, not on the CPU. The
# suites that shape or time things, or make network namespaces, run alone (RUN_SERIAL).
code=0
TMPDIR=$tests_tmp ctest --output-on-failure --timeout 900 -j "${NN_TEST_JOBS:-2}" "$@" || code=$?
check_nothing_left || code=1
exit "$code"
