// Gradient clipping by the global L2 norm (--clip-grad-norm), with PyTorch's
// torch.nn.utils.clip_grad_norm_ rule: the norm over every parameter's
// gradient, and the factor max_norm / (norm + 1e-6) when that is below 1.
#pragma once

#include <cstddef>

namespace nn_dist {

// `before` plus the sum of squares of sums[begin, end), where sums[i] =
// first[i] (+ second[i], added in float as the optimizer adds them, when
// second is not null). Accumulated in double in index order: every rank that
// sees the same summed gradient gets the same bits, and consecutive slices
// passed in order (each continuing from the last) give the bits of one pass,
// however the gradient was cut (--reproducible cuts it by the rank count).
double sum_of_squares(const float* first, const float* second, std::size_t begin, std::size_t end,
                      double before = 0);

// The factor clip_grad_norm_ multiplies the gradient by: min(1, max_norm / (norm + 1e-6)).
double clip_factor(double norm, double max_norm);

}  // namespace nn_dist
