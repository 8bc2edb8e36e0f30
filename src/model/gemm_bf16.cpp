// The bf16 products of --precision bf16: f32 operands rounded to bf16 (round
// to nearest even, by the CPU's vcvtne2ps2bf16) as they are packed, products
// of pairs summed in f32, f32 results. Two kernels share the packing of A:
//   AMX: C^T is built from 16 x 16 f32 tiles, 2 x 2 at a time; a tile row is
//     one column of C, so finished tiles are stored straight into C.
//   AVX512_BF16: a 32-row sliver of A times an 8-column sliver of B into 16
//     zmm accumulators with vdpbf16ps (as the f32 AVX-512 kernel, k in pairs).
// The packing rounds every element of op(A) and op(B) once per product, so
// the values multiplied are exactly the bf16-rounded inputs.
#include "model/gemm_bf16.hpp"

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "nn_dist/common/cpu.hpp"

#pragma GCC push_options
// GCC 12 warns that _mm512_undefined_ps(), inside the shuffle intrinsics, is
// uninitialized (GCC bug 105593, fixed in 13): it is meant to be.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16,avx2,fma,bmi2")

namespace nn_dist {
namespace bf16 {
namespace {

using Bf16 = std::uint16_t;
// K is cut into equal blocks of at most kKc, each a multiple of kChunk (one
// AMX tile's depth); edges are zero-padded.
constexpr long kChunk = 32, kKc = 512, kMc = 128, kNc = 512, kMr = 32;

#include "model/avx512_blocks.inc"

long round_up(long x, long to) { return (x + to - 1) / to * to; }

__mmask16 lanes(long count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF) : count <= 0 ? 0 : static_cast<__mmask16>((1u << count) - 1);
}

// 32 consecutive floats from p (the first `count` of them; the rest 0), rounded to 32 bf16 in order.
__m512i round32(const float* p, long count) {
  const __m512 lo = _mm512_maskz_loadu_ps(lanes(count), p);
  const __m512 hi = _mm512_maskz_loadu_ps(lanes(count - 16), p + 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// Two rows of 16 floats, rounded and interleaved: dword t is the pair (x0[t], x1[t]).
__m512i interleave(__m512 x0, __m512 x1) {
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(x1, x0)));
}

// 16 registers of 16 dwords transposed (row r, dword t) -> (row t, dword r).
void transpose_dwords(__m512i r[16]) {
  __m512 f[16];
  for (int i = 0; i < 16; ++i) f[i] = _mm512_castsi512_ps(r[i]);
  transpose16(f);
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castps_si512(f[i]);
}

// Packs op(A)[i0 .. i0+mc, k0 .. k0+kc) in pairs of k ("VNNI"): 32-row
// slivers of kcp / 2 rows of 64 bf16 each, row p holding (A(i, 2p), A(i, 2p+1))
// for i = 0 .. 31. Rows past mc and k past kc are 0.
void pack_a(const float* a, long lda, bool trans, long i0, long mc, long k0, long kc, long kcp, Bf16* out) {
  if (!trans) {  // A(i, k) at a[k * lda + i]: a column of k holds the rows; read the block column by column
    for (long p = 0; p < kcp / 2; ++p) {
      const long k = 2 * p;
      const float* col = a + (k0 + k) * lda + i0;
      for (long i = 0; i < mc; i += 16) {
        const __mmask16 m = lanes(mc - i);
        const __m512 x0 = k < kc ? _mm512_maskz_loadu_ps(m, col + i) : _mm512_setzero_ps();
        const __m512 x1 = k + 1 < kc ? _mm512_maskz_loadu_ps(m, col + lda + i) : _mm512_setzero_ps();
        _mm512_store_si512(out + (i / kMr) * kMr * kcp + p * 64 + (i % kMr) * 2, interleave(x0, x1));
      }
      if (mc % kMr != 0 && mc % kMr <= 16) {  // the last sliver's second half: zeros
        _mm512_store_si512(out + (mc / kMr) * kMr * kcp + p * 64 + 32, _mm512_setzero_si512());
      }
    }
    return;
  }
  // A(i, k) at a[i * lda + k]: a row's pairs are adjacent; transpose 16 x 16 pairs
  for (long ir = 0; ir < mc; ir += kMr) {
    Bf16* sliver = out + ir * kcp;
    for (long half = 0; half < kMr; half += 16) {
      const long rows = std::min(16L, mc - ir - half);
      for (long c = 0; c < kcp; c += kChunk) {
        __m512i r[16];
        for (long i = 0; i < 16; ++i) {
          r[i] = i < rows ? round32(a + (i0 + ir + half + i) * lda + k0 + c, kc - c) : _mm512_setzero_si512();
        }
        transpose_dwords(r);
        for (long t = 0; t < 16; ++t) _mm512_store_si512(sliver + (c / 2 + t) * 64 + half * 2, r[t]);
      }
    }
  }
}

// op(B)(k, j) for the kc x nc block at (k0, j0), read as rows of j.
struct BlockB {
  const float* b;
  long ldb;
  bool trans;
  long k0, kc, kcp, j0, nc;
  // The pairs (B(2p, j), B(2p+1, j)) for 16 columns from j and 16 pairs from
  // k = c, as 16 registers of 16 dwords: r[t] holds pair c/2 + t (by_k) or
  // column j + t (by_j). Each layout of B reads one of them directly and the
  // other through a transpose.
  void pairs_by_k(long c, long j, __m512i r[16]) const {
    if (trans) {
      rows_of_k(c, j, r);
    } else {
      columns(c, j, r);
      transpose_dwords(r);
    }
  }
  void pairs_by_j(long c, long j, __m512i r[16]) const {
    if (trans) {
      rows_of_k(c, j, r);
      transpose_dwords(r);
    } else {
      columns(c, j, r);
    }
  }

 private:
  // trans: B(k, j) at b[k * ldb + j], a row of k holds 16 columns.
  void rows_of_k(long c, long j, __m512i r[16]) const {
    const __mmask16 m = lanes(nc - j);
    for (long t = 0; t < 16; ++t) {
      const long k = c + 2 * t;
      const float* row = b + (k0 + k) * ldb + j0 + j;
      const __m512 x0 = k < kc ? _mm512_maskz_loadu_ps(m, row) : _mm512_setzero_ps();
      const __m512 x1 = k + 1 < kc ? _mm512_maskz_loadu_ps(m, row + ldb) : _mm512_setzero_ps();
      r[t] = interleave(x0, x1);
    }
  }
  // not trans: B(k, j) at b[j * ldb + k], a column's pairs are adjacent.
  void columns(long c, long j, __m512i r[16]) const {
    for (long t = 0; t < 16; ++t) {
      r[t] = j + t < nc ? round32(b + (j0 + j + t) * ldb + k0 + c, kc - c) : _mm512_setzero_si512();
    }
  }
};

// AMX: rows of j, each kcp bf16 of k in order (the A operand of a tile
// product); nc is padded to a multiple of 32 with zero rows.
void pack_b_rows(const BlockB& blk, Bf16* out) {
  for (long j = 0; j < round_up(blk.nc, 32); j += 16) {
    for (long c = 0; c < blk.kcp; c += kChunk) {
      __m512i r[16];
      blk.pairs_by_j(c, j, r);
      for (long t = 0; t < 16; ++t) _mm512_store_si512(out + (j + t) * blk.kcp + c, r[t]);
    }
  }
}

// AVX512_BF16: 8-column slivers, each kcp / 2 rows of 8 pairs (dword j of row p: (B(2p, j), B(2p+1, j))).
void pack_b_pairs(const BlockB& blk, Bf16* out) {
  for (long j = 0; j < blk.nc; j += 16) {
    Bf16* first = out + j * blk.kcp;
    Bf16* second = first + 8 * blk.kcp;
    for (long c = 0; c < blk.kcp; c += kChunk) {
      __m512i r[16];
      blk.pairs_by_k(c, j, r);
      for (long t = 0; t < 16; ++t) {
        const long p = c / 2 + t;
        _mm256_store_si256(reinterpret_cast<__m256i*>(first + p * 16), _mm512_castsi512_si256(r[t]));
        if (j + 8 < blk.nc) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(second + p * 16), _mm512_extracti64x4_epi64(r[t], 1));
        }
      }
    }
  }
}

// --- AMX ---------------------------------------------------------------------

struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = 16;
  }
  _tile_loadconfig(&config);
}

// C block (rows x cols of C, at most 32 x 32; element (i, j) at c[j * ldc + i])
// (+)= a_sliver (pairs of k, 32 rows) * b_rows (32 rows of j, kcp each).
// Tiles 0..3: C^T (j-half, i-half); 4, 5: rows of j; 6, 7: pairs of A.
void amx_kernel(long kcp, const Bf16* a_sliver, const Bf16* b_rows, float* c, long ldc, long rows, long cols,
                bool accumulate) {
  const bool whole = rows == 32 && cols == 32;
  alignas(64) float edge[4][16 * 16];
  float* dst[4];
  long stride = ldc;
  if (whole) {
    dst[0] = c, dst[1] = c + 16, dst[2] = c + 16 * ldc, dst[3] = c + 16 * ldc + 16;
  } else {
    stride = 16;
    for (int t = 0; t < 4; ++t) {
      dst[t] = edge[t];
      for (long j = 0; j < 16; ++j) {
        for (long i = 0; i < 16; ++i) {
          const long ci = i + 16 * (t & 1), cj = j + 16 * (t >> 1);
          edge[t][j * 16 + i] = accumulate && ci < rows && cj < cols ? c[cj * ldc + ci] : 0.0f;
        }
      }
    }
  }
  if (accumulate || !whole) {
    _tile_loadd(0, dst[0], stride * 4);
    _tile_loadd(1, dst[1], stride * 4);
    _tile_loadd(2, dst[2], stride * 4);
    _tile_loadd(3, dst[3], stride * 4);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (long k = 0; k < kcp; k += kChunk) {
    _tile_loadd(4, b_rows + k, kcp * 2);
    _tile_loadd(5, b_rows + 16 * kcp + k, kcp * 2);
    _tile_loadd(6, a_sliver + k * 32, 128);
    _tile_loadd(7, a_sliver + k * 32 + 32, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, dst[0], stride * 4);
  _tile_stored(1, dst[1], stride * 4);
  _tile_stored(2, dst[2], stride * 4);
  _tile_stored(3, dst[3], stride * 4);
  if (whole) return;
  for (int t = 0; t < 4; ++t) {
    for (long j = 16 * (t >> 1); j < std::min<long>(cols, 16 * (t >> 1) + 16); ++j) {
      for (long i = 16 * (t & 1); i < std::min<long>(rows, 16 * (t & 1) + 16); ++i) {
        c[j * ldc + i] = edge[t][(j % 16) * 16 + i % 16];
      }
    }
  }
}

// --- AVX512_BF16 ---------------------------------------------------------------

// C block (rows x cols, at most 32 x 8) (+)= a_sliver * b_sliver, 2 x 8 zmm accumulators.
void dp_kernel(long kcp, const Bf16* a_sliver, const Bf16* b_sliver, float* c, long ldc, long rows, long cols,
               bool accumulate) {
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
  const std::int32_t* b = reinterpret_cast<const std::int32_t*>(b_sliver);
  for (long p = 0; p < kcp / 2; ++p) {
    const __m512bh a0 = reinterpret_cast<__m512bh>(_mm512_load_si512(a_sliver + p * 64));
    const __m512bh a1 = reinterpret_cast<__m512bh>(_mm512_load_si512(a_sliver + p * 64 + 32));
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512bh bj = reinterpret_cast<__m512bh>(_mm512_set1_epi32(b[p * 8 + j]));
      acc[j][0] = _mm512_dpbf16_ps(acc[j][0], a0, bj);
      acc[j][1] = _mm512_dpbf16_ps(acc[j][1], a1, bj);
    }
  }
  store_32x8(acc, c, ldc, rows, cols, accumulate);
}

// K's blocks: equal, each a multiple of kChunk and at most kKc (the last one shorter).
long k_step(long k) {
  const long kblocks = (k + kKc - 1) / kKc;
  return round_up((k + kblocks - 1) / kblocks, kChunk);
}

// Where pack_all() puts op(A)'s block at (i0, k0): the blocks of each K block
// in order, each K block before it kstep deep.
long packed_offset(long m, long kstep, long i0, long k0, long kcp) {
  return k0 / kstep * kstep * round_up(m, kMr) + i0 * kcp;
}

// The blocking both kernels share: B packed kc x nc (L2), A in mc x kc blocks,
// the kernel over slivers of nr columns of B and 32 rows of A. A is packed
// here block by block, or was packed whole by pack_all() (prepacked_a).
template <bool kAmx>
void blocked(long m, long n, long k, const float* a, long lda, bool trans_a, const Bf16* prepacked_a, const float* b,
             long ldb, bool trans_b, float* c, long ldc, GemmWorkspace& workspace, bool add) {
  Bf16* packed_b = workspace.packed_bf16_b();
  constexpr long nr = kAmx ? 32 : 8;
  const long kstep = k_step(k);
  for (long j0 = 0; j0 < n; j0 += kNc) {
    const long nc = std::min(kNc, n - j0);
    for (long k0 = 0; k0 < k; k0 += kstep) {
      const long kc = std::min(kstep, k - k0), kcp = round_up(kc, kChunk);
      const BlockB blk{b, ldb, trans_b, k0, kc, kcp, j0, nc};
      if (kAmx) {
        pack_b_rows(blk, packed_b);
      } else {
        pack_b_pairs(blk, packed_b);
      }
      for (long i0 = 0; i0 < m; i0 += kMc) {
        const long mc = std::min(kMc, m - i0);
        const Bf16* packed_a = workspace.packed_bf16_a();
        if (prepacked_a != nullptr) {
          packed_a = prepacked_a + packed_offset(m, kstep, i0, k0, kcp);
        } else {
          pack_a(a, lda, trans_a, i0, mc, k0, kc, kcp, workspace.packed_bf16_a());
        }
        for (long jr = 0; jr < nc; jr += nr) {
          for (long ir = 0; ir < mc; ir += kMr) {
            float* block = c + (j0 + jr) * ldc + i0 + ir;
            const long rows = std::min(kMr, mc - ir), cols = std::min(nr, nc - jr);
            if (kAmx) {
              amx_kernel(kcp, packed_a + ir * kcp, packed_b + jr * kcp, block, ldc, rows, cols, add || k0 > 0);
            } else {
              dp_kernel(kcp, packed_a + ir * kcp, packed_b + jr * kcp, block, ldc, rows, cols, add || k0 > 0);
            }
            workspace.claim_some();
          }
        }
      }
    }
  }
}

}  // namespace

std::size_t packed_a_elements() { return kMc * kKc; }
std::size_t packed_b_elements() { return kNc * kKc; }

std::size_t packed_all_elements(long m, long k) {
  return static_cast<std::size_t>(round_up(m, kMr) * (k + kChunk * ((k + kKc - 1) / kKc)));
}

void pack_columns(long m, long k, const float* a, std::size_t begin, std::size_t end, Bf16* out) {
  const long kstep = k_step(k);
  for (std::size_t f = begin; f < end;) {
    const long kk = static_cast<long>(f / m), r0 = static_cast<long>(f % m);
    const long r1 = std::min<long>(m, r0 + static_cast<long>(end - f));
    const long k0 = kk / kstep * kstep, kcp = round_up(std::min(kstep, k - k0), kChunk), p = (kk - k0) / 2;
    Bf16* block = out + packed_offset(m, kstep, 0, k0, kcp) + p * 64;  // pair p of rows 0 .. 31
    const float* column = a + kk * m;
    const long pairs = std::min<long>(static_cast<long>(end - f) / (2 * m), (std::min(k0 + kstep, k) - kk) / 2);
    if ((kk - k0) % 2 == 0 && r0 == 0 && pairs > 0) {
      // Whole pairs of columns: each line of the packing written whole, once,
      // a sliver's rows in order.
      for (long i = 0; i < m; i += kMr) {
        Bf16* sliver = block + i * kcp;
        const __mmask16 low = lanes(m - i), high = lanes(m - i - 16);
        for (long q = 0; q < pairs; ++q) {
          const float* x = column + 2 * q * m + i;
          const __m512 x0 = _mm512_maskz_loadu_ps(low, x), x1 = _mm512_maskz_loadu_ps(low, x + m);
          const __m512 y0 = _mm512_maskz_loadu_ps(high, x + 16), y1 = _mm512_maskz_loadu_ps(high, x + m + 16);
          _mm512_store_si512(sliver + q * 64, interleave(x0, x1));
          _mm512_store_si512(sliver + q * 64 + 32, interleave(y0, y1));
        }
      }
      f += static_cast<std::size_t>(2 * m * pairs);
      continue;
    }
    // Part of a column: rows i .. i+15 are every other bf16 of 32 in one line.
    const std::uint32_t every_other = (kk - k0) % 2 == 0 ? 0x55555555u : 0xAAAAAAAAu;
    for (long i = r0 / 16 * 16; i < r1; i += 16) {
      const __mmask16 rows = static_cast<__mmask16>(lanes(r1 - i) & ~lanes(r0 - i));
      const __m256i b = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(rows, column + i)));
      __m512i pairs = _mm512_cvtepu16_epi32(b);
      if ((kk - k0) % 2 != 0) pairs = _mm512_slli_epi32(pairs, 16);
      _mm512_mask_storeu_epi16(block + i / kMr * kMr * kcp + i % kMr * 2, _pdep_u32(rows, every_other), pairs);
    }
    f += static_cast<std::size_t>(r1 - r0);
  }
}

void pack_all(long m, long k, const float* a, long lda, bool trans_a, Bf16* out) {
  const long kstep = k_step(k);
  for (long k0 = 0; k0 < k; k0 += kstep) {
    const long kc = std::min(kstep, k - k0), kcp = round_up(kc, kChunk);
    for (long i0 = 0; i0 < m; i0 += kMc) {
      pack_a(a, lda, trans_a, i0, std::min(kMc, m - i0), k0, kc, kcp, out + packed_offset(m, kstep, i0, k0, kcp));
    }
  }
}

void amx_gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const Bf16* prepacked_a, const float* b,
              long ldb, bool trans_b, float* c, long ldc, GemmWorkspace& workspace, bool add) {
  configure_tiles();
  blocked<true>(m, n, k, a, lda, trans_a, prepacked_a, b, ldb, trans_b, c, ldc, workspace, add);
  _tile_release();
}

void dp_gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const Bf16* prepacked_a, const float* b,
             long ldb, bool trans_b, float* c, long ldc, GemmWorkspace& workspace, bool add) {
  blocked<false>(m, n, k, a, lda, trans_a, prepacked_a, b, ldb, trans_b, c, ldc, workspace, add);
}

}  // namespace bf16

void round_to_bf16(const float* in, std::size_t n, float* out) {
  for (std::size_t i = 0; i < n; i += 32) {
    const long count = static_cast<long>(std::min<std::size_t>(32, n - i));
    const __m512i r = bf16::round32(in + i, count);
    // widen back: bf16 b -> float with bits b << 16
    const __m512i lo = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(r)), 16);
    const __m512i hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r, 1)), 16);
    _mm512_mask_storeu_ps(out + i, bf16::lanes(count), _mm512_castsi512_ps(lo));
    _mm512_mask_storeu_ps(out + i + 16, bf16::lanes(count - 16), _mm512_castsi512_ps(hi));
  }
}

void to_bf16(const float* in, std::size_t n, std::uint16_t* out) {
  for (std::size_t i = 0; i < n; i += 32) {
    const std::size_t count = std::min<std::size_t>(32, n - i);
    const __mmask32 m = count == 32 ? ~__mmask32{0} : (__mmask32{1} << count) - 1;
    _mm512_mask_storeu_epi16(out + i, m, bf16::round32(in + i, static_cast<long>(count)));
  }
}

void from_bf16(const std::uint16_t* in, std::size_t n, float* out) {
  for (std::size_t i = 0; i < n; i += 16) {
    const long count = static_cast<long>(std::min<std::size_t>(16, n - i));
    const __mmask16 m = bf16::lanes(count);
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, in + i));
    _mm512_mask_storeu_ps(out + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
}

}  // namespace nn_dist

#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace nn_dist {
namespace bf16 {

bool dp_supported() { return cpu_has_avx512() && cpu_has_avx512_bf16(); }

bool amx_supported() {
  // Linux hands out the tile registers only to a process that asks (arch_prctl ARCH_REQ_XCOMP_PERM).
  static const bool granted = [] {
    if (!dp_supported() || !cpu_has_amx_bf16()) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted;
}

}  // namespace bf16
}  // namespace nn_dist
