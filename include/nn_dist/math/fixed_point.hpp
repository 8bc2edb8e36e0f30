// 64-bit fixed point for the order-free gradient sum (--reproducible): a float
// tensor becomes integers at an exponent chosen from its largest magnitude, the
// integers add exactly in any order, and the sum turns back into floats.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nn_dist {

// Magnitude bits a sum may use: |sum| < 2^62, one bit of headroom below int64's 2^63.
constexpr int kFixedPointBits = 62;

// The largest |g[i]| of g[0, n); +infinity if any value is NaN or infinite
// (then the tensor has no fixed-point form). 0 for n == 0.
float max_magnitude(const float* g, std::size_t n);

// The exponent e at which a sum of up to `terms` values of magnitude at most
// max_abs cannot overflow: max_abs * 2^e * terms < 2^62 (the smallest power of
// two >= terms, so the bound depends on terms only through that power). 0 for
// max_abs == 0. Requires a finite max_abs and 1 <= terms <= 2^61.
int fixed_point_exponent(double max_abs, long terms);

// sums[i] = (or += when accumulate) the integer nearest g[i] * 2^e (ties to even):
// exact per value, the same bits on every machine.
void to_fixed_point(const float* g, std::size_t n, int exponent, bool accumulate, int64_t* sums);

// out[i] = the float nearest sums[i] * 2^-e (one rounding).
void from_fixed_point(const int64_t* sums, std::size_t n, int exponent, float* out);

}  // namespace nn_dist
