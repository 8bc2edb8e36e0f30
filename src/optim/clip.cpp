// Gradient clipping by the global L2 norm: the sum of squares of the summed
// gradient and PyTorch's clip factor. A float's square is exact in double, so
// a build that fuses it into its addition gets the same bits as one that
// does not: every build and CPU adds the same values in the same order.
#include "nn_dist/optim/clip.hpp"

#include <algorithm>

#include "nn_dist/common/cpu.hpp"
#include "optim/gradient_sums.hpp"

namespace nn_dist {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl")
namespace avx512 {
namespace {
#include "optim/square_lanes.inc"
}  // namespace
}  // namespace avx512
#pragma GCC pop_options

namespace baseline {
namespace {
#include "optim/square_lanes.inc"
}  // namespace
}  // namespace baseline

double SquareSums::total() const {
  double sum = lane[0];
  for (int k = 1; k < kLanes; ++k) sum += lane[k];
  return sum;
}

void add_squares(const float* first, const float* second, std::size_t begin, std::size_t end, SquareSums* squares) {
  static const bool wide = cpu_has_avx512();
  if (second == nullptr) {
    (wide ? avx512::add_lanes<OnePart> : baseline::add_lanes<OnePart>)(OnePart{first}, begin, end, squares->lane);
  } else {
    (wide ? avx512::add_lanes<TwoParts> : baseline::add_lanes<TwoParts>)(TwoParts{first, second}, begin, end,
                                                                          squares->lane);
  }
}

double clip_factor(double norm, double max_norm) { return std::min(1.0, max_norm / (norm + 1e-6)); }

}  // namespace nn_dist
