// main() of the MPI tools (nn_eval, nn_allreduce_bench): MPI for the life of
// the call, options parsed with every rank agreeing on an error, --help from
// rank 0, and each error one line: from rank 0 with the same exit code on
// every rank when all ranks threw it, else from the rank that saw it alone,
// which then aborts the job (the others may be waiting in a collective).
#pragma once

#include <boost/program_options.hpp>

#include <cstdio>
#include <exception>
#include <sstream>
#include <string>

#include "nn_dist/cli/tool_options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/parallel/watchdog.hpp"

namespace nn_dist {

// Adds --collective-timeout (*timeout: its default, then its value) to desc,
// parses argv against desc (parse_tool_options) and checks the timeout.
// Returns false for --help, with desc's text in *help.
inline bool parse_mpi_tool_options(int argc, const char* const* argv, boost::program_options::options_description* desc,
                                   double* timeout, std::string* help) {
  namespace po = boost::program_options;
  desc->add_options()("collective-timeout", po::value(timeout)->default_value(*timeout),
                      "seconds a rank waits for the others before it aborts the job");
  const po::variables_map vm = parse_tool_options(argc, argv, *desc);
  if (vm.count("help")) {
    std::ostringstream s;
    s << *desc;
    *help = s.str();
    return false;
  }
  if (!(*timeout > 0 && *timeout <= 1e6)) throw Error("--collective-timeout: must be in (0, 1000000]");
  return true;
}

// parse(argc, argv, &options, &help) returns false for --help (help then
// holds the text); run(comm, options) returns the exit code. Options has
// `timeout`, the --collective-timeout seconds.
template <typename Options, typename Parse, typename Run>
int mpi_tool_main(const char* tool, int* argc, char*** argv, Parse&& parse, Run&& run) {
  MpiSession mpi(argc, argv);
  Communicator comm;
  try {
    Options options;
    std::string help;
    bool go = true;
    comm.agreed([&] { go = parse(*argc, *argv, &options, &help); });
    if (!go) {
      if (comm.root()) std::printf("%s", help.c_str());
      return 0;
    }
    watchdog::set_timeout(options.timeout);
    return run(comm, options);
  } catch (const AgreedError& e) {
    if (comm.root()) std::fprintf(stderr, "%s: error: %s\n", tool, printable(e.what(), 1000).c_str());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error on rank %d: %s\n", tool, comm.rank(), printable(e.what(), 1000).c_str());
    std::fflush(stderr);
    comm.abort(kUsageExitCode);
  }
}

}  // namespace nn_dist
