#!/usr/bin/env bash
# README command 2: install what is missing, build everything, run the whole
# test suite (unit, MPI at 1/2/3 ranks, end-to-end) under ctest.
set -euo pipefail
source "$(dirname "$0")/common.sh"
"$NN_ROOT/scripts/install_deps.sh"
nn_build
cd "$NN_BUILD"
ctest --output-on-failure --timeout 900 "$@"
