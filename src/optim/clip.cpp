// Gradient clipping by the global L2 norm: the sum of squares of the summed
// gradient and PyTorch's clip factor.
#include "nn_dist/optim/clip.hpp"

#include <algorithm>

namespace nn_dist {

double sum_of_squares(const float* first, const float* second, std::size_t begin, std::size_t end, double before) {
  double squares = before;
  if (second == nullptr) {
    for (std::size_t i = begin; i < end; ++i) squares += static_cast<double>(first[i]) * first[i];
  } else {
    for (std::size_t i = begin; i < end; ++i) {
      const double g = first[i] + second[i];  // the float sum the optimizer reads
      squares += g * g;
    }
  }
  return squares;
}

double clip_factor(double norm, double max_norm) { return std::min(1.0, max_norm / (norm + 1e-6)); }

}  // namespace nn_dist
