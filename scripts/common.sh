# Sourced by the other scripts: paths, the build step, and mpirun flags that
# work for root and on machines with fewer cores than ranks.
NN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NN_BUILD="${NN_BUILD:-$NN_ROOT/build}"

nn_build() {
  cmake -S "$NN_ROOT" -B "$NN_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$NN_BUILD" -j "$(nproc)" "$@"
}

# mpirun flags for N ranks on this machine.
nn_mpirun_flags() {
  local ranks=$1
  MPIRUN_FLAGS=(-np "$ranks" --mca mpi_yield_when_idle 1)
  if [[ $(id -u) -eq 0 ]]; then MPIRUN_FLAGS+=(--allow-run-as-root); fi
  if (( ranks > $(nproc) )); then MPIRUN_FLAGS+=(--oversubscribe); fi
}

# The standard benchmark data (60000 x 784 teacher, 10 classes) in $NN_BUILD/bench:
# sets WORK (that folder) and DATA (the file), generating it once.
nn_bench_data() {
  WORK="$NN_BUILD/bench"
  mkdir -p "$WORK"
  DATA="$WORK/train.h5"
  [[ -f $DATA ]] || "$NN_BUILD/nn_datagen" --out "$DATA" --kind teacher --samples 60000 --features 784 --classes 10 \
                       --seed 1 >/dev/null
}
