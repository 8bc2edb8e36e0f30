// The gradient sums as the optimizer's loops read them (optimizer.cpp,
// clip.cpp): already summed, or in two parts added in float in order (the
// same bits as adding them first). Private to the optim library.
#pragma once

#include <cstddef>

namespace nn_dist {

struct OnePart {
  const float* __restrict sums;
  float operator()(std::size_t i) const { return sums[i]; }
};
struct TwoParts {
  const float* __restrict first;
  const float* __restrict second;
  float operator()(std::size_t i) const { return first[i] + second[i]; }
};

}  // namespace nn_dist
