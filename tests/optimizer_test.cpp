// SGD (momentum, weight decay) and Adam against their PyTorch update rules
// written out in double precision, over several steps.
#include <gtest/gtest.h>

#include <cmath>

#include "nn_dist/optim/optimizer.hpp"

namespace nn_dist {
namespace {

constexpr std::size_t kSize = 37;

struct Buffers {
  FlatBuffer params, grads;  // grads hold sums over a batch of 4
  std::vector<double> p;     // double reference
};

Buffers make_run() {
  Buffers r;
  for (std::size_t i = 0; i < kSize; ++i) {
    r.params.push_back(std::sin(0.3f * i));
    r.p.push_back(r.params.back());
  }
  return r;
}

double grad_mean(std::size_t i, int step) { return std::cos(0.7 * i + step) * (1 + 0.1 * step); }

void fill_grads(Buffers& r, int step) {
  r.grads.assign(kSize, 0.0f);
  for (std::size_t i = 0; i < kSize; ++i) r.grads[i] = static_cast<float>(4 * grad_mean(i, step));
}

TEST(OptimizerTest, SgdMomentumWeightDecayFollowsPyTorch) {
  OptimizerOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.weight_decay = 0.01;
  Optimizer opt(o, kSize);
  Buffers r = make_run();
  std::vector<double> v(kSize, 0.0);
  for (int step = 0; step < 4; ++step) {
    fill_grads(r, step);
    // Two slices, as the bucketed sync applies them.
    opt.update(r.params.data(), r.grads.data(), 0.25f, 20, kSize);
    opt.update(r.params.data(), r.grads.data(), 0.25f, 0, 20);
    opt.finish_step();
    for (std::size_t i = 0; i < kSize; ++i) {
      const double g = grad_mean(i, step) + o.weight_decay * r.p[i];
      v[i] = step == 0 ? g : o.momentum * v[i] + g;
      r.p[i] -= o.lr * v[i];
    }
  }
  for (std::size_t i = 0; i < kSize; ++i) EXPECT_NEAR(r.params[i], r.p[i], 1e-5) << i;
  EXPECT_EQ(opt.step(), 4);
}

TEST(OptimizerTest, PlainSgdIsGradientDescent) {
  OptimizerOptions o;
  o.lr = 0.5;
  Optimizer opt(o, kSize);
  Buffers r = make_run();
  fill_grads(r, 0);
  opt.update(r.params.data(), r.grads.data(), 0.25f, 0, kSize);
  for (std::size_t i = 0; i < kSize; ++i) EXPECT_NEAR(r.params[i], r.p[i] - 0.5 * grad_mean(i, 0), 1e-6);
  EXPECT_TRUE(opt.state().empty());
}

TEST(OptimizerTest, AdamFollowsPyTorch) {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  o.lr = 0.01;
  o.weight_decay = 0.001;
  Optimizer opt(o, kSize);
  Buffers r = make_run();
  std::vector<double> m(kSize, 0.0), v(kSize, 0.0);
  for (int step = 0; step < 5; ++step) {
    fill_grads(r, step);
    opt.update(r.params.data(), r.grads.data(), 0.25f, 0, kSize);
    opt.finish_step();
    const int t = step + 1;
    for (std::size_t i = 0; i < kSize; ++i) {
      const double g = grad_mean(i, step) + o.weight_decay * r.p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(o.beta2, t)) + o.eps;
      r.p[i] -= o.lr / (1 - std::pow(o.beta1, t)) * m[i] / denom;
    }
  }
  for (std::size_t i = 0; i < kSize; ++i) EXPECT_NEAR(r.params[i], r.p[i], 1e-5) << i;
  EXPECT_EQ(opt.state_names(), (std::vector<std::string>{"exp_avg", "exp_avg_sq"}));
}

}  // namespace
}  // namespace nn_dist
