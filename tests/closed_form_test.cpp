// The seed's closed forms: the gradient of y = ||W β + b||^2 with respect to
// β, b and W, and one logistic-regression SGD step on a minibatch.
#include <gtest/gtest.h>

#include <cmath>

#include "nn_dist/model/mlp.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

TEST(ClosedFormTest, SquaredNormOfAffineMap) {
  // No hidden layer + mse against a zero target: loss = 1/2 ||W β + b||^2 = y / 2.
  const long d = 4, k = 3;
  const Layout layout({d, k});
  std::vector<double> params;
  testing::random_params(layout, 3, 1.0, params);
  Eigen::Map<const Matrix<double>> w(params.data() + layout.weight(0).offset, k, d);
  Eigen::Map<const Vector<double>> b(params.data() + layout.bias(0).offset, k);
  Vector<double> beta(d);
  beta << 0.5, -1.25, 2.0, 0.75;
  const Matrix<double> zero = Matrix<double>::Zero(k, 1);

  Mlp<double> mlp(layout, Activation::kIdentity, Loss::kMse, 1);
  mlp.forward(params.data(), beta.data(), 1);
  const LossSums sums = mlp.loss_and_delta(nullptr, zero.data());
  std::vector<double> grad(layout.total(), 0.0);
  Vector<double> dbeta(d);
  mlp.backward(params.data(), beta.data(), grad.data(), nullptr, dbeta.data());

  const Vector<double> r = w * beta + b;
  EXPECT_NEAR(2 * sums.loss, r.squaredNorm(), 1e-12);
  // dy/dβ = 2 Wᵀ(Wβ + b), dy/db = 2(Wβ + b), dy/dW = 2(Wβ + b)βᵀ; our gradients are of y/2.
  const Vector<double> expect_beta = 2 * w.transpose() * r;
  const Vector<double> expect_b = 2 * r;
  const Matrix<double> expect_w = 2 * r * beta.transpose();
  for (long i = 0; i < d; ++i) EXPECT_NEAR(2 * dbeta[i], expect_beta[i], 1e-12);
  for (long i = 0; i < k; ++i) EXPECT_NEAR(2 * grad[layout.bias(0).offset + i], expect_b[i], 1e-12);
  Eigen::Map<const Matrix<double>> dw(grad.data() + layout.weight(0).offset, k, d);
  EXPECT_LT((2 * dw - expect_w).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(ClosedFormTest, LogisticRegressionSgdStep) {
  // θ ← θ − η (1/|J|) Σ_J [σ(x_jᵀθ) − y_j] x_j, with x_j extended by a constant 1 for the bias.
  const long d = 3, batch = 4;
  const Layout layout({d, 1});
  FlatBuffer params;
  testing::random_params(layout, 9, 0.5, params);
  Matrix<float> x(d, batch);
  x << 0.2f, -1.0f, 0.7f, 1.5f,
       -0.4f, 0.3f, 0.9f, -1.2f,
       1.1f, 0.6f, -0.8f, 0.05f;
  Matrix<float> y(1, batch);
  y << 1, 0, 1, 0;
  const double eta = 0.3;

  // Expected, in double, from the formula.
  Vector<double> theta(d + 1);
  for (long i = 0; i < d; ++i) theta[i] = params[layout.weight(0).offset + i];
  theta[d] = params[layout.bias(0).offset];
  Vector<double> step = Vector<double>::Zero(d + 1);
  for (long j = 0; j < batch; ++j) {
    Vector<double> xj(d + 1);
    xj << x.col(j).cast<double>(), 1.0;
    const double sigma = 1 / (1 + std::exp(-xj.dot(theta)));
    step += (sigma - y(0, j)) * xj;
  }
  const Vector<double> expected = theta - eta * step / batch;

  Mlp<float> mlp(layout, Activation::kIdentity, Loss::kLogistic, batch);
  mlp.forward(params.data(), x.data(), batch);
  mlp.loss_and_delta(nullptr, y.data());
  FlatBuffer grad(layout.total(), 0.0f);
  mlp.backward(params.data(), x.data(), grad.data());
  OptimizerOptions options;
  options.lr = eta;
  Optimizer sgd(options, layout.total());
  sgd.update(params.data(), grad.data(), 1.0f / batch, 0, layout.total());
  for (long i = 0; i < d; ++i) EXPECT_NEAR(params[layout.weight(0).offset + i], expected[i], 1e-6);
  EXPECT_NEAR(params[layout.bias(0).offset], expected[d], 1e-6);
}

TEST(ClosedFormTest, IdentityNetworkIsALinearMap) {
  // With f = identity a deep net collapses to z = (W3 W2 W1) x + c.
  const Layout layout({3, 5, 4, 2});
  std::vector<double> params;
  testing::random_params(layout, 21, 0.8, params);
  auto w = [&](int l) {
    const TensorSlot& t = layout.weight(l);
    return Eigen::Map<const Matrix<double>>(params.data() + t.offset, t.rows, t.cols);
  };
  auto b = [&](int l) {
    return Eigen::Map<const Vector<double>>(params.data() + layout.bias(l).offset, layout.bias(l).rows);
  };
  const Matrix<double> a = w(2) * w(1) * w(0);
  const Vector<double> c = w(2) * (w(1) * b(0) + b(1)) + b(2);
  Matrix<double> x(3, 2);
  x << 1, -2, 0.5, 3, -1, 0.25;
  Mlp<double> mlp(layout, Activation::kIdentity, Loss::kMse, 2);
  mlp.forward(params.data(), x.data(), 2);
  const Matrix<double> expected = (a * x).colwise() + c;
  EXPECT_LT((mlp.output() - expected).cwiseAbs().maxCoeff(), 1e-12);
}

}  // namespace
}  // namespace nn_dist
