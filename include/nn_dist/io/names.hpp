// The names of a dataset's features (X's columns) and classes (y's labels
// 0..K-1): nn_convert stores them from a CSV, and a checkpoint records those
// it was trained with. Where two files meet, the names both carry must be
// equal; what one of them leaves unnamed is compared by count only.
#pragma once

#include <string>
#include <vector>

namespace nn_dist {

struct DataNames {
  std::vector<std::string> features;  // feature i is features[i]; empty: unnamed
  std::vector<std::string> labels;    // class k is labels[k]; empty: unnamed
};

// Throws Error "<a_what>: ..." naming both files when a and b both name their
// features, or both name their classes, and the names differ (in content or order).
void require_same_names(const DataNames& a, const std::string& a_what, const DataNames& b, const std::string& b_what);

// a, with each list a leaves empty taken from b.
DataNames names_or(const DataNames& a, const DataNames& b);

// "x, y, z" for messages: the first 10 names, each cut to 40 bytes.
std::string names_text(const std::vector<std::string>& names);

}  // namespace nn_dist
