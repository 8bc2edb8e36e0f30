// Hidden-layer activations f and their derivatives, as fused passes over
// column blocks (samples are columns). Pure math: no I/O, no MPI.
#pragma once

#include <Eigen/Core>
#include <string>

#include "nn_dist/common/name_table.hpp"

namespace nn_dist {

enum class Activation { kRelu, kTanh, kSigmoid, kIdentity };

// The names --activation and checkpoints use.
const NameTable<Activation>& activation_names();
Activation parse_activation(const std::string& name);  // throws Error naming --activation
std::string activation_name(Activation f);

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

// z <- f(z + b 1^T), in place, in one pass. z: (d, n), b: (d).
template <typename T>
void bias_activate(Activation f, MatrixRef<T> z, const ConstVectorRef<T>& b);

// g <- f'(z) ∘ g, in place, with f'(z) recovered from a = f(z) so the
// pre-activations need not be kept. a, g: (d, n).
template <typename T>
void multiply_derivative(Activation f, const ConstMatrixRef<T>& a, MatrixRef<T> g);

// Scalar reference forms, for tests: f(z) and f'(z).
double activation_value(Activation f, double z);
double activation_derivative(Activation f, double z);

}  // namespace nn_dist
