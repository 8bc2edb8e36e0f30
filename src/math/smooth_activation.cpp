// gelu, gelu_tanh and silu: the forward pass computes f(z) and f'(z) together
// (f'(z) cannot be recovered from f(z)), in float with one kernel per vector
// instruction set chosen at run time, as model/gemm.cpp does: each lives in a
// `#pragma GCC target` region, so no shared inline function is compiled for a
// set the CPU may lack. This file is built with -fno-trapping-math, which
// lets the compiler vectorise the clamps (selects) of the AVX2 and baseline loops.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "nn_dist/common/cpu.hpp"
#include "nn_dist/math/activation.hpp"

namespace nn_dist {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
namespace avx512 {
#include "math/smooth_activation.inc"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "math/smooth_activation.inc"
}  // namespace avx2
#pragma GCC pop_options

namespace baseline {
#include "math/smooth_activation.inc"
}  // namespace baseline

namespace {

VectorIsa widest_isa() {
  if (cpu_has_avx512()) return VectorIsa::kAvx512;
  if (cpu_has_avx2()) return VectorIsa::kAvx2;
  return VectorIsa::kBaseline;
}

}  // namespace

bool cpu_runs(VectorIsa isa) {
  switch (isa) {
    case VectorIsa::kAvx512: return cpu_has_avx512();
    case VectorIsa::kAvx2: return cpu_has_avx2();
    case VectorIsa::kBaseline: return true;
  }
  return false;
}

void bias_activate(VectorIsa isa, const ActivationFn& f, MatrixRef<float> z, const ConstVectorRef<float>& b,
                   MatrixRef<float> derivative) {
  eigen_assert(keeps_derivative(f.kind) && z.rows() == b.size() && derivative.rows() == z.rows() &&
               derivative.cols() == z.cols());
  const auto kernel = isa == VectorIsa::kAvx512 ? avx512::activate_columns
                      : isa == VectorIsa::kAvx2 ? avx2::activate_columns
                                                : baseline::activate_columns;
  kernel(f.kind, z.rows(), z.cols(), z.data(), z.outerStride(), b.data(), derivative.data(),
         derivative.outerStride());
}

template <typename T>
void bias_activate(const ActivationFn& f, MatrixRef<T> z, const ConstVectorRef<T>& b, MatrixRef<T> derivative) {
  if constexpr (std::is_same_v<T, float>) {
    static const VectorIsa isa = widest_isa();
    bias_activate(isa, f, z, b, derivative);
  } else {  // double precision (the gradient tests): the closed forms, element by element
    eigen_assert(keeps_derivative(f.kind) && z.rows() == b.size() && derivative.rows() == z.rows() &&
                 derivative.cols() == z.cols());
    for (long j = 0; j < z.cols(); ++j) {
      for (long i = 0; i < z.rows(); ++i) {
        const double x = z(i, j) + b(i);
        z(i, j) = activation_value(f, x);
        derivative(i, j) = activation_derivative(f, x);
      }
    }
  }
}

template void bias_activate<float>(const ActivationFn&, MatrixRef<float>, const ConstVectorRef<float>&,
                                   MatrixRef<float>);
template void bias_activate<double>(const ActivationFn&, MatrixRef<double>, const ConstVectorRef<double>&,
                                    MatrixRef<double>);

}  // namespace nn_dist
