// Gradient clipping by the global L2 norm (--clip-grad-norm), with PyTorch's
// torch.nn.utils.clip_grad_norm_ rule: the norm over every parameter's
// gradient, and the factor max_norm / (norm + 1e-6) when that is below 1.
#pragma once

#include <cstddef>

namespace nn_dist {

// The sum of squares of a gradient, accumulated in double in kLanes partial
// sums: element i goes to lane i % kLanes, so the lanes are independent
// chains the CPU adds side by side (one chain took ~4 cycles an element).
// Each lane adds its elements in the order they are passed: every rank that
// sees the same summed gradient gets the same bits, and consecutive slices
// passed in order give the bits of one pass, however the gradient was cut
// (--reproducible cuts it by the rank count).
struct SquareSums {
  static constexpr int kLanes = 8;
  double lane[kLanes] = {};
  double total() const;  // the lanes added in order: ((lane[0] + lane[1]) + lane[2]) + ...
};

// Adds the squares of sums[begin, end) to `squares`, where sums[i] = first[i]
// (+ second[i], added in float as the optimizer adds them, when second is
// not null).
void add_squares(const float* first, const float* second, std::size_t begin, std::size_t end, SquareSums* squares);

// The factor clip_grad_norm_ multiplies the gradient by: min(1, max_norm / (norm + 1e-6)).
double clip_factor(double norm, double max_norm);

}  // namespace nn_dist
