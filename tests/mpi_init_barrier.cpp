// A probe for the SLURM test: does MPI_Init hold every rank until all ranks
// have entered it, across nodes? Open MPI relies on the launcher's PMIx fence
// for that; without it a rank can be sent a message before it can take one.
// The ranks of SLURM node 1 enter MPI_Init a second late, so a fence that is
// not a barrier shows: some rank leaves MPI_Init before the last one entered.
// Rank 0 prints "barrier held" or "barrier broken"; the exit code is 0 either
// way (the test decides what it expects).
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  const char* node = std::getenv("SLURM_NODEID");
  if (node != nullptr && std::atoi(node) == 1) std::this_thread::sleep_for(std::chrono::seconds(1));
  const double entered = seconds_now();
  MPI_Init(&argc, &argv);
  const double left = seconds_now();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // The last entry and the first exit (the max of the negated exit times).
  double times[2] = {entered, -left};
  double extremes[2] = {0, 0};
  MPI_Allreduce(times, extremes, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) {
    const double last_entry = extremes[0], first_exit = -extremes[1];
    std::printf("mpi_init_barrier: barrier %s (first rank left MPI_Init %.3f s after the last entered it)\n",
                first_exit >= last_entry ? "held" : "broken", first_exit - last_entry);
  }
  MPI_Finalize();
  return 0;
}
