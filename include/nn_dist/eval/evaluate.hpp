// A checkpoint evaluated on a dataset, alone or over MPI ranks: rank 0 reads
// the model and every rank receives it; each rank reads its own shard of the
// data and the sums are added over the ranks; --predictions collects every
// sample's outputs in file order. The reports are eval/report.hpp's.
#pragma once

#include <string>
#include <vector>

#include "nn_dist/eval/metrics.hpp"
#include "nn_dist/math/loss.hpp"

namespace nn_dist {

class Communicator;

struct EvalOptions {
  std::string model, data, predictions, x_name = "X", y_name = "y";
  long batch = 256;  // samples per forward pass
};

// The same on every rank.
struct EvalResult {
  std::vector<long> sizes;  // the model's layer widths
  Loss loss = Loss::kSoftmax;
  double samples = 0;
  double loss_sum = 0, correct = 0;  // over the samples
  // Classification (softmax and logistic): classes, confusion[t * classes + p].
  long classes = 0;
  std::vector<double> confusion;
  // Regression (mse): per target column.
  RegressionSums regression;

  bool classification() const { return loss != Loss::kMse; }
  std::string model_text() const;  // "2-16-3 (softmax)"
};

// Checks the files (every rank agrees on an error), evaluates, and writes
// --predictions if asked. Throws AgreedError naming the flag or file at fault.
EvalResult evaluate(const Communicator& comm, const EvalOptions& options);

}  // namespace nn_dist
