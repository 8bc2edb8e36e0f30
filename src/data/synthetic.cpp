// Synthetic samples, one column at a time, from the caller's random stream (a
// training and a validation set drawn with two streams share the teacher).
#include "nn_dist/data/synthetic.hpp"

#include <cmath>

namespace nn_dist {

const NameTable<SyntheticKind>& synthetic_kind_names() {
  static const NameTable<SyntheticKind> table(
      "--kind", {{SyntheticKind::kSpirals, "spirals"}, {SyntheticKind::kTeacher, "teacher"}, {SyntheticKind::kXor, "xor"},
                 {SyntheticKind::kLinear, "linear"}, {SyntheticKind::kRegression, "regression"}});
  return table;
}

SyntheticData::SyntheticData(const SyntheticOptions& options, uint64_t seed) : options_(options) {
  const long d = options.features, k = options.kind == SyntheticKind::kRegression ? options.targets : options.classes;
  Rng rng(mix_seed(seed, 7));
  w1_.resize(32, d);
  w2_.resize(k, 32);
  for (long i = 0; i < w1_.size(); ++i) w1_.data()[i] = rng.normal() * 2.0 / std::sqrt(double(d));
  for (long i = 0; i < w2_.size(); ++i) w2_.data()[i] = rng.normal() * 2.0 / std::sqrt(32.0);
}

void SyntheticData::draw(long n, Rng& rng, Matrix<float>* x, Matrix<double>* y) const {
  const long d = options_.features;
  x->resize(d, n);
  y->resize(options_.kind == SyntheticKind::kRegression ? options_.targets : 1, n);
  for (long j = 0; j < n; ++j) {
    Eigen::VectorXd v(d);
    switch (options_.kind) {
      case SyntheticKind::kSpirals: spiral(rng, &v, &(*y)(0, j)); break;
      case SyntheticKind::kXor:
      case SyntheticKind::kLinear: binary(rng, &v, &(*y)(0, j)); break;
      case SyntheticKind::kTeacher:
      case SyntheticKind::kRegression: from_teacher(rng, &v, &(*y)(0, j)); break;
    }
    if (options_.integer_features) v = (v * 100).array().round().matrix();
    x->col(j) = v.cast<float>();
  }
}

// An arm of the spiral, a point along it with noise; features past the first two are noise alone.
void SyntheticData::spiral(Rng& rng, Eigen::VectorXd* v, double* label) const {
  const long arm = static_cast<long>(rng.below(options_.classes));
  const double t = rng.uniform();  // position along the arm
  const double angle = 2 * M_PI * (1.5 * t + static_cast<double>(arm) / options_.classes);
  v->setZero();
  (*v)[0] = t * std::cos(angle) + options_.noise * rng.normal();
  (*v)[1] = t * std::sin(angle) + options_.noise * rng.normal();
  for (long i = 2; i < v->size(); ++i) (*v)[i] = rng.normal();  // uninformative extra features
  *label = static_cast<double>(arm);
}

// Uniform features in [-1, 1); class 1 where x0 x1 (xor) or the feature sum (linear), plus noise, is positive.
void SyntheticData::binary(Rng& rng, Eigen::VectorXd* v, double* label) const {
  for (long i = 0; i < v->size(); ++i) (*v)[i] = 2 * rng.uniform() - 1;
  double score = options_.kind == SyntheticKind::kXor ? (*v)[0] * (*v)[1] : v->sum();
  score += options_.noise * rng.normal();
  *label = score > 0 ? 1 : 0;
}

// Normal features; the teacher's outputs plus noise are the targets (regression,
// y[0 .. targets)) or decide the class (the first largest output).
void SyntheticData::from_teacher(Rng& rng, Eigen::VectorXd* v, double* y) const {
  for (long i = 0; i < v->size(); ++i) (*v)[i] = rng.normal();
  Eigen::VectorXd out = w2_ * (w1_ * *v).array().tanh().matrix();
  if (options_.kind == SyntheticKind::kRegression) {
    for (long i = 0; i < options_.targets; ++i) y[i] = out[i] + options_.noise * rng.normal();
    return;
  }
  for (long i = 0; i < options_.classes; ++i) out[i] += options_.noise * rng.normal();
  Eigen::Index best = 0;
  out.maxCoeff(&best);
  *y = static_cast<double>(best);
}

}  // namespace nn_dist
