// The packed matrix product, with one kernel per instruction set chosen at
// run time from the CPU's feature bits: the binary is built for baseline
// x86-64 and runs on any x86-64 CPU. Each kernel and its blocking live in a
// `#pragma GCC target` region (not a translation unit built with other
// flags), so no inline or template function shared with the rest of the
// program is ever compiled for an instruction set the CPU may lack.
//   AVX-512: a 32-row sliver of A times an 8-column sliver of B into 16 zmm
//     accumulators; 8 columns divide the batch sizes people use.
//   AVX2 + FMA (x86-64-v3, Haswell and later): 16 x 6 into 12 ymm accumulators.
//   otherwise: Eigen's product.
#include "nn_dist/model/gemm.hpp"

#include <immintrin.h>

#include <algorithm>

#include "nn_dist/common/cpu.hpp"
#include "nn_dist/common/error.hpp"
#include "model/gemm_bf16.hpp"

namespace nn_dist {

namespace {
constexpr long kKc = 256, kMc = 128, kMaxNc = 512;
}  // namespace

GemmWorkspace::GemmWorkspace()
    : a_(kMc * kKc), b_(kKc * kMaxNc), bf16_a_(bf16::packed_a_elements()), bf16_b_(bf16::packed_b_elements()) {}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,prfchw")
namespace avx512 {
namespace {

constexpr long kMr = 32, kNr = 8, kNc = 512;

#include "model/avx512_blocks.inc"

// The whole-sliver part of a transposed A: 16 x 16 blocks transposed in
// registers. Returns the columns of k packed.
long pack_a_transposed_fast(const float* a, long lda, long i0, long k0, long kc, float* sliver) {
  long k = 0;
  for (; k + 16 <= kc; k += 16) {
    for (long half = 0; half < kMr; half += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(a + (i0 + half + i) * lda + k0 + k);
      transpose16(r);
      for (int c = 0; c < 16; ++c) _mm512_store_ps(sliver + (k + c) * kMr + half, r[c]);
    }
  }
  return k;
}

// Two whole slivers of B at a time: 16 x 16 blocks transposed in registers.
// Returns the columns packed.
long pack_b_fast(const float* b, long ldb, long k0, long kc, long j0, long nc, float* out) {
  long jr = 0;
  for (; jr + 2 * kNr <= nc; jr += 2 * kNr) {
    float* first = out + jr * kc;
    float* second = first + kNr * kc;
    long k = 0;
    for (; k + 16 <= kc; k += 16) {
      __m512 r[16];
      for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(b + (j0 + jr + j) * ldb + k0 + k);
      transpose16(r);
      for (int c = 0; c < 16; ++c) {
        _mm256_store_ps(first + (k + c) * kNr, _mm512_castps512_ps256(r[c]));
        _mm256_store_ps(second + (k + c) * kNr, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r[c]), 1)));
      }
    }
    for (; k < kc; ++k) {
      for (long j = 0; j < kNr; ++j) {
        first[k * kNr + j] = b[(j0 + jr + j) * ldb + k0 + k];
        second[k * kNr + j] = b[(j0 + jr + kNr + j) * ldb + k0 + k];
      }
    }
  }
  return jr;
}

// c[0..rows, 0..cols) (+)= a_sliver (32 x kc, column k at a + k * a_stride)
// * b_sliver (kc x 8), where element (i, j) of c is c[i * row_stride + j * col_stride]: row_stride 1 is
// the usual column-major block, anything else a transposed (scattered) store.
// Every loop over j is unrolled with constant bounds so that acc stays in
// registers (an index known only at run time would put it on the stack).
void kernel(long kc, const float* a, long a_stride, const float* b, float* c, long row_stride, long col_stride,
            long rows, long cols, bool accumulate) {
  __m512 acc[kNr][2];
#pragma GCC unroll 8
  for (long j = 0; j < kNr; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
  for (long k = 0; k < kc; ++k) {
    const __m512 a0 = _mm512_loadu_ps(a + k * a_stride);
    const __m512 a1 = _mm512_loadu_ps(a + k * a_stride + 16);
    const float* bk = b + k * kNr;
#pragma GCC unroll 8
    for (long j = 0; j < kNr; ++j) {
      const __m512 bj = _mm512_set1_ps(bk[j]);
      acc[j][0] = _mm512_fmadd_ps(a0, bj, acc[j][0]);
      acc[j][1] = _mm512_fmadd_ps(a1, bj, acc[j][1]);
    }
  }
  if (row_stride != 1) {
    alignas(64) float tile[kNr][kMr];
#pragma GCC unroll 8
    for (long j = 0; j < kNr; ++j) {
      _mm512_store_ps(tile[j], acc[j][0]);
      _mm512_store_ps(tile[j] + 16, acc[j][1]);
    }
    for (long i = 0; i < rows; ++i) {
      for (long j = 0; j < cols; ++j) {
        float& out = c[i * row_stride + j * col_stride];
        out = accumulate ? out + tile[j][i] : tile[j][i];
      }
    }
    return;
  }
  store_32x8(acc, c, col_stride, rows, cols, accumulate);
}

#include "model/gemm_blocked.inc"

}  // namespace
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,prfchw")
namespace avx2 {
namespace {

constexpr long kMr = 16, kNr = 6, kNc = 504;

long pack_a_transposed_fast(const float*, long, long, long, long, float*) { return 0; }
long pack_b_fast(const float*, long, long, long, long, long, float*) { return 0; }

// c[0..rows, 0..cols) (+)= a_sliver (16 x kc) * b_sliver (kc x 6), stored as
// in the AVX-512 kernel: 12 accumulators, two A registers and one broadcast
// of B fill the 16 ymm registers. Partial and transposed blocks go through a
// tile (AVX2 has no cheap masked store).
void kernel(long kc, const float* a, long a_stride, const float* b, float* c, long row_stride, long col_stride,
            long rows, long cols, bool accumulate) {
  __m256 acc[kNr][2];
#pragma GCC unroll 6
  for (long j = 0; j < kNr; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  for (long k = 0; k < kc; ++k) {
    const __m256 a0 = _mm256_loadu_ps(a + k * a_stride);
    const __m256 a1 = _mm256_loadu_ps(a + k * a_stride + 8);
    const float* bk = b + k * kNr;
#pragma GCC unroll 6
    for (long j = 0; j < kNr; ++j) {
      const __m256 bj = _mm256_broadcast_ss(bk + j);
      acc[j][0] = _mm256_fmadd_ps(a0, bj, acc[j][0]);
      acc[j][1] = _mm256_fmadd_ps(a1, bj, acc[j][1]);
    }
  }
  if (row_stride != 1 || rows < kMr) {
    alignas(32) float tile[kNr][kMr];
#pragma GCC unroll 6
    for (long j = 0; j < kNr; ++j) {
      _mm256_store_ps(tile[j], acc[j][0]);
      _mm256_store_ps(tile[j] + 8, acc[j][1]);
    }
    for (long i = 0; i < rows; ++i) {
      for (long j = 0; j < cols; ++j) {
        float& out = c[i * row_stride + j * col_stride];
        out = accumulate ? out + tile[j][i] : tile[j][i];
      }
    }
    return;
  }
#pragma GCC unroll 6
  for (long j = 0; j < kNr; ++j) {
    if (j >= cols) break;
    float* cj = c + j * col_stride;
    if (accumulate) {
      acc[j][0] = _mm256_add_ps(acc[j][0], _mm256_loadu_ps(cj));
      acc[j][1] = _mm256_add_ps(acc[j][1], _mm256_loadu_ps(cj + 8));
    }
    _mm256_storeu_ps(cj, acc[j][0]);
    _mm256_storeu_ps(cj + 8, acc[j][1]);
  }
}

#include "model/gemm_blocked.inc"

}  // namespace
}  // namespace avx2
#pragma GCC pop_options

namespace {

GemmKernel best_kernel(Precision precision) {
  if (precision == Precision::kBf16) {
    if (bf16::amx_supported()) return GemmKernel::kAmx;
    if (bf16::dp_supported()) return GemmKernel::kAvx512Bf16;
    throw Error("--precision bf16: this CPU has neither AMX-BF16 nor AVX512_BF16 (the bf16 products need one of them)");
  }
  if (cpu_has_avx512()) return GemmKernel::kAvx512;
  if (cpu_has_avx2()) return GemmKernel::kAvx2;
  return GemmKernel::kEigen;
}

GemmKernel& selected() {
  static GemmKernel kernel = best_kernel(Precision::kF32);
  return kernel;
}

}  // namespace

bool gemm_kernel_supported(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::kAvx512: return cpu_has_avx512();
    case GemmKernel::kAvx2: return cpu_has_avx2();
    case GemmKernel::kAmx: return bf16::amx_supported();
    case GemmKernel::kAvx512Bf16: return bf16::dp_supported();
    case GemmKernel::kEigen: return true;
    case GemmKernel::kAuto: return true;
  }
  return false;
}

Precision kernel_precision(GemmKernel kernel) {
  return kernel == GemmKernel::kAmx || kernel == GemmKernel::kAvx512Bf16 ? Precision::kBf16 : Precision::kF32;
}

GemmKernel gemm_kernel() { return selected(); }

Precision gemm_precision() { return kernel_precision(selected()); }

void set_gemm_kernel(GemmKernel kernel, Precision precision) {
  if (kernel == GemmKernel::kAuto) {
    selected() = best_kernel(precision);
    return;
  }
  check_kernel_precision(kernel, precision);
  if (!gemm_kernel_supported(kernel)) {
    throw Error("--gemm " + gemm_kernel_name(kernel) + ": this CPU does not have the instructions it needs");
  }
  selected() = kernel;
}

void check_kernel_precision(GemmKernel kernel, Precision precision) {
  if (kernel == GemmKernel::kAuto || kernel_precision(kernel) == precision) return;
  throw Error("--gemm " + gemm_kernel_name(kernel) + " computes in " + precision_name(kernel_precision(kernel)) +
              ", not --precision " + precision_name(precision) +
              (precision == Precision::kBf16 ? " (bf16 kernels: amx, avx512_bf16)" : " (add --precision bf16)"));
}

const NameTable<GemmKernel>& gemm_kernel_names() {
  static const NameTable<GemmKernel> table("--gemm", {{GemmKernel::kAuto, "auto"},
                                                      {GemmKernel::kAvx512, "avx512"},
                                                      {GemmKernel::kAvx2, "avx2"},
                                                      {GemmKernel::kEigen, "eigen"},
                                                      {GemmKernel::kAmx, "amx"},
                                                      {GemmKernel::kAvx512Bf16, "avx512_bf16"}});
  return table;
}

GemmKernel parse_gemm_kernel(const std::string& name) { return gemm_kernel_names().parse(name); }

std::string gemm_kernel_name(GemmKernel kernel) { return gemm_kernel_names().name(kernel); }

const NameTable<Precision>& precision_names() {
  static const NameTable<Precision> table("--precision", {{Precision::kF32, "f32"}, {Precision::kBf16, "bf16"}});
  return table;
}

Precision parse_precision(const std::string& name) { return precision_names().parse(name); }

std::string precision_name(Precision precision) { return precision_names().name(precision); }

void gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
          float* c, long ldc, GemmWorkspace& workspace, bool add) {
  switch (selected()) {
    case GemmKernel::kAvx512: avx512::gemm(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc, workspace, add); return;
    case GemmKernel::kAvx2: avx2::gemm(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc, workspace, add); return;
    case GemmKernel::kAmx:
      bf16::amx_gemm(m, n, k, a, lda, trans_a, nullptr, b, ldb, trans_b, c, ldc, workspace, add);
      return;
    case GemmKernel::kAvx512Bf16:
      bf16::dp_gemm(m, n, k, a, lda, trans_a, nullptr, b, ldb, trans_b, c, ldc, workspace, add);
      return;
    default: eigen_gemm(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc, add); return;
  }
}

std::size_t bf16_packed_a_elements(long m, long k) { return bf16::packed_all_elements(m, k); }

void bf16_pack_a(long m, long k, const float* a, long lda, bool trans_a, std::uint16_t* out) {
  if (gemm_precision() != Precision::kBf16) throw Error("internal: bf16_pack_a without a bf16 kernel");
  bf16::pack_all(m, k, a, lda, trans_a, out);
}

void bf16_repack_a(long m, long k, const float* a, std::size_t begin, std::size_t end, std::uint16_t* out) {
  if (gemm_precision() != Precision::kBf16) throw Error("internal: bf16_repack_a without a bf16 kernel");
  bf16::pack_columns(m, k, a, begin, end, out);
}

void gemm_packed_a(long m, long n, long k, const std::uint16_t* packed_a, const float* b, long ldb, bool trans_b,
                   float* c, long ldc, GemmWorkspace& workspace, bool add) {
  if (selected() == GemmKernel::kAmx) {
    bf16::amx_gemm(m, n, k, nullptr, 0, false, packed_a, b, ldb, trans_b, c, ldc, workspace, add);
  } else if (selected() == GemmKernel::kAvx512Bf16) {
    bf16::dp_gemm(m, n, k, nullptr, 0, false, packed_a, b, ldb, trans_b, c, ldc, workspace, add);
  } else {
    throw Error("internal: gemm_packed_a without a bf16 kernel");
  }
}

}  // namespace nn_dist
