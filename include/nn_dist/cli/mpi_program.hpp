// main() of the MPI programs (nn_dist, nn_eval, nn_allreduce_bench): MPI for
// the life of the call, options parsed with every rank agreeing on an error,
// --help from rank 0, and each error one line: from rank 0 with the same exit
// code on every rank when all ranks threw it, else from the rank that saw it
// alone, which then aborts the job (the others may be waiting in a collective).
#pragma once

#include <boost/program_options.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/parallel/watchdog.hpp"

namespace nn_dist {

// body(comm) returns the exit code; errors become one line as above.
template <typename Body>
int mpi_program_main(const std::string& name, int* argc, char*** argv, Body&& body) {
  MpiSession mpi(argc, argv);
  Communicator comm;
  try {
    return body(comm);
  } catch (const AgreedError& e) {
    if (comm.root()) print_error(name, e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error on rank %d: %s\n", name.c_str(), comm.rank(), printable(e.what(), 1000).c_str());
    std::fflush(stderr);
    comm.abort(kUsageExitCode);
  }
}

// parse(&help) on every rank, an error on any rank an AgreedError on all.
// Returns false for --help, which rank 0 has then printed.
template <typename Parse>
bool parse_on_every_rank(const Communicator& comm, Parse&& parse) {
  std::string help;
  bool go = true;
  comm.agreed([&] { go = parse(&help); });
  if (!go && comm.root()) std::printf("%s", help.c_str());
  return go;
}

// Adds --collective-timeout (*timeout: its default, then its value) to table,
// parses argv against it (parse_options) and checks the timeout. Returns
// false for --help, with the help text in *help.
inline bool parse_mpi_tool_options(int argc, const char* const* argv, const ProgramHelp& program,
                                   boost::program_options::options_description* table, double* timeout,
                                   std::string* help) {
  namespace po = boost::program_options;
  table->add_options()("collective-timeout", po::value(timeout)->default_value(*timeout),
                       "seconds a rank waits for the others before it aborts the job");
  if (!parse_options(argc, argv, program, *table, help)) return false;
  if (!(*timeout > 0 && *timeout <= 1e6)) throw Error("--collective-timeout: must be in (0, 1000000]");
  return true;
}

// main() of the MPI tools: parse(argc, argv, &options, &help) returns false
// for --help; run(comm, options) returns the exit code. Options has
// `timeout`, the --collective-timeout seconds.
template <typename Options, typename Parse, typename Run>
int mpi_tool_main(const std::string& name, int* argc, char*** argv, Parse&& parse, Run&& run) {
  return mpi_program_main(name, argc, argv, [&](const Communicator& comm) {
    Options options;
    if (!parse_on_every_rank(comm, [&](std::string* help) { return parse(*argc, *argv, &options, help); })) return 0;
    watchdog::set_timeout(options.timeout);
    return run(comm, options);
  });
}

}  // namespace nn_dist
