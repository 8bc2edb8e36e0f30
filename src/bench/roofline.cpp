// The step's matrix products on their own, timed kernel by kernel.
#include "nn_dist/bench/roofline.hpp"

#include <algorithm>

#include "nn_dist/common/clock.hpp"

namespace nn_dist {

StepProducts::StepProducts(const std::vector<long>& sizes, long batch) : sizes_(sizes), batch_(batch) {
  for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
    w_.push_back(Eigen::MatrixXf::Random(sizes_[l + 1], sizes_[l]));
    dw_.push_back(Eigen::MatrixXf::Zero(sizes_[l + 1], sizes_[l]));
  }
  for (long d : sizes_) {
    a_.push_back(Eigen::MatrixXf::Random(d, batch_));
    delta_.push_back(Eigen::MatrixXf::Random(d, batch_));
  }
}

double StepProducts::flops() const {
  double flops = 0;
  for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
    flops += 2.0 * sizes_[l + 1] * sizes_[l] * batch_ * (l > 0 ? 3 : 2);
  }
  return flops;
}

void StepProducts::run() {
  const std::size_t layers = sizes_.size() - 1;
  const std::vector<long>& s = sizes_;
  const long n = batch_;
  for (std::size_t l = 0; l < layers; ++l) {
    gemm(s[l + 1], n, s[l], w_[l].data(), s[l + 1], false, a_[l].data(), s[l], false, a_[l + 1].data(), s[l + 1],
         workspace_);
  }
  for (std::size_t l = layers; l-- > 0;) {
    gemm(s[l + 1], s[l], n, delta_[l + 1].data(), s[l + 1], false, a_[l].data(), s[l], true, dw_[l].data(), s[l + 1],
         workspace_);
    if (l > 0) {
      gemm(s[l], n, s[l + 1], w_[l].data(), s[l + 1], true, delta_[l + 1].data(), s[l + 1], false, delta_[l].data(),
           s[l], workspace_);
    }
  }
}

ProductTimes time_products(StepProducts* products, GemmKernel kernel, long repeats) {
  Eigen::setNbThreads(1);  // one core: what one rank has
  set_gemm_kernel(kernel, kernel_precision(kernel));
  for (int i = 0; i < 20; ++i) products->run();  // warm-up
  std::vector<double> times;
  for (long r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    products->run();
    times.push_back(seconds_between(t0, Clock::now()));
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front()};
}

std::vector<std::pair<std::string, GemmKernel>> kernels_to_compare() {
  const GemmKernel best = gemm_kernel();
  std::vector<std::pair<std::string, GemmKernel>> runs{{"nn_dist", best}};
  for (GemmKernel k : {GemmKernel::kAvx512, GemmKernel::kAvx2, GemmKernel::kAmx, GemmKernel::kAvx512Bf16}) {
    if (k != best && gemm_kernel_supported(k)) runs.emplace_back(gemm_kernel_name(k), k);
  }
  if (best != GemmKernel::kEigen) runs.emplace_back("eigen", GemmKernel::kEigen);
  return runs;
}

}  // namespace nn_dist
