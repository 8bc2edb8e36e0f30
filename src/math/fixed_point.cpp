// Float <-> 64-bit fixed point for the order-free gradient sum. Compiled with
// -fno-math-errno so llrint becomes one instruction (errno is all it changes).
#include "nn_dist/math/fixed_point.hpp"

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "nn_dist/common/cpu.hpp"
#include "nn_dist/common/error.hpp"

namespace nn_dist {

namespace {

// The loops below with AVX-512 (F, DQ: float64 <-> int64 in one instruction),
// picked at run time. The conversions round as the scalar ones do (to nearest,
// ties to even, by MXCSR), so both give the same bits: a job whose ranks run
// different copies still sums alike. Measured on the 784-512-256-10 gradient
// (535,818 values, one block, 1 rank): the step's sum 1.35 ms with the scalar
// loops of the portable build.
const bool kAvx512 = cpu_has_avx512();

__attribute__((target("avx512f,avx512dq"))) uint32_t max_bits_avx512(const float* g, std::size_t n) {
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
  __m512i most = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    most = _mm512_max_epu32(most, _mm512_and_si512(_mm512_loadu_si512(g + i), magnitude));
  }
  alignas(64) uint32_t lanes[16];  // not _mm512_reduce_max_epu32: GCC 12 warns inside it (an undefined half)
  _mm512_store_si512(lanes, most);
  uint32_t out = 0;
  for (uint32_t lane : lanes) out = lane > out ? lane : out;
  for (; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, g + i, sizeof bits);
    bits &= 0x7fffffffu;
    out = bits > out ? bits : out;
  }
  return out;
}

__attribute__((target("avx512f,avx512dq"))) void to_fixed_avx512(const float* g, std::size_t n, double scale,
                                                                  bool accumulate, int64_t* sums) {
  const __m512d s = _mm512_set1_pd(scale);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m512i q = _mm512_cvtpd_epi64(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(g + i)), s));
    if (accumulate) q = _mm512_add_epi64(q, _mm512_loadu_si512(sums + i));
    _mm512_storeu_si512(sums + i, q);
  }
  for (; i < n; ++i) {
    const int64_t q = std::llrint(static_cast<double>(g[i]) * scale);
    sums[i] = accumulate ? sums[i] + q : q;
  }
}

__attribute__((target("avx512f,avx512dq"))) void from_fixed_avx512(const int64_t* sums, std::size_t n, double scale,
                                                                    float* out) {
  const __m512d s = _mm512_set1_pd(scale);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 f = _mm512_cvtepi64_ps(_mm512_loadu_si512(sums + i));
    _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(f), s)));
  }
  for (; i < n; ++i) out[i] = static_cast<float>(static_cast<double>(static_cast<float>(sums[i])) * scale);
}

}  // namespace

float max_magnitude(const float* g, std::size_t n) {
  // On the bits: a float's magnitude orders as its bits with the sign cleared,
  // and infinities and NaNs lie above every finite value (exponent all ones).
  // One integer max is both the maximum and the non-finite test, and vectorises.
  constexpr uint32_t kMagnitude = 0x7fffffffu, kNotFinite = 0x7f800000u;
  uint32_t most = 0;
  if (kAvx512) {
    most = max_bits_avx512(g, n);
    n = 0;
  }
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, g + i, sizeof bits);
    bits &= kMagnitude;
    most = bits > most ? bits : most;
  }
  if (most >= kNotFinite) return std::numeric_limits<float>::infinity();
  float out;
  std::memcpy(&out, &most, sizeof out);
  return out;
}

int fixed_point_exponent(double max_abs, long terms) {
  if (!std::isfinite(max_abs) || terms < 1 || terms > (1L << (kFixedPointBits - 1))) {
    throw Error("internal: no fixed-point exponent for a largest magnitude of " + std::to_string(max_abs) +
                " over " + std::to_string(terms) + " terms");
  }
  if (max_abs == 0) return 0;
  int k = 0;
  std::frexp(static_cast<double>(std::fabs(max_abs)), &k);  // max_abs < 2^k
  int b = 0;
  while ((1L << b) < terms) ++b;  // terms <= 2^b
  // Each value rounds to at most 2^(k+e) = 2^(62-b) in magnitude; 2^b of them
  // sum to at most 2^62.
  return kFixedPointBits - k - b;
}

void to_fixed_point(const float* g, std::size_t n, int exponent, bool accumulate, int64_t* sums) {
  // g * 2^e is exact in double (24 significant bits, |g * 2^e| <= 2^62, e >= -127),
  // so llrint's one rounding (to nearest, ties to even) is all the error.
  const double scale = std::ldexp(1.0, exponent);
  if (kAvx512) return to_fixed_avx512(g, n, scale, accumulate, sums);
  if (!accumulate) {
    for (std::size_t i = 0; i < n; ++i) sums[i] = std::llrint(static_cast<double>(g[i]) * scale);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) sums[i] += std::llrint(static_cast<double>(g[i]) * scale);
}

void from_fixed_point(const int64_t* sums, std::size_t n, int exponent, float* out) {
  // int64 -> float rounds once (to nearest); the power of two then scales
  // exactly in double, so the float is the one nearest sum * 2^-e (unless it
  // is subnormal, where it rounds once more; or beyond float's range: inf).
  const double scale = std::ldexp(1.0, -exponent);
  if (kAvx512) return from_fixed_avx512(sums, n, scale, out);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<float>(static_cast<double>(static_cast<float>(sums[i])) * scale);
  }
}

}  // namespace nn_dist
