// nn_roofline: times the matrix products of one training step alone, with
// the step's shapes, through nn_dist's product (the kernel this CPU gets),
// then every other kernel this CPU can run (e.g. the AVX2 fallback on an
// AVX-512 CPU) and Eigen's, and prints the samples/s they allow -- the
// ceiling a step of nn_dist can reach on this core.
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/model/layout.hpp"

using Matrix = Eigen::MatrixXf;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  long features = 784, classes = 10, batch = 128, repeats = 200;
  std::string hidden = "512,256";
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::printf("usage: nn_roofline [--batch-size 128] [--hidden 512,256] [--features 784] [--classes 10] "
                  "[--repeats 200]\n"
                  "Times one training step's matrix products alone (nn_dist's product, then the other kernels\n"
                  "this CPU runs, then Eigen's) and prints the samples/s they allow, as text and as ROOFLINE_JSON lines.\n");
      return 0;
    }
    if (i + 1 == argc) {
      std::fprintf(stderr, "nn_roofline: error: %s needs a value\n", flag.c_str());
      return nn_dist::kUsageExitCode;
    }
    const std::string value = argv[i + 1];
    long* number = flag == "--features"     ? &features
                   : flag == "--classes"    ? &classes
                   : flag == "--batch-size" ? &batch
                   : flag == "--repeats"    ? &repeats
                                            : nullptr;
    if (flag == "--hidden") {
      hidden = value;
    } else if (number == nullptr) {
      std::fprintf(stderr, "nn_roofline: error: unknown option %s (options: --features --classes --batch-size "
                   "--hidden --repeats)\n", flag.c_str());
      return nn_dist::kUsageExitCode;
    } else {
      char* end = nullptr;
      *number = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || *number < 1) {
        std::fprintf(stderr, "nn_roofline: error: %s %s: expected a positive integer\n", flag.c_str(), value.c_str());
        return nn_dist::kUsageExitCode;
      }
    }
  }
  Eigen::setNbThreads(1);
  std::vector<long> sizes{features};
  try {
    for (long h : nn_dist::parse_hidden(hidden)) sizes.push_back(h);
  } catch (const nn_dist::Error& e) {
    std::fprintf(stderr, "nn_roofline: error: %s\n", e.what());
    return nn_dist::kUsageExitCode;
  }
  sizes.push_back(classes);
  const std::size_t layers = sizes.size() - 1;
  std::vector<Matrix> w, dw, a, delta;
  for (std::size_t l = 0; l < layers; ++l) {
    w.push_back(Matrix::Random(sizes[l + 1], sizes[l]));
    dw.push_back(Matrix::Zero(sizes[l + 1], sizes[l]));
  }
  for (long d : sizes) {
    a.push_back(Matrix::Random(d, batch));
    delta.push_back(Matrix::Random(d, batch));
  }
  double flops = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    flops += 2.0 * sizes[l + 1] * sizes[l] * batch * (l > 0 ? 3 : 2);
  }
  nn_dist::GemmWorkspace workspace;
  // The products of one step: forward W a, weight gradient Delta a^T, input gradient W^T Delta.
  auto products = [&]() {
    auto mul = [&](long m, long n, long k, const float* a, long lda, bool ta, const float* b, long ldb, bool tb,
                   float* c) { nn_dist::gemm(m, n, k, a, lda, ta, b, ldb, tb, c, m, workspace); };
    for (std::size_t l = 0; l < layers; ++l) {
      mul(sizes[l + 1], batch, sizes[l], w[l].data(), sizes[l + 1], false, a[l].data(), sizes[l], false, a[l + 1].data());
    }
    for (std::size_t l = layers; l-- > 0;) {
      mul(sizes[l + 1], sizes[l], batch, delta[l + 1].data(), sizes[l + 1], false, a[l].data(), sizes[l], true,
          dw[l].data());
      if (l > 0) {
        mul(sizes[l], batch, sizes[l + 1], w[l].data(), sizes[l + 1], true, delta[l + 1].data(), sizes[l + 1], false,
            delta[l].data());
      }
    }
  };
  // "nn_dist" is what training uses on this CPU; then the others, for comparison.
  const nn_dist::GemmKernel best = nn_dist::gemm_kernel();
  std::vector<std::pair<std::string, nn_dist::GemmKernel>> runs{{"nn_dist", best}};
  for (nn_dist::GemmKernel k : {nn_dist::GemmKernel::kAvx512, nn_dist::GemmKernel::kAvx2}) {
    if (k != best && nn_dist::gemm_kernel_supported(k)) runs.emplace_back(nn_dist::gemm_kernel_name(k), k);
  }
  if (best != nn_dist::GemmKernel::kEigen) runs.emplace_back("eigen", nn_dist::GemmKernel::kEigen);
  for (const auto& [label, kernel] : runs) {
    nn_dist::set_gemm_kernel(kernel);
    for (int i = 0; i < 20; ++i) products();  // warm-up
    std::vector<double> times;
    for (long r = 0; r < repeats; ++r) {
      const auto t0 = Clock::now();
      products();
      times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    const char* name = label.c_str();
    std::printf("GEMM roofline (%s products, kernel %s), layers %s, batch %ld, 1 thread: median %.4f ms per step "
                "(min %.4f), %.1f GFLOP/s, %.0f samples/s\n",
                name, nn_dist::gemm_kernel_name(kernel).c_str(), nn_dist::sizes_string(sizes).c_str(), batch, median * 1e3, times.front() * 1e3,
                flops / median * 1e-9, batch / median);
    std::printf("ROOFLINE_JSON {\"products\":\"%s\",\"batch\":%ld,\"gemm_ms\":%.4f,\"gflops\":%.1f,"
                "\"samples_per_sec\":%.1f}\n",
                name, batch, median * 1e3, flops / median * 1e-9, batch / median);
  }
  return 0;
}
