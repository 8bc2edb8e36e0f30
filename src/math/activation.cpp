// Activations as fused element-wise passes: bias add + f on the way forward,
// f' (from the stored output) times the incoming gradient on the way back.
#include "nn_dist/math/activation.hpp"

#include <cmath>

namespace nn_dist {

const NameTable<Activation>& activation_names() {
  static const NameTable<Activation> table("--activation", {{Activation::kRelu, "relu"},
                                                            {Activation::kTanh, "tanh"},
                                                            {Activation::kSigmoid, "sigmoid"},
                                                            {Activation::kIdentity, "identity"},
                                                            {Activation::kGelu, "gelu"},
                                                            {Activation::kGeluTanh, "gelu_tanh"},
                                                            {Activation::kSilu, "silu"},
                                                            {Activation::kLeakyRelu, "leaky_relu"}});
  return table;
}

Activation parse_activation(const std::string& name) { return activation_names().parse(name); }

std::string activation_name(Activation f) { return activation_names().name(f); }

bool keeps_derivative(Activation f) {
  return f == Activation::kGelu || f == Activation::kGeluTanh || f == Activation::kSilu;
}

template <typename T>
void bias_activate(const ActivationFn& f, MatrixRef<T> z, const ConstVectorRef<T>& b) {
  eigen_assert(z.rows() == b.size() && !keeps_derivative(f.kind));
  switch (f.kind) {
    case Activation::kRelu:
      z = (z.colwise() + b).cwiseMax(T(0));
      break;
    case Activation::kTanh:
      z = (z.colwise() + b).array().tanh().matrix();
      break;
    case Activation::kSigmoid:
      // Written as 1/(1+exp(-x)) per element; stable at both ends in IEEE arithmetic.
      z = ((-(z.colwise() + b)).array().exp() + T(1)).inverse().matrix();
      break;
    case Activation::kIdentity:
      z.colwise() += b;
      break;
    case Activation::kLeakyRelu: {
      // max(x, 0) + slope min(x, 0): x or slope x exactly, without a branch.
      const T slope = static_cast<T>(f.leaky_slope);
      for (long j = 0; j < z.cols(); ++j) {
        auto x = (z.col(j) + b).array();
        z.col(j) = (x.cwiseMax(T(0)) + slope * x.cwiseMin(T(0))).matrix();
      }
      break;
    }
    case Activation::kGelu:
    case Activation::kGeluTanh:
    case Activation::kSilu:
      break;  // bias_activate with a derivative (smooth_activation.cpp)
  }
}

template <typename T>
void multiply_derivative(const ActivationFn& f, const ConstMatrixRef<T>& a, MatrixRef<T> g) {
  eigen_assert(a.rows() == g.rows() && a.cols() == g.cols() && !keeps_derivative(f.kind));
  switch (f.kind) {
    case Activation::kRelu:
      // A plain loop the compiler turns into a compare and a mask: Eigen's
      // select() compiled for baseline x86-64 branched on every element, and
      // with half the signs random that cost 0.3 ms of a 2.4 ms step.
      for (long j = 0; j < g.cols(); ++j) {
        const T* aj = a.data() + j * a.outerStride();
        T* gj = g.data() + j * g.outerStride();
        for (long i = 0; i < g.rows(); ++i) gj[i] = aj[i] > T(0) ? gj[i] : T(0);
      }
      break;
    case Activation::kTanh:
      g.array() *= T(1) - a.array().square();
      break;
    case Activation::kSigmoid:
      g.array() *= a.array() * (T(1) - a.array());
      break;
    case Activation::kIdentity:
      break;
    case Activation::kLeakyRelu: {
      // As torch: the slope at z <= 0; a > 0 exactly where z > 0 since the slope is positive.
      // A select, vectorised thanks to -fno-trapping-math (CMakeLists.txt).
      const T slope = static_cast<T>(f.leaky_slope);
      for (long j = 0; j < g.cols(); ++j) {
        const T* aj = a.data() + j * a.outerStride();
        T* gj = g.data() + j * g.outerStride();
        for (long i = 0; i < g.rows(); ++i) gj[i] *= aj[i] > T(0) ? T(1) : slope;
      }
      break;
    }
    case Activation::kGelu:
    case Activation::kGeluTanh:
    case Activation::kSilu:
      break;  // the forward pass kept f'(z): the caller multiplies by it
  }
}

namespace {
constexpr double kPi = 3.14159265358979323846;
constexpr double kGeluTanhKappa = 0.044715;  // as torch's approximate='tanh'
}  // namespace

double activation_value(const ActivationFn& f, double z) {
  switch (f.kind) {
    case Activation::kRelu: return z > 0 ? z : 0;
    case Activation::kTanh: return std::tanh(z);
    case Activation::kSigmoid: return 1 / (1 + std::exp(-z));
    case Activation::kIdentity: return z;
    case Activation::kGelu: return 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
    case Activation::kGeluTanh:
      return 0.5 * z * (1 + std::tanh(std::sqrt(2 / kPi) * (z + kGeluTanhKappa * z * z * z)));
    case Activation::kSilu: return z / (1 + std::exp(-z));
    case Activation::kLeakyRelu: return z > 0 ? z : f.leaky_slope * z;
  }
  return 0;
}

double activation_derivative(const ActivationFn& f, double z) {
  switch (f.kind) {
    case Activation::kRelu: return z > 0 ? 1 : 0;
    case Activation::kTanh: return 1 - std::tanh(z) * std::tanh(z);
    case Activation::kSigmoid: {
      const double s = 1 / (1 + std::exp(-z));
      return s * (1 - s);
    }
    case Activation::kIdentity: return 1;
    case Activation::kGelu:  // Φ(z) + z φ(z)
      return 0.5 * (1 + std::erf(z / std::sqrt(2.0))) + z * std::exp(-0.5 * z * z) / std::sqrt(2 * kPi);
    case Activation::kGeluTanh: {
      const double c = std::sqrt(2 / kPi), t = std::tanh(c * (z + kGeluTanhKappa * z * z * z));
      return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * kGeluTanhKappa * z * z);
    }
    case Activation::kSilu: {
      const double s = 1 / (1 + std::exp(-z));
      return s * (1 + z * (1 - s));
    }
    case Activation::kLeakyRelu: return z > 0 ? 1 : f.leaky_slope;
  }
  return 0;
}

template void bias_activate<float>(const ActivationFn&, MatrixRef<float>, const ConstVectorRef<float>&);
template void bias_activate<double>(const ActivationFn&, MatrixRef<double>, const ConstVectorRef<double>&);
template void multiply_derivative<float>(const ActivationFn&, const ConstMatrixRef<float>&, MatrixRef<float>);
template void multiply_derivative<double>(const ActivationFn&, const ConstMatrixRef<double>&, MatrixRef<double>);

}  // namespace nn_dist
