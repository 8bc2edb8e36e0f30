// The float activation kernels against the closed forms in double: gelu,
// gelu_tanh and silu for every vector instruction set this CPU runs (their
// exp and erf are polynomials), and leaky_relu's slope both ways.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "nn_dist/math/activation.hpp"

namespace nn_dist {
namespace {

// z: (rows, cols) from -12 to 12, where exp and erf saturate, with a bias per row.
// 37 rows: the vector loops' tails run too.
struct Grid {
  Matrix<float> z{37, 9};
  Vector<float> b{37};
  Grid() {
    for (long i = 0; i < z.size(); ++i) z.data()[i] = -12.0f + 24.0f * static_cast<float>(i) / static_cast<float>(z.size());
    for (long i = 0; i < b.size(); ++i) b(i) = 0.01f * static_cast<float>(i % 5) - 0.02f;
  }
  double input(long i, long j) const { return static_cast<double>(z(i, j) + b(i)); }
};

const char* isa_name(VectorIsa isa) {
  return isa == VectorIsa::kAvx512 ? "avx512" : isa == VectorIsa::kAvx2 ? "avx2" : "baseline";
}

TEST(ActivationKernelTest, SmoothActivationsMatchClosedFormsOnEveryInstructionSet) {
  int runs = 0;
  for (VectorIsa isa : {VectorIsa::kBaseline, VectorIsa::kAvx2, VectorIsa::kAvx512}) {
    if (!cpu_runs(isa)) continue;
    for (Activation kind : {Activation::kGelu, Activation::kGeluTanh, Activation::kSilu}) {
      const Grid grid;
      Matrix<float> a = grid.z, d(grid.z.rows(), grid.z.cols());
      bias_activate(isa, kind, a, grid.b, d);
      double worst_value = 0, worst_derivative = 0;
      for (long j = 0; j < a.cols(); ++j) {
        for (long i = 0; i < a.rows(); ++i) {
          const double x = grid.input(i, j), f = activation_value(kind, x), df = activation_derivative(kind, x);
          worst_value = std::max(worst_value, std::abs(a(i, j) - f) / std::max(1.0, std::abs(f)));
          worst_derivative = std::max(worst_derivative, std::abs(d(i, j) - df) / std::max(1.0, std::abs(df)));
        }
      }
      // A few float roundings of values up to 12: about 1e-6 relative.
      EXPECT_LT(worst_value, 2e-6) << isa_name(isa) << " " << activation_name(kind);
      EXPECT_LT(worst_derivative, 2e-6) << isa_name(isa) << " " << activation_name(kind) << "'";
      ++runs;
    }
  }
  EXPECT_GE(runs, 3);  // at least the baseline kernels ran
}

TEST(ActivationKernelTest, LeakyReluUsesItsSlopeBothWays) {
  const ActivationFn f(Activation::kLeakyRelu, 0.25);
  const Grid grid;
  Matrix<float> a = grid.z;
  bias_activate<float>(f, a, grid.b);
  Matrix<float> g = Matrix<float>::Constant(a.rows(), a.cols(), 2.0f);
  multiply_derivative<float>(f, a, g);
  for (long j = 0; j < a.cols(); ++j) {
    for (long i = 0; i < a.rows(); ++i) {
      const float x = grid.z(i, j) + grid.b(i);
      EXPECT_EQ(a(i, j), x > 0 ? x : 0.25f * x) << x;  // exact: one product
      EXPECT_EQ(g(i, j), x > 0 ? 2.0f : 0.5f) << x;
    }
  }
}

}  // namespace
}  // namespace nn_dist
