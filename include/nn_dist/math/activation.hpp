// Hidden-layer activations f and their derivatives, as fused passes over
// column blocks (samples are columns). Pure math: no I/O, no MPI.
#pragma once

#include <Eigen/Core>
#include <string>

#include "nn_dist/common/name_table.hpp"

namespace nn_dist {

// New kinds go last: nn_eval sends the value between ranks as a number.
enum class Activation { kRelu, kTanh, kSigmoid, kIdentity, kGelu, kGeluTanh, kSilu, kLeakyRelu };

// The names --activation and checkpoints use.
const NameTable<Activation>& activation_names();
Activation parse_activation(const std::string& name);  // throws Error naming --activation
std::string activation_name(Activation f);

constexpr double kDefaultLeakySlope = 0.01;  // --leaky-slope, as torch.nn.LeakyReLU's negative_slope

// A hidden activation with its parameter. An Activation converts to one
// (leaky_relu then has the default slope).
struct ActivationFn {
  Activation kind = Activation::kRelu;
  double leaky_slope = kDefaultLeakySlope;  // leaky_relu: f(z) = slope z for z <= 0; > 0, so f(z) > 0 iff z > 0
  ActivationFn(Activation k = Activation::kRelu, double slope = kDefaultLeakySlope) : kind(k), leaky_slope(slope) {}
};

// gelu, gelu_tanh and silu: f'(z) cannot be recovered from f(z), so the
// forward pass keeps f'(z) for the backward pass (bias_activate with a derivative).
bool keeps_derivative(Activation f);

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <typename T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using MatrixRef = Eigen::Ref<Matrix<T>>;
template <typename T>
using ConstMatrixRef = Eigen::Ref<const Matrix<T>>;
template <typename T>
using ConstVectorRef = Eigen::Ref<const Vector<T>>;

// z <- f(z + b 1^T), in place, in one pass. z: (d, n), b: (d). f: any but those that keep_derivative.
template <typename T>
void bias_activate(const ActivationFn& f, MatrixRef<T> z, const ConstVectorRef<T>& b);

// For f that keeps_derivative: z <- f(z + b 1^T) and derivative <- f'(z + b 1^T),
// in one pass. z, derivative: (d, n), b: (d).
template <typename T>
void bias_activate(const ActivationFn& f, MatrixRef<T> z, const ConstVectorRef<T>& b, MatrixRef<T> derivative);

// g <- f'(z) ∘ g, in place, with f'(z) recovered from a = f(z) so the
// pre-activations need not be kept. a, g: (d, n). f: any but those that keep_derivative.
template <typename T>
void multiply_derivative(const ActivationFn& f, const ConstMatrixRef<T>& a, MatrixRef<T> g);

// Scalar reference forms, for tests: f(z) and f'(z), in closed form.
double activation_value(const ActivationFn& f, double z);
double activation_derivative(const ActivationFn& f, double z);

// The instruction sets the float kernels of gelu, gelu_tanh and silu are
// compiled for; bias_activate uses the widest this CPU runs. Tests run each.
enum class VectorIsa { kBaseline, kAvx2, kAvx512 };
bool cpu_runs(VectorIsa isa);
void bias_activate(VectorIsa isa, const ActivationFn& f, MatrixRef<float> z, const ConstVectorRef<float>& b,
                   MatrixRef<float> derivative);

}  // namespace nn_dist
