// The bf16 kernels behind gemm() (model/gemm.cpp dispatches to them):
// products of f32 operands rounded to bf16, summed in f32. Internal to the
// model library.
#pragma once

#include <cstddef>
#include <cstdint>

#include "nn_dist/model/gemm.hpp"

namespace nn_dist {
namespace bf16 {

bool amx_supported();  // AMX-BF16 tiles, granted by the kernel, and AVX512_BF16 for the rounding
bool dp_supported();   // AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16)

// The packing space the products need (bf16 elements, 64-byte aligned).
std::size_t packed_a_elements();
std::size_t packed_b_elements();

// C = op(A) op(B) (add: C +=) as gemm() takes them, packing into the
// workspace's bf16 buffers (packed_a_elements() and packed_b_elements()).
void amx_gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
              float* c, long ldc, GemmWorkspace& workspace, bool add);
void dp_gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
             float* c, long ldc, GemmWorkspace& workspace, bool add);

}  // namespace bf16
}  // namespace nn_dist
