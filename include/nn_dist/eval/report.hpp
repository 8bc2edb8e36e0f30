// nn_eval's report of a model on a dataset, as text for people or as one JSON
// object for machines, from the sums added over the ranks. No MPI, no I/O:
// the caller prints the text.
#pragma once

#include <string>
#include <vector>

#include "nn_dist/eval/metrics.hpp"

namespace nn_dist {

// A number as JSON has it (NaN is null, infinities the largest doubles).
std::string json_number(double v);
// text in quotes, with quotes, backslashes and control bytes escaped.
std::string json_string(const std::string& text);

// What both reports name: the data file, the model ("2-16-3 (softmax)") and the sample count.
struct ReportHeader {
  std::string data, model;
  double samples = 0;
};

// loss_sum and correct: sums over the samples; confusion[t * classes + p] (metrics.hpp).
std::string classification_report(const ReportHeader& header, double loss_sum, double correct,
                                  const std::vector<double>& confusion, long classes, bool json);

// loss: the training loss's mean; sums: per target column, over the samples.
std::string regression_report(const ReportHeader& header, double loss, const RegressionSums& sums, long targets,
                              bool json);

}  // namespace nn_dist
