// nn_dist: data-parallel MLP training. Parses options, trains, and turns
// errors into one line from rank 0 and the same exit code on every rank.
#include <cstdio>
#include <exception>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/dist/comm.hpp"
#include "nn_dist/train/trainer.hpp"

int main(int argc, char** argv) {
  nn_dist::MpiSession mpi(&argc, &argv);
  nn_dist::Communicator comm;
  try {
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
  } catch (const nn_dist::AgreedError& e) {
    // Every rank threw this at the same point: end cleanly, one message.
    if (comm.root()) std::fprintf(stderr, "nn_dist: error: %s\n", e.what());
    return nn_dist::kUsageExitCode;
  } catch (const std::exception& e) {
    // Seen by this rank alone: the others may be waiting in a collective.
    std::fprintf(stderr, "nn_dist: error on rank %d: %s\n", comm.rank(), e.what());
    std::fflush(stderr);
    comm.abort(nn_dist::kUsageExitCode);
  }
  return 0;
}
