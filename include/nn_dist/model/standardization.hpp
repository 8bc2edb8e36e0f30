// Per-feature standardisation of the inputs, x' = (x - mean) / scale, with
// the training set's mean and standard deviation (scale 1 for a constant
// feature: centred, not scaled). Stored in checkpoints and applied wherever
// the model is used (training, --resume, --init, nn_eval, scripts/nn_model.py).
#pragma once

#include <vector>

#include "nn_dist/math/activation.hpp"

namespace nn_dist {

struct Standardization {
  std::vector<double> mean, scale;  // one per feature; both empty: none
  bool empty() const { return mean.empty(); }
  long features() const { return static_cast<long>(mean.size()); }
};

// x: (features, n), in place. Each value is computed in double and rounded
// once to float: float((double(x) - mean) / scale), as NumPy does it in float64.
void apply_standardization(const Standardization& s, Matrix<float>* x);

}  // namespace nn_dist
