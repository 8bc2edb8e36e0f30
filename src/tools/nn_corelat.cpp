// nn_corelat: how long a cache line takes to go from one core to another and
// back (two threads pinned to two CPUs bounce a counter), and how long one
// core takes to read 2 MB (the standard model's gradient) that the other
// core has just written. Data-parallel ranks on one node pay these costs
// every step; on a virtual machine they can change from minute to minute
// with where the host runs the vCPUs, so benchmarks record them beside
// their timings.
#include <boost/program_options.hpp>
#include <cstdio>
#include <string>

#include "nn_dist/bench/corelat.hpp"
#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

// --cpus A,B; returns false for --help (then printed).
bool parse(int argc, char** argv, int* cpu_a, int* cpu_b) {
  const ProgramHelp program{"nn_corelat",
                            "a cache line's round trip between CPUs A and B, and A's time to read 2 MB that B has "
                            "just written (text and a CORELAT_JSON line)",
                            {"nn_corelat [--cpus A,B]"}};
  std::string cpus = "0,1";
  po::options_description table = option_table();
  table.add_options()("cpus", po::value(&cpus)->default_value(cpus), "the two CPUs, A,B");
  std::string help;
  if (!parse_options(argc, argv, program, table, &help)) {
    std::printf("%s", help.c_str());
    return false;
  }
  const std::size_t comma = cpus.find(',');
  if (comma == std::string::npos || !whole_number(cpus.substr(0, comma), cpu_a) ||
      !whole_number(cpus.substr(comma + 1), cpu_b)) {
    throw Error("--cpus " + printable(cpus) + ": expected two CPU numbers, like 0,1");
  }
  if (!pin_to_cpu(*cpu_a) || !pin_to_cpu(*cpu_b)) throw Error("--cpus " + printable(cpus) + ": cannot run on both CPUs");
  return true;
}

int run(int argc, char** argv) {
  int cpu_a = 0, cpu_b = 1;
  if (!parse(argc, argv, &cpu_a, &cpu_b)) return 0;
  const double rtt = round_trip_ns(cpu_a, cpu_b, 100000);
  const double read = remote_read_us(cpu_a, cpu_b, 2 << 20, 21);
  std::printf("cores %d and %d: round trip %.0f ns; reading 2 MB the other core wrote: %.0f us\n", cpu_a, cpu_b, rtt,
              read);
  std::printf("CORELAT_JSON {\"cpus\":[%d,%d],\"round_trip_ns\":%.1f,\"remote_read_2mb_us\":%.1f}\n", cpu_a, cpu_b,
              rtt, read);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return program_main("nn_corelat", [&] { return run(argc, argv); });
}
