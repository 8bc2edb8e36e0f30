// Synthetic data (data/synthetic.hpp): the same seed and stream draw the same
// samples, labels lie in their range, and each kind has its shape.
#include <gtest/gtest.h>

#include <cmath>

#include "nn_dist/data/synthetic.hpp"

namespace nn_dist {
namespace {

struct Drawn {
  Matrix<float> x;
  Matrix<double> y;
};

Drawn draw(const SyntheticOptions& o, uint64_t seed, uint64_t stream, long n) {
  const SyntheticData data(o, seed);
  Rng rng(mix_seed(seed, stream));
  Drawn d;
  data.draw(n, rng, &d.x, &d.y);
  return d;
}

TEST(SyntheticTest, SameSeedAndStreamDrawTheSameSamples) {
  SyntheticOptions o;
  o.kind = SyntheticKind::kTeacher;
  o.features = 5;
  o.classes = 4;
  const Drawn a = draw(o, 3, 1, 50), b = draw(o, 3, 1, 50), other = draw(o, 3, 2, 50);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.y, b.y);
  EXPECT_NE(a.x, other.x) << "the validation stream repeats the training one";
}

TEST(SyntheticTest, EachKindHasItsShapeAndLabels) {
  for (const char* name : {"spirals", "teacher", "xor", "linear", "regression"}) {
    SyntheticOptions o;
    o.kind = synthetic_kind_names().parse(name);
    o.features = 3;
    o.targets = 2;
    const Drawn d = draw(o, 1, 1, 200);
    ASSERT_EQ(d.x.rows(), 3) << name;
    ASSERT_EQ(d.x.cols(), 200) << name;
    const bool regression = o.kind == SyntheticKind::kRegression;
    ASSERT_EQ(d.y.rows(), regression ? 2 : 1) << name;
    if (regression) continue;
    const bool binary = o.kind == SyntheticKind::kXor || o.kind == SyntheticKind::kLinear;
    const long classes = binary ? 2 : o.classes;
    std::vector<long> count(classes, 0);
    for (long j = 0; j < 200; ++j) {
      const double label = d.y(0, j);
      ASSERT_TRUE(label >= 0 && label < classes && label == std::floor(label)) << name << " " << label;
      ++count[static_cast<long>(label)];
    }
    for (long c = 0; c < classes; ++c) EXPECT_GT(count[c], 0) << name << ": no sample of class " << c;
    if (binary) {
      EXPECT_LE(d.x.cwiseAbs().maxCoeff(), 1.0f) << name;
    }
  }
}

TEST(SyntheticTest, IntegerFeaturesAreWholeNumbers) {
  SyntheticOptions o;
  o.integer_features = true;
  const Drawn d = draw(o, 2, 1, 100);
  for (long i = 0; i < d.x.size(); ++i) EXPECT_EQ(d.x.data()[i], std::round(d.x.data()[i]));
  EXPECT_GT(d.x.cwiseAbs().maxCoeff(), 1.0f) << "features were not scaled by 100";
}

}  // namespace
}  // namespace nn_dist
