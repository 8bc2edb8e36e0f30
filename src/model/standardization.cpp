// Applying a standardisation to a batch of columns.
#include "nn_dist/model/standardization.hpp"

namespace nn_dist {

void apply_standardization(const Standardization& s, Matrix<float>* x) {
  if (s.empty()) return;
  const long d = x->rows();
  for (long j = 0; j < x->cols(); ++j) {
    float* col = x->data() + j * d;
    for (long f = 0; f < d; ++f) col[f] = static_cast<float>((static_cast<double>(col[f]) - s.mean[f]) / s.scale[f]);
  }
}

}  // namespace nn_dist
