// SGD (momentum, weight decay), Adam and AdamW against their PyTorch update rules
// written out in double precision, over several steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "nn_dist/optim/clip.hpp"
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

// Five steps of o (Adam or AdamW), the first in two slices, against
// torch.optim's rule written out in double precision.
void expect_adam_rule(const OptimizerOptions& o) {
  Optimizer opt(o, kSize);
  Buffers r = make_run();
  const bool decoupled = o.kind == OptimizerKind::kAdamW;
  std::vector<double> m(kSize, 0.0), v(kSize, 0.0);
  for (int step = 0; step < 5; ++step) {
    fill_grads(r, step);
    opt.update(r.params.data(), r.grads.data(), 0.25f, 0, 15);
    opt.update(r.params.data(), r.grads.data(), 0.25f, 15, kSize);
    opt.finish_step();
    const int t = step + 1;
    for (std::size_t i = 0; i < kSize; ++i) {
      if (decoupled) r.p[i] *= 1 - o.lr * o.weight_decay;  // AdamW: θ *= 1 - η λ first ...
      const double g = grad_mean(i, step) + (decoupled ? 0 : o.weight_decay * r.p[i]);  // ... Adam: λθ in g
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(o.beta2, t)) + o.eps;
      r.p[i] -= o.lr / (1 - std::pow(o.beta1, t)) * m[i] / denom;
    }
  }
  for (std::size_t i = 0; i < kSize; ++i) EXPECT_NEAR(r.params[i], r.p[i], 1e-5) << optimizer_name(o.kind) << " " << i;
  EXPECT_EQ(opt.state_names(), (std::vector<std::string>{"exp_avg", "exp_avg_sq"}));
}

TEST(OptimizerTest, AdamFollowsPyTorch) {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  o.lr = 0.01;
  o.weight_decay = 0.001;
  expect_adam_rule(o);
}

TEST(OptimizerTest, AdamWFollowsPyTorch) {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdamW;
  o.lr = 0.01;
  o.weight_decay = 0.5;  // large, so coupling it into the gradient (Adam's way) would be far off
  expect_adam_rule(o);
}

// Shared memory hands the optimizer two ranks' gradients to add while it
// updates: the result must be the same bits as updating from their sum.
TEST(OptimizerTest, TwoPartSumsGiveTheBitsOfTheirSum) {
  const std::size_t n = 1000;  // vector loops and a tail
  OptimizerOptions plain, momentum, adam, adamw;
  momentum.momentum = 0.9;
  momentum.weight_decay = 0.01;
  adam.kind = OptimizerKind::kAdam;
  adam.weight_decay = 0.001;
  adamw.kind = OptimizerKind::kAdamW;
  adamw.weight_decay = 0.01;
  for (const OptimizerOptions& o : {plain, momentum, adam, adamw}) {
    SCOPED_TRACE(optimizer_name(o.kind) + " momentum " + std::to_string(o.momentum));
    Optimizer summed(o, n), parts(o, n);
    FlatBuffer p1(n), p2(n), a(n), b(n), sums(n);
    for (std::size_t i = 0; i < n; ++i) p1[i] = p2[i] = std::sin(0.01f * i);
    for (int step = 0; step < 3; ++step) {
      for (std::size_t i = 0; i < n; ++i) {
        a[i] = std::cos(0.37f * i + step);
        b[i] = 1e-3f * std::sin(1.3f * i - step);
        sums[i] = a[i] + b[i];
      }
      summed.update(p1.data(), sums.data(), 0.125f, 0, n);
      parts.update(p2.data(), a.data(), b.data(), 0.125f, 0, 600);
      parts.update(p2.data(), a.data(), b.data(), 0.125f, 600, n);
      summed.finish_step();
      parts.finish_step();
    }
    EXPECT_EQ(std::memcmp(p1.data(), p2.data(), n * sizeof(float)), 0);
    for (std::size_t k = 0; k < summed.state().size(); ++k) {
      EXPECT_EQ(std::memcmp(summed.state()[k], parts.state()[k], n * sizeof(float)), 0) << "state " << k;
    }
  }
}

// --clip-grad-norm's sum of squares: the same bits however the gradient is
// cut into slices (passed in order) and whether its sums come whole or in two
// float parts, and within double rounding of the exact sum.
TEST(ClipTest, SumOfSquaresDoesNotDependOnTheCuts) {
  const std::size_t n = 1003;  // whole runs of 8 lanes, an unaligned head and a tail
  FlatBuffer a(n), b(n), sums(n);
  long double exact = 0;
  for (std::size_t i = 0; i < n; ++i) {
    a[i] = std::sin(0.37f * i) * (1 + i % 7);
    b[i] = 1e-3f * std::cos(1.3f * i);
    sums[i] = a[i] + b[i];
    exact += static_cast<long double>(sums[i]) * sums[i];
  }
  SquareSums whole;
  add_squares(sums.data(), nullptr, 0, n, &whole);
  EXPECT_NEAR(whole.total(), static_cast<double>(exact), 1e-14 * static_cast<double>(exact));
  // The definition, one element at a time (this file is built for any x86-64: no fused
  // multiply-add), against the loops the CPU runs (AVX-512 where it has it): the same bits.
  double lane[SquareSums::kLanes] = {};
  for (std::size_t i = 0; i < n; ++i) {
    const double x = sums[i];
    const double square = x * x;
    lane[i % SquareSums::kLanes] += square;
  }
  double defined = lane[0];
  for (int k = 1; k < SquareSums::kLanes; ++k) defined += lane[k];
  EXPECT_EQ(whole.total(), defined);
  for (const std::vector<std::size_t>& cuts : {std::vector<std::size_t>{0, 1, 2, 3, 500, 501, n},
                                               std::vector<std::size_t>{0, 7, 8, 9, 15, 16, 17, 640, 999, n},
                                               std::vector<std::size_t>{0, 333, 666, n}}) {
    SquareSums cut, parts;
    for (std::size_t c = 0; c + 1 < cuts.size(); ++c) {
      add_squares(sums.data(), nullptr, cuts[c], cuts[c + 1], &cut);
      add_squares(a.data(), b.data(), cuts[c], cuts[c + 1], &parts);
    }
    EXPECT_EQ(cut.total(), whole.total());
    EXPECT_EQ(parts.total(), whole.total());
  }
}

}  // namespace
}  // namespace nn_dist
