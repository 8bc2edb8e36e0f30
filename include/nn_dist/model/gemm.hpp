// Single-precision matrix product C = op(A) op(B) for the step's shapes: a
// packed, cache-blocked product around an AVX-512 register-blocked kernel
// (32 x 8 block of C in 16 registers). Column-major throughout. Falls back
// to Eigen on CPUs without AVX-512. Allocates nothing: the caller owns the
// packing space (GemmWorkspace).
#pragma once

#include <Eigen/Core>
#include <cstddef>

#include "nn_dist/model/layout.hpp"

namespace nn_dist {

// True when the AVX-512 kernel was compiled in.
bool gemm_kernel_available();

class GemmWorkspace {
 public:
  GemmWorkspace();
  float* packed_a() { return a_.data(); }
  float* packed_b() { return b_.data(); }

 private:
  FlatBuffer a_, b_;
};

// C (m x n, leading dimension ldc) = op(A) op(B), op(A) (m x k), op(B) (k x n).
// A is stored (m x k, lda) or, with trans_a, (k x m, lda); B likewise.
void gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
          float* c, long ldc, GemmWorkspace& workspace);

// The same product through Eigen (any scalar, and Eigen's own threading).
template <typename T>
void eigen_gemm(long m, long n, long k, const T* a, long lda, bool trans_a, const T* b, long ldb, bool trans_b, T* c,
                long ldc) {
  using Dense = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using Stride = Eigen::OuterStride<>;
  using ConstMap = Eigen::Map<const Dense, 0, Stride>;
  Eigen::Map<Dense, 0, Stride> out(c, m, n, Stride(ldc));
  const ConstMap a_map(a, trans_a ? k : m, trans_a ? m : k, Stride(lda));
  const ConstMap b_map(b, trans_b ? n : k, trans_b ? k : n, Stride(ldb));
  if (!trans_a && !trans_b) {
    out.noalias() = a_map * b_map;
  } else if (!trans_a) {
    out.noalias() = a_map * b_map.transpose();
  } else if (!trans_b) {
    out.noalias() = a_map.transpose() * b_map;
  } else {
    out.noalias() = a_map.transpose() * b_map.transpose();
  }
}

}  // namespace nn_dist
