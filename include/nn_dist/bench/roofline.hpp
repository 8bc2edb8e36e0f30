// nn_roofline's measurement: the matrix products of one training step alone,
// with the step's shapes, through nn_dist's product and each kernel this CPU
// runs -- the ceiling a step of nn_dist can reach on one core.
#pragma once

#include <Eigen/Core>
#include <string>
#include <utility>
#include <vector>

#include "nn_dist/model/gemm.hpp"

namespace nn_dist {

// The products of one step of an MLP with layer widths `sizes` over `batch`
// samples, on random operands: forward W a, weight gradient Delta a^T, input
// gradient W^T Delta (none into the first layer).
class StepProducts {
 public:
  StepProducts(const std::vector<long>& sizes, long batch);
  void run();            // all of them once, through nn_dist::gemm (the kernel set_gemm_kernel chose)
  double flops() const;  // of one run()

 private:
  std::vector<long> sizes_;
  long batch_;
  std::vector<Eigen::MatrixXf> w_, dw_, a_, delta_;  // w, dw: (out, in); a, delta: (width, batch)
  GemmWorkspace workspace_;
};

struct ProductTimes {
  double median = 0, min = 0;  // seconds per run()
};

// Runs the products with `kernel` 20 times untimed, then `repeats` times timed.
ProductTimes time_products(StepProducts* products, GemmKernel kernel, long repeats);

// What to time: "nn_dist" (the kernel training uses on this CPU), then each
// other kernel this CPU runs, then "eigen", each with its kernel.
std::vector<std::pair<std::string, GemmKernel>> kernels_to_compare();

}  // namespace nn_dist
