// The packed matrix product. Blocking (for one core): B is packed KC x NC at a
// time (fits L2), A in MC x KC blocks (L2), and the kernel multiplies a 32-row
// sliver of A by a 12-column sliver of B (L1) into 24 zmm accumulators, so
// each loaded value feeds 12 or 24 FMAs. Edges are zero-padded when packing
// and masked when storing.
#include "nn_dist/model/gemm.hpp"

#include <algorithm>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace nn_dist {

namespace {
constexpr long kMr = 32, kNr = 12, kKc = 256, kMc = 128, kNc = 516;  // kNc: a multiple of kNr
}  // namespace

GemmWorkspace::GemmWorkspace() : a_(kMc * kKc), b_(kKc * kNc) {}

#if defined(__AVX512F__)

bool gemm_kernel_available() { return true; }

namespace {

// Packs op(A)[i0 .. i0+mc, k0 .. k0+kc) as kMr-row slivers, k-major within each.
void pack_a(const float* a, long lda, bool trans, long i0, long mc, long k0, long kc, float* out) {
  for (long ir = 0; ir < mc; ir += kMr) {
    const long rows = std::min(kMr, mc - ir);
    float* sliver = out + ir * kc;
    if (!trans) {
      for (long k = 0; k < kc; ++k) {
        const float* src = a + (k0 + k) * lda + i0 + ir;
        float* dst = sliver + k * kMr;
        long i = 0;
        for (; i < rows; ++i) dst[i] = src[i];
        for (; i < kMr; ++i) dst[i] = 0;
      }
    } else {
      for (long i = 0; i < kMr; ++i) {
        if (i < rows) {
          const float* src = a + (i0 + ir + i) * lda + k0;
          for (long k = 0; k < kc; ++k) sliver[k * kMr + i] = src[k];
        } else {
          for (long k = 0; k < kc; ++k) sliver[k * kMr + i] = 0;
        }
      }
    }
  }
}

// Packs op(B)[k0 .. k0+kc, j0 .. j0+nc) as kNr-column slivers, k-major within each.
void pack_b(const float* b, long ldb, bool trans, long k0, long kc, long j0, long nc, float* out) {
  for (long jr = 0; jr < nc; jr += kNr) {
    const long cols = std::min(kNr, nc - jr);
    float* sliver = out + jr * kc;
    if (!trans) {
      for (long j = 0; j < kNr; ++j) {
        if (j < cols) {
          const float* src = b + (j0 + jr + j) * ldb + k0;
          for (long k = 0; k < kc; ++k) sliver[k * kNr + j] = src[k];
        } else {
          for (long k = 0; k < kc; ++k) sliver[k * kNr + j] = 0;
        }
      }
    } else {
      for (long k = 0; k < kc; ++k) {
        const float* src = b + (k0 + k) * ldb + j0 + jr;
        float* dst = sliver + k * kNr;
        long j = 0;
        for (; j < cols; ++j) dst[j] = src[j];
        for (; j < kNr; ++j) dst[j] = 0;
      }
    }
  }
}

// c[0..rows, 0..cols) (+)= a_sliver (32 x kc) * b_sliver (kc x 12).
void kernel(long kc, const float* a, const float* b, float* c, long ldc, long rows, long cols, bool accumulate) {
  __m512 acc[kNr][2];
  for (long j = 0; j < kNr; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
  for (long k = 0; k < kc; ++k) {
    const __m512 a0 = _mm512_load_ps(a + k * kMr);
    const __m512 a1 = _mm512_load_ps(a + k * kMr + 16);
    const float* bk = b + k * kNr;
#pragma GCC unroll 12
    for (long j = 0; j < kNr; ++j) {
      const __m512 bj = _mm512_set1_ps(bk[j]);
      acc[j][0] = _mm512_fmadd_ps(a0, bj, acc[j][0]);
      acc[j][1] = _mm512_fmadd_ps(a1, bj, acc[j][1]);
    }
  }
  const __mmask16 low = rows >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << rows) - 1);
  const __mmask16 high = rows >= 32 ? 0xFFFF : rows <= 16 ? 0 : static_cast<__mmask16>((1u << (rows - 16)) - 1);
  for (long j = 0; j < cols; ++j) {
    float* cj = c + j * ldc;
    if (accumulate) {
      acc[j][0] = _mm512_add_ps(acc[j][0], _mm512_maskz_loadu_ps(low, cj));
      acc[j][1] = _mm512_add_ps(acc[j][1], _mm512_maskz_loadu_ps(high, cj + 16));
    }
    _mm512_mask_storeu_ps(cj, low, acc[j][0]);
    _mm512_mask_storeu_ps(cj + 16, high, acc[j][1]);
  }
}

}  // namespace

void gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
          float* c, long ldc, GemmWorkspace& workspace) {
  float* packed_a = workspace.packed_a();
  float* packed_b = workspace.packed_b();
  if (k == 0) {
    for (long j = 0; j < n; ++j) std::fill(c + j * ldc, c + j * ldc + m, 0.0f);
    return;
  }
  for (long j0 = 0; j0 < n; j0 += kNc) {
    const long nc = std::min(kNc, n - j0);
    for (long k0 = 0; k0 < k; k0 += kKc) {
      const long kc = std::min(kKc, k - k0);
      pack_b(b, ldb, trans_b, k0, kc, j0, nc, packed_b);
      for (long i0 = 0; i0 < m; i0 += kMc) {
        const long mc = std::min(kMc, m - i0);
        pack_a(a, lda, trans_a, i0, mc, k0, kc, packed_a);
        for (long jr = 0; jr < nc; jr += kNr) {
          for (long ir = 0; ir < mc; ir += kMr) {
            kernel(kc, packed_a + ir * kc, packed_b + jr * kc, c + (j0 + jr) * ldc + i0 + ir, ldc,
                   std::min(kMr, mc - ir), std::min(kNr, nc - jr), k0 > 0);
          }
        }
      }
    }
  }
}

#else  // no AVX-512: Eigen's product

bool gemm_kernel_available() { return false; }

void gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
          float* c, long ldc, GemmWorkspace&) {
  eigen_gemm(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc);
}

#endif

}  // namespace nn_dist
