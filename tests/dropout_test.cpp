// Dropout masks: the share of dropped units is p within 3 sigma, a sample's
// mask depends on its key and row only (not its column in the batch), a
// forward pass without a draw never drops, and --dropout's parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "nn_dist/model/dropout.hpp"
#include "nn_dist/model/mlp.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

TEST(DropoutTest, TheDroppedShareIsPWithinThreeSigma) {
  const long units = 64, n = 500;
  std::vector<int64_t> samples(n);
  std::iota(samples.begin(), samples.end(), 1000);
  std::vector<float> mask(units * n);
  for (double p : {0.1, 0.5, 0.8}) {
    for (int layer : {0, 1}) {
      dropout_mask(DropoutKey{3, 1, 4}, samples.data(), n, layer, units, p, mask.data());
      const double count = static_cast<double>(mask.size());
      const double zeros = static_cast<double>(std::count(mask.begin(), mask.end(), 0.0f));
      const double sigma = std::sqrt(p * (1 - p) / count);
      EXPECT_NEAR(zeros / count, p, 3 * sigma) << "p " << p << " layer " << layer;
      const float kept = 1.0f / static_cast<float>(1 - p);
      EXPECT_EQ(std::count(mask.begin(), mask.end(), kept) + zeros, count) << "kept units scaled by 1 / (1 - p)";
    }
  }
}

TEST(DropoutTest, ASamplesMaskDependsOnItsKeyAndRowNotItsColumn) {
  const long units = 40;
  const int64_t batch[3] = {7, 123, 55};
  const int64_t alone[1] = {123};
  std::vector<float> in_batch(units * 3), by_itself(units), other_epoch(units), other_step(units), other_seed(units);
  dropout_mask(DropoutKey{5, 2, 9}, batch, 3, 1, units, 0.5, in_batch.data());
  dropout_mask(DropoutKey{5, 2, 9}, alone, 1, 1, units, 0.5, by_itself.data());
  EXPECT_TRUE(std::equal(by_itself.begin(), by_itself.end(), in_batch.begin() + units))
      << "row 123 draws the same mask in column 1 of a batch and on its own";
  dropout_mask(DropoutKey{5, 3, 9}, alone, 1, 1, units, 0.5, other_epoch.data());
  dropout_mask(DropoutKey{5, 2, 8}, alone, 1, 1, units, 0.5, other_step.data());
  dropout_mask(DropoutKey{6, 2, 9}, alone, 1, 1, units, 0.5, other_seed.data());
  EXPECT_NE(by_itself, other_epoch);
  EXPECT_NE(by_itself, other_step);
  EXPECT_NE(by_itself, other_seed);
  for (long i = 0; i < units; ++i) {
    EXPECT_EQ(by_itself[i] == 0, dropped(DropoutKey{5, 2, 9}, 123, 1, i, 0.5)) << "unit " << i;
  }
}

TEST(DropoutTest, ForwardWithoutADrawNeverDropsAndRateZeroChangesNothing) {
  const Layout layout({4, 16, 8, 3});
  std::vector<float> params;
  testing::random_params(layout, 3, 0.5, params);
  const long n = 6;
  Matrix<float> x(4, n);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(std::sin(0.7 * i));
  const int64_t samples[n] = {0, 1, 2, 3, 4, 5};
  const DropoutDraw draw{DropoutKey{1, 0, 0}, samples};
  Mlp<float> plain(layout, Activation::kRelu, Loss::kSoftmax, n);
  plain.forward(params.data(), x.data(), n);
  const Matrix<float> expected = plain.output();

  Mlp<float> dropping(layout, Activation::kRelu, Loss::kSoftmax, n);
  dropping.set_dropout({0.5, 0.5});
  dropping.forward(params.data(), x.data(), n);  // evaluation: no draw
  EXPECT_EQ(Matrix<float>(dropping.output()), expected);
  EXPECT_EQ(dropping.dropout_mask(0), nullptr);
  dropping.forward(params.data(), x.data(), n, &draw);  // training
  EXPECT_NE(Matrix<float>(dropping.output()), expected);
  EXPECT_NE(dropping.dropout_mask(0), nullptr);

  Mlp<float> zero(layout, Activation::kRelu, Loss::kSoftmax, n);
  zero.set_dropout({0, 0});
  zero.forward(params.data(), x.data(), n, &draw);
  EXPECT_EQ(Matrix<float>(zero.output()), expected) << "rate 0: the same bits as no dropout";
}

TEST(DropoutTest, ParsesOneRateOrOnePerHiddenLayer) {
  EXPECT_EQ(parse_dropout("0.5"), std::vector<double>{0.5});
  EXPECT_EQ(parse_dropout("0.2,0"), (std::vector<double>{0.2, 0}));
  EXPECT_EQ(dropout_rates({0.3}, 3), (std::vector<double>{0.3, 0.3, 0.3}));
  EXPECT_EQ(dropout_rates({0.1, 0.2}, 2), (std::vector<double>{0.1, 0.2}));
  EXPECT_EQ(testing::error_of([] { parse_dropout("1"); }),
            "--dropout: '1' is not a rate in [0, 1) (give one, or one per hidden layer: 0.2,0.5)");
  EXPECT_EQ(testing::error_of([] { parse_dropout("0.2,x"); }),
            "--dropout: 'x' is not a rate in [0, 1) (give one, or one per hidden layer: 0.2,0.5)");
  EXPECT_EQ(testing::error_of([] { parse_dropout("0.2,"); }),
            "--dropout: '0.2,' is not a list of rates in [0, 1) (e.g. 0.5, or 0.2,0.5)");
  EXPECT_EQ(testing::error_of([] { dropout_rates({0.1, 0.2}, 3); }),
            "--dropout: 2 rates for 3 hidden layer(s) (give one rate, or one per hidden layer)");
}

}  // namespace
}  // namespace nn_dist
