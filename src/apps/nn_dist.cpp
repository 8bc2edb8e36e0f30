// nn_dist: data-parallel MLP training. Parses options, trains, and turns
// errors into one line from rank 0 and the same exit code on every rank.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/train/signals.hpp"
#include "nn_dist/train/trainer.hpp"

int main(int argc, char** argv) {
  // Before MPI_Init, which takes a while at scale (and waits for every rank):
  // a stop signal in it must be recorded, not end the rank. MPI_Init leaves
  // these handlers alone (Open MPI installs its own only for SIGSEGV, SIGBUS,
  // SIGFPE and SIGABRT); the first step's sum then carries the stop.
  nn_dist::install_signal_handlers();
  nn_dist::MpiSession mpi(&argc, &argv);
  nn_dist::Communicator comm;
  int exit_code = 0;
  try {
    // Stop signals wait for a step boundary only while the try block runs.
    struct StopSignalsEnd {
      ~StopSignalsEnd() { nn_dist::end_stop_on_signal(); }
    } stop_signals_end;
    nn_dist::Config config;
    std::string help;
    nn_dist::ParseResult parsed = nn_dist::ParseResult::kRun;
    comm.agreed([&] { parsed = nn_dist::parse_config(argc, argv, &config, &help); });
    if (parsed == nn_dist::ParseResult::kHelp) {
      if (comm.root()) std::printf("%s", help.c_str());
      return 0;
    }
    nn_dist::Trainer trainer(comm, config);
    trainer.run();
    exit_code = trainer.stop_exit_code();
    // The epoch lines are output too: a full disk or closed pipe under stdout is an error.
    comm.agreed([] {
      if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
        throw nn_dist::Error(std::string("standard output: write failed (") + std::strerror(errno) + ")");
      }
    });
  } catch (const nn_dist::AgreedError& e) {
    // Every rank threw this at the same point: end cleanly, one message.
    if (comm.root()) std::fprintf(stderr, "nn_dist: error: %s\n", nn_dist::printable(e.what(), 1000).c_str());
    return nn_dist::kUsageExitCode;
  } catch (const std::exception& e) {
    // Seen by this rank alone: the others may be waiting in a collective.
    std::fprintf(stderr, "nn_dist: error on rank %d: %s\n", comm.rank(), nn_dist::printable(e.what(), 1000).c_str());
    std::fflush(stderr);
    comm.abort(nn_dist::kUsageExitCode);
  }
  return exit_code;
}
