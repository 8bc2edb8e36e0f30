// The fixed-point helpers of the exact gradient sum (math/fixed_point.hpp):
// the exponent rule at its edges, rounding to nearest even, one rounding back,
// and non-finite values found by the maximum.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <limits>
#include <vector>

#include "nn_dist/math/fixed_point.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

TEST(FixedPointTest, ExponentLeavesNoRoomForOverflowAndNoBitUnused) {
  // max < 2^k and terms <= 2^b give e = 62 - k - b: 1.0 has k = 1.
  EXPECT_EQ(fixed_point_exponent(1.0f, 1), 61);
  EXPECT_EQ(fixed_point_exponent(0.99f, 1), 62);
  EXPECT_EQ(fixed_point_exponent(1.0f, 2), 60);
  EXPECT_EQ(fixed_point_exponent(1.0f, 3), 59);  // 3 terms need as much room as 4
  EXPECT_EQ(fixed_point_exponent(1.0f, 4), 59);
  EXPECT_EQ(fixed_point_exponent(1.0f, 5), 58);
  EXPECT_EQ(fixed_point_exponent(0.0f, 12), 0);
  EXPECT_EQ(fixed_point_exponent(-1.0f, 1), 61);  // a magnitude, whatever its sign
  for (const float most : {std::numeric_limits<float>::denorm_min(), 1e-30f, 3.0f, 65504.0f,
                           std::numeric_limits<float>::max()}) {
    for (const long terms : {1L, 12L, 1000L, 1L << 20, 1L << 40}) {
      const int e = fixed_point_exponent(most, terms);
      // The bound holds, and one exponent more would break it.
      const long double top = std::ldexp(static_cast<long double>(most), e) * static_cast<long double>(terms);
      EXPECT_LT(top, std::ldexp(1.0L, 62)) << most << " x " << terms;
      EXPECT_GE(std::ldexp(static_cast<long double>(most), e + 1) * std::exp2(std::ceil(std::log2(terms))),
                std::ldexp(1.0L, 62)) << most << " x " << terms;
    }
  }
  EXPECT_TRUE(testing::has(testing::error_of([] { fixed_point_exponent(std::nanf(""), 1); }), "internal"));
  EXPECT_TRUE(testing::has(testing::error_of([] { fixed_point_exponent(1.0f, 0); }), "internal"));
}

TEST(FixedPointTest, MaxMagnitudeFindsTheLargestAndAnyNonFiniteValue) {
  std::vector<float> g{0.5f, -3.25f, 1e-40f, 2.0f, -0.0f};
  EXPECT_EQ(max_magnitude(g.data(), g.size()), 3.25f);
  EXPECT_EQ(max_magnitude(g.data(), 0), 0.0f);
  const std::vector<float> zeros(33, -0.0f);
  EXPECT_EQ(max_magnitude(zeros.data(), zeros.size()), 0.0f);
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    std::vector<float> h(100, 1.0f);
    h[61] = bad;
    EXPECT_TRUE(std::isinf(max_magnitude(h.data(), h.size()))) << bad;
  }
}

TEST(FixedPointTest, ValuesRoundToNearestEvenAndAccumulate) {
  // At e = 1: 0.25 -> 0.5 -> 0 (tie, to even), 0.75 -> 1.5 -> 2, 1.25 -> 2.5 -> 2, -1.25 -> -2.
  const std::vector<float> g{0.25f, 0.75f, 1.25f, -1.25f, 3.0f};
  std::vector<int64_t> fixed(g.size(), 99);
  to_fixed_point(g.data(), g.size(), 1, false, fixed.data());
  EXPECT_EQ(fixed, (std::vector<int64_t>{0, 2, 2, -2, 6}));
  to_fixed_point(g.data(), g.size(), 1, true, fixed.data());
  EXPECT_EQ(fixed, (std::vector<int64_t>{0, 4, 4, -4, 12}));
  // Large exponents are exact: a float's 24 bits at 2^38 above its lowest.
  const float x = 1.0f + std::ldexp(1.0f, -23);
  int64_t big = 0;
  to_fixed_point(&x, 1, 61, false, &big);
  EXPECT_EQ(big, (int64_t{1} << 61) + (int64_t{1} << 38));
}

TEST(FixedPointTest, SumsTurnBackWithOneRounding) {
  // 2^24 + 1 is a tie between two floats: to even (2^24). 2^24 + 3: up to 2^24 + 4.
  // A double first (2^60 + 2^36 + 1 -> 2^60 + 2^36) then a float would make the
  // last a tie and round it to 2^60; one rounding gives 2^60 + 2^37.
  const std::vector<int64_t> sums{(1 << 24) + 1, (1 << 24) + 3, -6, 0,
                                  (int64_t{1} << 60) + (int64_t{1} << 36) + 1};
  std::vector<float> out(sums.size());
  from_fixed_point(sums.data(), sums.size(), 2, out.data());
  EXPECT_EQ(out[0], std::ldexp(16777216.0f, -2));
  EXPECT_EQ(out[1], std::ldexp(16777220.0f, -2));
  EXPECT_EQ(out[2], -1.5f);
  EXPECT_EQ(out[3], 0.0f);
  EXPECT_EQ(out[4], std::ldexp(std::ldexp(1.0f, 60) + std::ldexp(1.0f, 37), -2));
  // Round trip of one value at its own exponent: exact.
  const float v = -1234.5678f;
  const int e = fixed_point_exponent(v, 1);
  int64_t fixed = 0;
  float back = 0;
  to_fixed_point(&v, 1, e, false, &fixed);
  from_fixed_point(&fixed, 1, e, &back);
  EXPECT_EQ(back, v);
}


// The vector loops (AVX-512 here) against each value's scalar definition, on
// lengths that leave a scalar tail and values that sit on rounding ties: every
// bit the same, so ranks on different CPUs sum alike.
TEST(FixedPointTest, LongTensorsMatchTheScalarDefinitionBitForBit) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (std::size_t n : {8u, 15u, 1000u, 1003u}) {
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i) g[i] = i % 4 == 0 ? (static_cast<float>(i % 8) + 0.5f) / 4.0f : unit(rng);
    g[n / 2] = -3.5f;  // the largest: a tie at the exponent below
    ASSERT_EQ(max_magnitude(g.data(), n), 3.5f);
    // At exponent 2 every fourth value, (i % 8 + 0.5) / 4, becomes a tie: i % 8 + 0.5.
    for (int exponent : {2, 3, 40}) {
      std::vector<int64_t> fixed(n, 5);
      to_fixed_point(g.data(), n, exponent, true, fixed.data());
      std::vector<float> back(n);
      from_fixed_point(fixed.data(), n, exponent, back.data());
      for (std::size_t i = 0; i < n; ++i) {
        const int64_t want = 5 + std::llrint(std::ldexp(static_cast<double>(g[i]), exponent));
        ASSERT_EQ(fixed[i], want) << "value " << i << " at exponent " << exponent;
        const float again = static_cast<float>(std::ldexp(static_cast<double>(static_cast<float>(want)), -exponent));
        ASSERT_EQ(std::memcmp(&back[i], &again, sizeof(float)), 0) << "value " << i << " at exponent " << exponent;
      }
    }
  }
}

}  // namespace
}  // namespace nn_dist
