// nn_roofline: times the matrix products of one training step alone, with
// the step's shapes, through nn_dist's product (the kernel this CPU gets),
// then every other kernel this CPU can run (e.g. the AVX2 fallback on an
// AVX-512 CPU) and Eigen's, and prints the samples/s they allow -- the
// ceiling a step of nn_dist can reach on this core.
#include <boost/program_options.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "nn_dist/bench/roofline.hpp"
#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/model/layout.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

struct Options {
  long features = 784, classes = 10, batch = 128, repeats = 200;
  std::string hidden = "512,256";
};

// Returns false for --help (then printed).
bool parse(int argc, char** argv, Options* o) {
  const ProgramHelp program{
      "nn_roofline",
      "one training step's matrix products alone, kernel by kernel, and the samples/s they allow (text and "
      "ROOFLINE_JSON lines)",
      {"nn_roofline [--batch-size 128] [--hidden 512,256] [--features 784] [--classes 10] [--repeats 200]"},
      " (write lists with commas, e.g. --hidden 64,32)"};
  po::options_description table = option_table();
  table.add_options()
      ("batch-size", po::value(&o->batch)->default_value(o->batch), "samples per step")
      ("hidden", po::value(&o->hidden)->default_value(o->hidden), "hidden widths, comma-separated, as nn_dist's")
      ("features", po::value(&o->features)->default_value(o->features), "input width")
      ("classes", po::value(&o->classes)->default_value(o->classes), "output width")
      ("repeats", po::value(&o->repeats)->default_value(o->repeats), "timed steps per kernel (after 20 untimed)");
  std::string help;
  if (!parse_options(argc, argv, program, table, &help)) {
    std::printf("%s", help.c_str());
    return false;
  }
  for (const auto& [flag, value] : {std::pair<const char*, long>{"--batch-size", o->batch}, {"--features", o->features},
                                    {"--classes", o->classes}, {"--repeats", o->repeats}}) {
    if (value < 1) throw Error(std::string(flag) + " " + std::to_string(value) + ": expected a positive integer");
  }
  return true;
}

int run(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 0;
  std::vector<long> sizes{o.features};
  for (long h : parse_hidden(o.hidden)) sizes.push_back(h);
  sizes.push_back(o.classes);
  StepProducts products(sizes, o.batch);
  for (const auto& [label, kernel] : kernels_to_compare()) {
    const ProductTimes t = time_products(&products, kernel, o.repeats);
    const double gflops = products.flops() / t.median * 1e-9, samples_per_sec = o.batch / t.median;
    std::printf("GEMM roofline (%s products, kernel %s), layers %s, batch %ld, 1 thread: median %.4f ms per step "
                "(min %.4f), %.1f GFLOP/s, %.0f samples/s\n",
                label.c_str(), gemm_kernel_name(kernel).c_str(), sizes_string(sizes).c_str(), o.batch,
                t.median * 1e3, t.min * 1e3, gflops, samples_per_sec);
    std::printf("ROOFLINE_JSON {\"products\":\"%s\",\"batch\":%ld,\"gemm_ms\":%.4f,\"gflops\":%.1f,"
                "\"samples_per_sec\":%.1f}\n",
                label.c_str(), o.batch, t.median * 1e3, gflops, samples_per_sec);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return program_main("nn_roofline", [&] { return run(argc, argv); });
}
