// Central-difference gradient checks in double precision: every activation x
// loss, whole networks with 0, 1 and 2 hidden layers, the input gradient, and
// dropout with its mask held fixed (the same key draws the same mask).
#include <gtest/gtest.h>

#include <cmath>

#include "nn_dist/model/mlp.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

struct Problem {
  Matrix<double> x;              // (d, n)
  std::vector<int32_t> labels;   // softmax
  Matrix<double> values;         // (k, n) logistic / mse
};

Problem make_problem(Loss loss, long d, long k, long n, uint64_t seed) {
  Rng rng(seed);
  Problem p;
  p.x.resize(d, n);
  for (long i = 0; i < p.x.size(); ++i) p.x.data()[i] = rng.normal();
  if (loss == Loss::kSoftmax) {
    for (long j = 0; j < n; ++j) p.labels.push_back(static_cast<int32_t>(rng.below(k)));
  } else {
    p.values.resize(k, n);
    for (long i = 0; i < p.values.size(); ++i) {
      p.values.data()[i] = loss == Loss::kLogistic ? static_cast<double>(rng.below(2)) : rng.normal();
    }
  }
  return p;
}

double loss_sum(Mlp<double>& mlp, const std::vector<double>& params, const Problem& p, const DropoutDraw* draw) {
  mlp.forward(params.data(), p.x.data(), p.x.cols(), draw);
  return mlp.loss_only(p.labels.empty() ? nullptr : p.labels.data(), p.values.size() ? p.values.data() : nullptr).loss;
}

// Compares backward() with central differences for every parameter and input;
// with dropout rates, every pass draws the same masks (a fixed key and samples).
void check_gradients(const std::vector<long>& sizes, const ActivationFn& f, Loss loss,
                     const std::vector<double>& dropout = {}) {
  const long n = 5;
  const Layout layout(sizes);
  Mlp<double> mlp(layout, f, loss, n, /*piece_elements=*/7);  // small pieces: exercises the column cuts
  std::vector<double> params;
  testing::random_params(layout, 11, 0.7, params);
  const Problem p = make_problem(loss, sizes.front(), sizes.back(), n, 5);
  const int64_t samples[n] = {40, 3, 17, 8, 25};
  const DropoutDraw fixed{DropoutKey{7, 2, 3}, samples};
  const DropoutDraw* draw = dropout.empty() ? nullptr : &fixed;
  mlp.set_dropout(dropout);

  mlp.forward(params.data(), p.x.data(), n, draw);
  for (std::size_t l = 0; l < dropout.size(); ++l) {  // the masks drop some units and keep others
    const Eigen::Map<const Matrix<double>> mask(mlp.dropout_mask(static_cast<int>(l)), sizes[l + 1], n);
    EXPECT_GT((mask.array() == 0).count(), 0) << "layer " << l;
    EXPECT_GT((mask.array() == 1 / (1 - dropout[l])).count(), 0) << "layer " << l;
  }
  mlp.loss_and_delta(p.labels.empty() ? nullptr : p.labels.data(), p.values.size() ? p.values.data() : nullptr);
  std::vector<double> grad(layout.total(), 0.0);
  Matrix<double> input_grad(sizes.front(), n);
  mlp.backward(params.data(), p.x.data(), grad.data(), nullptr, input_grad.data());

  const double h = 1e-6;
  for (int l = 0; l < layout.num_layers(); ++l) {
    for (const TensorSlot& t : {layout.weight(l), layout.bias(l)}) {
      for (std::size_t i = 0; i < t.size(); ++i) {
        std::vector<double> plus = params, minus = params;
        plus[t.offset + i] += h;
        minus[t.offset + i] -= h;
        const double numeric = (loss_sum(mlp, plus, p, draw) - loss_sum(mlp, minus, p, draw)) / (2 * h);
        EXPECT_NEAR(grad[t.offset + i], numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
            << "layer " << l << " element " << i;
      }
    }
  }
  for (long i = 0; i < input_grad.size(); ++i) {
    Problem plus = p, minus = p;
    plus.x.data()[i] += h;
    minus.x.data()[i] -= h;
    const double numeric = (loss_sum(mlp, params, plus, draw) - loss_sum(mlp, params, minus, draw)) / (2 * h);
    EXPECT_NEAR(input_grad.data()[i], numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << "input " << i;
  }
}

// Every activation; leaky_relu with a slope other than the default, so a slope lost on the way shows.
const std::vector<ActivationFn> kActivations{
    Activation::kRelu, Activation::kTanh, Activation::kSigmoid, Activation::kIdentity, Activation::kGelu,
    Activation::kGeluTanh, Activation::kSilu, ActivationFn(Activation::kLeakyRelu, 0.2)};

}  // namespace

// Names the activation in failure messages instead of its bytes.
void PrintTo(const ActivationFn& f, std::ostream* os) { *os << activation_name(f.kind) << " slope " << f.leaky_slope; }

namespace {

class ActivationLossTest : public ::testing::TestWithParam<std::tuple<ActivationFn, Loss>> {};

TEST_P(ActivationLossTest, OneHiddenLayerMatchesFiniteDifferences) {
  const auto [f, loss] = GetParam();
  const long k = loss == Loss::kLogistic ? 1 : 3;
  check_gradients({4, 6, k}, f, loss);
}

TEST_P(ActivationLossTest, TwoHiddenLayersMatchFiniteDifferences) {
  const auto [f, loss] = GetParam();
  const long k = loss == Loss::kLogistic ? 1 : 2;
  check_gradients({3, 5, 4, k}, f, loss);
}

INSTANTIATE_TEST_SUITE_P(
    AllPairs, ActivationLossTest,
    ::testing::Combine(::testing::ValuesIn(kActivations),
                       ::testing::Values(Loss::kSoftmax, Loss::kLogistic, Loss::kMse)),
    [](const auto& info) {
      return activation_name(std::get<0>(info.param).kind) + "_" + loss_name(std::get<1>(info.param));
    });

// Dropout: dW and the input gradient through the masks, and f' from the
// layer's output before it was dropped (tanh and sigmoid read it) or kept from
// the forward pass (gelu, gelu_tanh, silu).
TEST_P(ActivationLossTest, DropoutWithAFixedMaskMatchesFiniteDifferences) {
  const auto [f, loss] = GetParam();
  const long k = loss == Loss::kLogistic ? 1 : 2;
  check_gradients({3, 6, 7, k}, f, loss, {0.3, 0.5});
}

TEST(GradientTest, NoHiddenLayerMatchesFiniteDifferences) {
  for (Loss loss : {Loss::kSoftmax, Loss::kLogistic, Loss::kMse}) {
    check_gradients({5, loss == Loss::kLogistic ? 1L : 3L}, Activation::kRelu, loss);
  }
}

TEST(GradientTest, ActivationDerivativesMatchFiniteDifferences) {
  for (const ActivationFn& f : kActivations) {
    for (double z : {-2.5, -0.3, 0.4, 1.7}) {
      const double h = 1e-6;
      const double numeric = (activation_value(f, z + h) - activation_value(f, z - h)) / (2 * h);
      EXPECT_NEAR(activation_derivative(f, z), numeric, 1e-8) << activation_name(f.kind) << " at " << z;
    }
  }
}

// The closed forms themselves, against values computed elsewhere (Python's math.erf, tanh, exp),
// so that a wrong formula cannot hide behind its own finite differences.
TEST(GradientTest, ActivationValuesMatchIndependentValues) {
  struct Case {
    ActivationFn f;
    double z, value;
  };
  const Case cases[] = {
      {Activation::kGelu, 1.0, 0.8413447460685429},       // 1 * Φ(1)
      {Activation::kGelu, -0.5, -0.15426876936299344},
      {Activation::kGeluTanh, 1.0, 0.8411919906082768},   // torch.nn.GELU(approximate='tanh')(1.0)
      {Activation::kSilu, 1.0, 0.7310585786300049},       // 1 / (1 + e^-1)
      {Activation::kSilu, -2.0, -0.2384058440442351},
      {ActivationFn(Activation::kLeakyRelu, 0.2), -3.0, -0.6},
      {ActivationFn(Activation::kLeakyRelu, 0.2), 3.0, 3.0},
  };
  for (const Case& c : cases) {
    EXPECT_NEAR(activation_value(c.f, c.z), c.value, 1e-12) << activation_name(c.f.kind) << " at " << c.z;
  }
}

TEST(LossTest, StableForLargeOutputs) {
  // Softmax and logistic losses stay finite and exact where naive formulas overflow.
  Matrix<float> z(2, 1);
  z << 1000.0f, -1000.0f;
  const int32_t label = 1;
  Matrix<float> delta(2, 1);
  const LossSums s = loss_and_delta<float>(Loss::kSoftmax, z, &label, Matrix<float>(), delta);
  EXPECT_FLOAT_EQ(static_cast<float>(s.loss), 2000.0f);
  EXPECT_FLOAT_EQ(delta(0, 0), 1.0f);
  EXPECT_FLOAT_EQ(delta(1, 0), -1.0f);

  Matrix<float> zl(1, 2), yl(1, 2), dl(1, 2);
  zl << 500.0f, -500.0f;
  yl << 0.0f, 1.0f;
  const LossSums sl = loss_and_delta<float>(Loss::kLogistic, zl, nullptr, yl, dl);
  EXPECT_NEAR(sl.loss, softplus(500.0) + softplus(-500.0) - (-500.0), 1e-3);
  EXPECT_FLOAT_EQ(dl(0, 0), 1.0f);
  EXPECT_FLOAT_EQ(dl(0, 1), -1.0f);
  EXPECT_EQ(sl.correct, 0);
}

}  // namespace
}  // namespace nn_dist
