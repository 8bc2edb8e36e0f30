// Precision, recall and F1 per class from a confusion matrix; MSE, MAE and
// R^2 from error sums.
#include "nn_dist/eval/metrics.hpp"

#include <cmath>
#include <limits>

namespace nn_dist {

std::vector<ClassMetrics> class_metrics(const std::vector<double>& confusion, long classes) {
  std::vector<ClassMetrics> out(static_cast<std::size_t>(classes));
  for (long c = 0; c < classes; ++c) {
    double predicted = 0, actual = 0;
    for (long o = 0; o < classes; ++o) {
      predicted += confusion[o * classes + c];
      actual += confusion[c * classes + o];
    }
    const double hit = confusion[c * classes + c];
    ClassMetrics& m = out[c];
    m.support = actual;
    m.precision = predicted > 0 ? hit / predicted : 0;
    m.recall = actual > 0 ? hit / actual : 0;
    m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0;
  }
  return out;
}

RegressionMetrics regression_metrics(const RegressionSums& sums, double samples) {
  RegressionMetrics m;
  const std::size_t k = sums.sq_error.size();
  for (std::size_t j = 0; j < k; ++j) {
    m.mse += sums.sq_error[j];
    m.mae += sums.abs_error[j];
    const double sst = sums.sq_deviation[j];
    const double r2 = sst > 0 ? 1 - sums.sq_error[j] / sst
                      : sums.sq_error[j] == 0 ? 1.0
                                              : -std::numeric_limits<double>::infinity();
    m.r2.push_back(r2);
    m.r2_mean += r2;
  }
  const double cells = samples * static_cast<double>(k);
  m.mse /= cells;
  m.mae /= cells;
  m.r2_mean /= static_cast<double>(k);
  return m;
}

}  // namespace nn_dist
