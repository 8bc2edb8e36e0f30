// Float <-> 64-bit fixed point for the order-free gradient sum. Compiled with
// -fno-math-errno so llrint becomes one instruction (errno is all it changes).
#include "nn_dist/math/fixed_point.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "nn_dist/common/error.hpp"

namespace nn_dist {

float max_magnitude(const float* g, std::size_t n) {
  // On the bits: a float's magnitude orders as its bits with the sign cleared,
  // and infinities and NaNs lie above every finite value (exponent all ones).
  // One integer max is both the maximum and the non-finite test, and vectorises.
  constexpr uint32_t kMagnitude = 0x7fffffffu, kNotFinite = 0x7f800000u;
  uint32_t most = 0;
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

int fixed_point_exponent(float max_abs, long terms) {
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
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<float>(static_cast<double>(static_cast<float>(sums[i])) * scale);
  }
}

}  // namespace nn_dist
