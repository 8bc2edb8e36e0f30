// nn_dist: data-parallel MLP training. Parses options, trains, and turns
// errors into one line from rank 0 and the same exit code on every rank.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/cli/mpi_program.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/signals.hpp"
#include "nn_dist/train/trainer.hpp"

namespace {

// Stop signals wait for a step boundary only while training (or failing) runs
// (and, after a stop on a signal, a rank's late first copy: end_stop_on_signal).
struct StopSignalsEnd {
  bool stopped_on_signal = false;
  ~StopSignalsEnd() { nn_dist::end_stop_on_signal(stopped_on_signal); }
};

// The epoch lines are output too: a full disk or closed pipe under stdout is an error.
void check_stdout(const nn_dist::Communicator& comm) {
  comm.agreed([] {
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      throw nn_dist::Error(std::string("standard output: write failed (") + std::strerror(errno) + ")");
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  // Before MPI_Init, which takes a while at scale (and waits for every rank):
  // a stop signal in it must be recorded, not end the rank. MPI_Init leaves
  // these handlers alone (Open MPI installs its own only for SIGSEGV, SIGBUS,
  // SIGFPE and SIGABRT); the first step's sum then carries the stop.
  nn_dist::install_signal_handlers();
  return nn_dist::mpi_program_main("nn_dist", &argc, &argv, [&](const nn_dist::Communicator& comm) {
    StopSignalsEnd stop_signals_end;
    nn_dist::Config config;
    const bool go = nn_dist::parse_on_every_rank(comm, [&](std::string* help) {
      return nn_dist::parse_config(argc, argv, &config, help) == nn_dist::ParseResult::kRun;
    });
    if (!go) return 0;
    nn_dist::Trainer trainer(comm, config);
    trainer.run();
    stop_signals_end.stopped_on_signal = trainer.stop_exit_code() != 0;
    check_stdout(comm);
    return trainer.stop_exit_code();
  });
}
