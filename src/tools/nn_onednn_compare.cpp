// nn_onednn_compare: nn_dist's bf16 products against oneDNN's (Debian's
// libdnnl-dev, which dispatches AMX and AVX512_BF16 itself), on one training
// step's shapes, one thread. oneDNN is timed with bf16 inputs ready (the
// rounding left out) and with both inputs rounded from f32 by reorders, as
// nn_dist's kernels round while packing; and its heap allocations per
// execute are counted (a step of nn_dist allocates nothing). Built only
// where oneDNN is installed (scripts/install_deps.sh --bench).
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/model/layout.hpp"

// Every heap allocation of this process, oneDNN's included.
namespace {
long g_allocations = 0;
}  // namespace
extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_memalign(std::size_t, std::size_t);
extern "C" void* malloc(std::size_t n) {
  ++g_allocations;
  return __libc_malloc(n);
}
extern "C" int posix_memalign(void** out, std::size_t align, std::size_t n) {
  ++g_allocations;
  *out = __libc_memalign(align, n);
  return *out ? 0 : 12;  // ENOMEM
}

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

struct Product {  // C (m x n) = op(A) op(B), column-major as nn_dist's gemm()
  std::string name;
  long m, n, k;
  bool ta, tb;
};

// The step's products, as nn_roofline times them.
std::vector<Product> step_products(const std::vector<long>& s, long batch) {
  std::vector<Product> out;
  for (std::size_t l = 0; l + 1 < s.size(); ++l) {
    const std::string layer = std::to_string(l + 1);
    out.push_back({"forward " + layer, s[l + 1], batch, s[l], false, false});
    out.push_back({"dW " + layer, s[l + 1], s[l], batch, false, true});
    if (l > 0) out.push_back({"W^T delta " + layer, s[l], batch, s[l + 1], true, false});
  }
  return out;
}

template <typename F>
double median_seconds(long repeats, F&& run) {
  for (int i = 0; i < 10; ++i) run();
  std::vector<double> t;
  for (long r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct OneDnnTimes {
  double ready, rounded;  // seconds: bf16 inputs ready; both reordered from f32 first
  long allocations;       // per execute
  std::string impl;
};

// Row-major for oneDNN: C^T (n x m) = op(B)^T (n x k) op(A)^T (k x m); a transposed operand is tag ba.
OneDnnTimes time_onednn(const Product& p, long repeats, dnnl::engine& eng, dnnl::stream& s) {
  using dnnl::memory;
  using tag = memory::format_tag;
  const memory::dims src_d{p.n, p.k}, w_d{p.k, p.m}, dst_d{p.n, p.m};
  const tag src_tag = p.tb ? tag::ba : tag::ab, w_tag = p.ta ? tag::ba : tag::ab;
  const memory::desc src_md(src_d, memory::data_type::bf16, src_tag), w_md(w_d, memory::data_type::bf16, w_tag);
  const memory::desc dst_md(dst_d, memory::data_type::f32, tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_md, dst_md), attr, eng);
  const dnnl::matmul matmul(pd);
  memory src(src_md, eng), w(w_md, eng), dst(dst_md, eng), scratch(pd.scratchpad_desc(), eng);
  memory src32({src_d, memory::data_type::f32, src_tag}, eng), w32({w_d, memory::data_type::f32, w_tag}, eng);
  std::fill_n(static_cast<float*>(src32.get_data_handle()), p.n * p.k, 0.5f);
  std::fill_n(static_cast<float*>(w32.get_data_handle()), p.k * p.m, 0.25f);
  const dnnl::reorder round_src(src32, src), round_w(w32, w);
  const std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratch}};
  round_src.execute(s, src32, src);
  round_w.execute(s, w32, w);
  OneDnnTimes t;
  t.ready = median_seconds(repeats, [&] {
    matmul.execute(s, args);
    s.wait();
  });
  t.rounded = median_seconds(repeats, [&] {
    round_src.execute(s, src32, src);
    round_w.execute(s, w32, w);
    matmul.execute(s, args);
    s.wait();
  });
  const long before = g_allocations;
  for (int i = 0; i < 100; ++i) matmul.execute(s, args);
  s.wait();
  t.allocations = (g_allocations - before) / 100;
  t.impl = pd.impl_info_str();
  return t;
}

double time_nn_dist(const Product& p, GemmKernel kernel, long repeats) {
  set_gemm_kernel(kernel, Precision::kBf16);
  std::vector<float> a(p.m * p.k, 0.5f), b(p.k * p.n, 0.25f), c(p.m * p.n);
  GemmWorkspace workspace;
  return median_seconds(repeats, [&] {
    gemm(p.m, p.n, p.k, a.data(), p.ta ? p.k : p.m, p.ta, b.data(), p.tb ? p.n : p.k, p.tb, c.data(), p.m, workspace);
  });
}

int run(int argc, char** argv) {
  long batch = 128, repeats = 200, features = 784, classes = 10;
  std::string hidden = "512,256";
  const ProgramHelp program{"nn_onednn_compare",
                            "nn_dist's bf16 products against oneDNN's matmul on one step's shapes, one thread",
                            {"nn_onednn_compare [--batch-size 128] [--hidden 512,256] [--repeats 200]"},
                            ""};
  po::options_description table = option_table();
  table.add_options()("batch-size", po::value(&batch)->default_value(batch), "samples per step")(
      "hidden", po::value(&hidden)->default_value(hidden), "hidden widths, comma-separated")(
      "features", po::value(&features)->default_value(features), "input width")(
      "classes", po::value(&classes)->default_value(classes), "output width")(
      "repeats", po::value(&repeats)->default_value(repeats), "timed runs per product (median)");
  std::string help;
  if (!parse_options(argc, argv, program, table, &help)) {
    std::printf("%s", help.c_str());
    return 0;
  }
  if (batch < 1 || repeats < 1) throw Error("--batch-size and --repeats must be positive");
  std::vector<long> sizes{features};
  for (long h : parse_hidden(hidden)) sizes.push_back(h);
  sizes.push_back(classes);
  std::vector<GemmKernel> kernels;
  for (GemmKernel k : {GemmKernel::kAmx, GemmKernel::kAvx512Bf16}) {
    if (gemm_kernel_supported(k)) kernels.push_back(k);
  }
  if (kernels.empty()) throw Error("this CPU has neither AMX-BF16 nor AVX512_BF16: no bf16 products to compare");
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  double total_ready = 0, total_rounded = 0;
  std::vector<double> totals(kernels.size(), 0.0);
  for (const Product& p : step_products(sizes, batch)) {
    const OneDnnTimes o = time_onednn(p, repeats, eng, s);
    total_ready += o.ready;
    total_rounded += o.rounded;
    std::printf("%-12s %5ldx%5ldx%5ld  oneDNN %8.1f us (bf16 ready) %8.1f us (rounded from f32), %ld allocations "
                "per execute [%s]",
                p.name.c_str(), p.m, p.n, p.k, o.ready * 1e6, o.rounded * 1e6, o.allocations, o.impl.c_str());
    for (std::size_t i = 0; i < kernels.size(); ++i) {
      const double t = time_nn_dist(p, kernels[i], repeats);
      totals[i] += t;
      std::printf("  nn_dist %s %8.1f us", gemm_kernel_name(kernels[i]).c_str(), t * 1e6);
    }
    std::printf("\n");
  }
  std::printf("step's products, batch %ld: oneDNN %.1f us (bf16 ready), %.1f us (rounded from f32)", batch,
              total_ready * 1e6, total_rounded * 1e6);
  for (std::size_t i = 0; i < kernels.size(); ++i) {
    std::printf("; nn_dist %s %.1f us", gemm_kernel_name(kernels[i]).c_str(), totals[i] * 1e6);
  }
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return program_main("nn_onednn_compare", [&] { return run(argc, argv); });
}
