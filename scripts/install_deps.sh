#!/usr/bin/env bash
# Installs what nn_dist needs from Debian's archive. Idempotent: when every
# package is already present it does nothing (no apt-get update, no network).
# Usage: scripts/install_deps.sh [--bench]   (--bench adds timing tools, and oneDNN to compare with)
# PyTorch and h5py are always installed: a test compares nn_dist with PyTorch step for step;
# matplotlib too: scripts/scale.py draws its plots with it, and a test checks them.
# scikit-learn: its digits are the data of the dropout test (tests/dropout_overfit_test.py).
# qemu-user runs the binary on an emulated CPU without AVX-512 (the portable-build test);
# iproute2 and util-linux make the emulated hosts (network namespaces); SLURM and munge
# run a private scheduler on them for the batch-script tests (no service is started);
# bc does the benchmark scripts' arithmetic (validate_model.sh runs in a test).
set -euo pipefail

packages=(build-essential cmake openmpi-bin libopenmpi-dev libeigen3-dev libhdf5-dev hdf5-tools
          libboost-program-options-dev libgtest-dev python3-h5py python3-numpy python3-torch python3-matplotlib python3-sklearn
          libopenblas0-pthread qemu-user iproute2 util-linux slurmctld slurmd slurm-client munge bc)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(hyperfine libdnnl-dev)  # libdnnl-dev: oneDNN, for nn_onednn_compare
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
