#!/usr/bin/env bash
# README command 2: install what is missing, build everything, run the whole
# test suite (unit, MPI at 1/2/3 ranks, end-to-end) under ctest.
set -euo pipefail
source "$(dirname "$0")/common.sh"
"$NN_ROOT/scripts/install_deps.sh"
nn_build
cd "$NN_BUILD"
# Two suites at a time (NN_TEST_JOBS): most wait on mpirun, not on the CPU. The
# suites that shape or time things, or make network namespaces, run alone (RUN_SERIAL).
ctest --output-on-failure --timeout 900 -j "${NN_TEST_JOBS:-2}" "$@"
