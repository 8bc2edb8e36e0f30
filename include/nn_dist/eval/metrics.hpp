// Evaluation metrics from sums that add over ranks: a confusion matrix for
// classification, per-column error sums for regression. No MPI: the caller
// sums the counts over the ranks, then derives the metrics.
#pragma once

#include <vector>

namespace nn_dist {

struct ClassMetrics {
  double precision = 0, recall = 0, f1 = 0;  // 0 where undefined (nothing predicted as, or no sample of, the class)
  double support = 0;                        // samples of the class
};

// confusion[t * classes + p]: samples of true class t predicted as p.
std::vector<ClassMetrics> class_metrics(const std::vector<double>& confusion, long classes);

// Per target column over all samples: sums of |h - y|, (h - y)^2 and
// (y - mean_y)^2 (the last from a first pass that found mean_y).
struct RegressionSums {
  std::vector<double> abs_error, sq_error, sq_deviation;
};

struct RegressionMetrics {
  double mse = 0, mae = 0;  // means over samples and columns
  std::vector<double> r2;   // per column: 1 - SSE / SST (0 / 0 counts as 1, a constant predicted exactly)
  double r2_mean = 0;
};
RegressionMetrics regression_metrics(const RegressionSums& sums, double samples);

}  // namespace nn_dist
