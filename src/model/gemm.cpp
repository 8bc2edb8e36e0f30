// The packed matrix product. Blocking (for one core): B is packed KC x NC at a
// time (fits L2), A in MC x KC blocks (L2), and the kernel multiplies a 32-row
// sliver of A by an 8-column sliver of B (L1) into 16 zmm accumulators, so
// each loaded value feeds 8 or 16 FMAs; 8 columns divide the batch sizes
// people use (32, 64, 128, ...) and most layer widths, so no lanes are
// wasted on the N edge. K is cut into equal blocks (784 = 4 x 196, not
// 3 x 256 + 16). Edges are zero-padded when packing and masked when storing.
#include "nn_dist/model/gemm.hpp"

#include <algorithm>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace nn_dist {

namespace {
constexpr long kMr = 32, kNr = 8, kKc = 256, kMc = 128, kNc = 512;  // kNc: a multiple of kNr
}  // namespace

GemmWorkspace::GemmWorkspace() : a_(kMc * kKc), b_(kKc * kNc) {}

#if defined(__AVX512F__)

bool gemm_kernel_available() { return true; }

namespace {

// Transposes the 16 x 16 block held in r (r[i] is row i) in place: 64 shuffles
// instead of 256 scalar loads and stores. Within each 128-bit lane, unpack and
// shuffle_ps gather 4 x 4 blocks; shuffle_f32x4 then transposes the lanes.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + c]: lane L holds column 4L + c of rows 4g .. 4g+3.
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
    const __m512 x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 x2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 x3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(x0, x2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(x0, x2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(x1, x3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(x1, x3, 0xDD);
  }
}

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
      long k = 0;
      if (rows == kMr) {  // whole sliver: 16 x 16 blocks transposed in registers
        for (; k + 16 <= kc; k += 16) {
          for (long half = 0; half < kMr; half += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(a + (i0 + ir + half + i) * lda + k0 + k);
            transpose16(r);
            for (int c = 0; c < 16; ++c) _mm512_store_ps(sliver + (k + c) * kMr + half, r[c]);
          }
        }
      }
      for (long i = 0; i < kMr; ++i) {
        const float* src = a + (i0 + ir + i) * lda + k0;
        for (long kk = k; kk < kc; ++kk) sliver[kk * kMr + i] = i < rows ? src[kk] : 0.0f;
      }
    }
  }
}

// Packs op(B)[k0 .. k0+kc, j0 .. j0+nc) as kNr-column slivers, k-major within each.
void pack_b(const float* b, long ldb, bool trans, long k0, long kc, long j0, long nc, float* out) {
  long jr = 0;
  if (!trans) {  // two whole slivers at a time: 16 x 16 blocks transposed in registers
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
  }
  for (; jr < nc; jr += kNr) {
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
  const __mmask16 low = rows >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << rows) - 1);
  const __mmask16 high = rows >= 32 ? 0xFFFF : rows <= 16 ? 0 : static_cast<__mmask16>((1u << (rows - 16)) - 1);
#pragma GCC unroll 8
  for (long j = 0; j < kNr; ++j) {
    if (j >= cols) break;
    float* cj = c + j * col_stride;
    if (accumulate) {
      acc[j][0] = _mm512_add_ps(acc[j][0], _mm512_maskz_loadu_ps(low, cj));
      acc[j][1] = _mm512_add_ps(acc[j][1], _mm512_maskz_loadu_ps(high, cj + 16));
    }
    _mm512_mask_storeu_ps(cj, low, acc[j][0]);
    _mm512_mask_storeu_ps(cj + 16, high, acc[j][1]);
  }
}

// C = op(A) op(B) with C's element (i, j) at c[i * row_stride + j * col_stride].
void blocked_product(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb,
                     bool trans_b, float* c, long row_stride, long col_stride, GemmWorkspace& workspace) {
  float* packed_a = workspace.packed_a();
  float* packed_b = workspace.packed_b();
  // A (the weights, in the forward pass) read in place: for a batch of at
  // most 128 columns each sliver of A is used by few B slivers, and packing
  // it cost more than it saved (b32: 144 -> 106 us for 512 x 784 x 32).
  const bool direct_a = !trans_a && n <= 128 && m % kMr == 0;
  for (long j0 = 0; j0 < n; j0 += kNc) {
    const long nc = std::min(kNc, n - j0);
    const long kblocks = (k + kKc - 1) / kKc;
    const long kstep = (k + kblocks - 1) / kblocks;  // equal blocks of at most kKc
    for (long k0 = 0; k0 < k; k0 += kstep) {
      const long kc = std::min(kstep, k - k0);
      pack_b(b, ldb, trans_b, k0, kc, j0, nc, packed_b);
      for (long i0 = 0; i0 < m; i0 += kMc) {
        const long mc = std::min(kMc, m - i0);
        if (!direct_a) pack_a(a, lda, trans_a, i0, mc, k0, kc, packed_a);
        for (long jr = 0; jr < nc; jr += kNr) {
          for (long ir = 0; ir < mc; ir += kMr) {
            const float* a_sliver = direct_a ? a + k0 * lda + i0 + ir : packed_a + ir * kc;
            kernel(kc, a_sliver, direct_a ? lda : kMr, packed_b + jr * kc,
                   c + (j0 + jr) * col_stride + (i0 + ir) * row_stride, row_stride, col_stride,
                   std::min(kMr, mc - ir), std::min(kNr, nc - jr), k0 > 0);
            workspace.claim_some();
          }
        }
      }
    }
  }
}

}  // namespace

void gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
          float* c, long ldc, GemmWorkspace& workspace) {
  if (k == 0) {
    for (long j = 0; j < n; ++j) std::fill(c + j * ldc, c + j * ldc + m, 0.0f);
    return;
  }
  if (m < kMr / 2 && n >= kMr) {
    // Few rows (the output layer: 10 classes) would leave most of the 32-row
    // kernel idle; C^T = op(B)^T op(A)^T puts the long side under the kernel.
    blocked_product(n, m, k, b, ldb, !trans_b, a, lda, !trans_a, c, ldc, 1, workspace);
  } else {
    blocked_product(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, 1, ldc, workspace);
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
