// nn_eval's --predictions file: one row per sample, in the data file's order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nn_dist {

// Writes `outputs` (n rows of k values, row-major) as dataset 'outputs'
// (float32, n x k: class probabilities, or predicted values) and, when
// `classes` is not empty, 'predicted' (int64, n: the class of largest
// probability). Written whole and renamed into place (see write_file_atomically).
void write_predictions(const std::string& path, const std::string& what, const std::vector<float>& outputs, long n,
                       long k, const std::vector<int64_t>& classes, const std::string& kind);

}  // namespace nn_dist
