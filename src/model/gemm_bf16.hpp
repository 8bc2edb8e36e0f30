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

// Every block of an m x k op(A), rounded and packed as the products pack it,
// for several products that share op(A): the space it takes (bf16 elements,
// at most; monotone in m and k) and the packing.
std::size_t packed_all_elements(long m, long k);
void pack_all(long m, long k, const float* a, long lda, bool trans_a, std::uint16_t* out);
// The elements [begin, end) of A (m x k, stored column by column, lda = m),
// in pack_all()'s layout of A (not transposed), each element alone: ranges
// packed by other processes may share its cache lines, never an element.
void pack_columns(long m, long k, const float* a, std::size_t begin, std::size_t end, std::uint16_t* out);

// C = op(A) op(B) (add: C +=) as gemm() takes them, packing into the
// workspace's bf16 buffers (packed_a_elements() and packed_b_elements()),
// or with op(A) packed by pack_all() (prepacked_a, a ignored): the same bits.
void amx_gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const std::uint16_t* prepacked_a,
              const float* b, long ldb, bool trans_b, float* c, long ldc, GemmWorkspace& workspace, bool add);
void dp_gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const std::uint16_t* prepacked_a,
             const float* b, long ldb, bool trans_b, float* c, long ldc, GemmWorkspace& workspace, bool add);

}  // namespace bf16
}  // namespace nn_dist
