// Synthetic datasets as pure functions of their options and a seed: spirals
// and a random teacher network (classes no linear model separates), xor and
// linear binary sets (for the logistic loss), and teacher regression. No
// files: nn_datagen writes what this draws.
#pragma once

#include <Eigen/Core>
#include <cstdint>

#include "nn_dist/common/name_table.hpp"
#include "nn_dist/math/activation.hpp"
#include "nn_dist/model/init.hpp"

namespace nn_dist {

enum class SyntheticKind { kSpirals, kTeacher, kXor, kLinear, kRegression };
const NameTable<SyntheticKind>& synthetic_kind_names();  // the names --kind takes

struct SyntheticOptions {
  SyntheticKind kind = SyntheticKind::kSpirals;
  long features = 2;     // spirals and xor: at least 2 (the first two carry the signal)
  long classes = 3;      // spirals and teacher: at least 2
  long targets = 1;      // regression: target columns
  double noise = 0.1;
  bool integer_features = false;  // features x 100, rounded (for integer storage)
};

// A distribution to draw samples from: the options, and for the teacher kinds a
// fixed random network features -> 32 (tanh) -> outputs drawn from the seed.
class SyntheticData {
 public:
  SyntheticData(const SyntheticOptions& options, uint64_t seed);

  // n samples drawn with rng: x (features, n); y (1, n) class labels, or
  // (targets, n) values for regression.
  void draw(long n, Rng& rng, Matrix<float>* x, Matrix<double>* y) const;

  bool labels() const { return options_.kind != SyntheticKind::kRegression; }

 private:
  // One sample into v (features); its label, or its targets, into y.
  void spiral(Rng& rng, Eigen::VectorXd* v, double* label) const;
  void binary(Rng& rng, Eigen::VectorXd* v, double* label) const;
  void from_teacher(Rng& rng, Eigen::VectorXd* v, double* y) const;

  SyntheticOptions options_;
  Matrix<double> w1_, w2_;  // the teacher: w1 (32, features), w2 (outputs, 32)
};

}  // namespace nn_dist
