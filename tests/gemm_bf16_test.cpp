// The bf16 products (--precision bf16): each kernel this CPU runs against a
// double-precision product of the bf16-rounded inputs, the rounding against
// its definition, and the kernels against each other and against f32's.
//
// The tolerance, derived: a product of two bf16 numbers (8-bit significands)
// is exact in f32, so the only error is the f32 sum of k exact terms. In any
// order that sum is within gamma_(k-1) * sum|a_i b_i| of the exact one, with
// gamma_n = n u / (1 - n u) and u = 2^-24 (Higham, Accuracy and Stability,
// 4.2); the test allows k u sum|a_i b_i| per element.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "nn_dist/common/cpu.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/model/gemm.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

std::vector<GemmKernel> bf16_kernels() { return testing::supported_kernels({GemmKernel::kAmx, GemmKernel::kAvx512Bf16}); }

using testing::KernelChoice;

// The definition: round to nearest, ties to even; NaN stays a (quiet) NaN;
// denormal inputs count as zero, as vcvtne2ps2bf16 treats them.
float bf16_reference(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
    u = (u | 0x00400000u) & 0xFFFF0000u;
  } else if ((u & 0x7F800000u) == 0) {
    u &= 0x80000000u;
  } else {
    u = (u + 0x7FFFu + (u >> 16 & 1)) & 0xFFFF0000u;
  }
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

TEST(Bf16GemmTest, DetectsTheCpusBf16Instructions) {
  EXPECT_EQ(gemm_kernel_supported(GemmKernel::kAvx512Bf16), cpu_has_avx512() && cpu_has_avx512_bf16());
  if (!cpu_has_amx_bf16()) {
    EXPECT_FALSE(gemm_kernel_supported(GemmKernel::kAmx));
  }
  if (!gemm_kernel_supported(GemmKernel::kAvx512Bf16)) {
    try {
      set_gemm_kernel(GemmKernel::kAuto, Precision::kBf16);
      ADD_FAILURE() << "--precision bf16 accepted on a CPU without bf16 products";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("AVX512_BF16"), std::string::npos) << e.what();
    }
  } else {
    set_gemm_kernel(GemmKernel::kAuto, Precision::kBf16);
    EXPECT_EQ(gemm_kernel(), bf16_kernels().front());  // AMX first where the CPU has it
    set_gemm_kernel(GemmKernel::kAuto);
  }
  EXPECT_THROW(set_gemm_kernel(GemmKernel::kAvx512, Precision::kBf16), Error);
  EXPECT_THROW(set_gemm_kernel(GemmKernel::kAmx, Precision::kF32), Error);
  std::printf("[          ] this CPU: amx %d, avx512_bf16 %d\n", gemm_kernel_supported(GemmKernel::kAmx),
              gemm_kernel_supported(GemmKernel::kAvx512Bf16));
}

TEST(Bf16GemmTest, RoundsToNearestEvenAsDefined) {
  if (!gemm_kernel_supported(GemmKernel::kAvx512Bf16)) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  std::vector<float> in, out;
  for (std::uint64_t u = 0; u < (1ull << 32); u += 65521) {  // a prime stride through every bit pattern
    const std::uint32_t bits = static_cast<std::uint32_t>(u);
    float f;
    std::memcpy(&f, &bits, 4);
    in.push_back(f);
  }
  for (std::uint32_t bits : {0x3F808000u, 0x3F818000u, 0x3F808001u, 0x007FFFFFu, 0x80000001u, 0x7F7FFFFFu,
                             0x7F800001u, 0xFF800000u, 0x00800000u}) {  // ties, denormals, overflow, NaN, inf
    float f;
    std::memcpy(&f, &bits, 4);
    in.push_back(f);
  }
  out.resize(in.size());
  round_to_bf16(in.data(), in.size(), out.data());
  long wrong = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const float want = bf16_reference(in[i]);
    wrong += std::memcmp(&want, &out[i], 4) != 0;
  }
  EXPECT_EQ(wrong, 0) << "of " << in.size();
  // Kept as bits (--precision bf16's training data) and widened back: the
  // same floats, at lengths that end mid-register too.
  for (std::size_t n : {in.size(), std::size_t{1}, std::size_t{17}, std::size_t{33}}) {
    std::vector<std::uint16_t> bits(n + 1, 0xBEEF);
    std::vector<float> back(n + 1, -7.0f);
    to_bf16(in.data(), n, bits.data());
    from_bf16(bits.data(), n, back.data());
    EXPECT_EQ(std::memcmp(back.data(), out.data(), 4 * n), 0) << n << " values";
    EXPECT_EQ(bits[n], 0xBEEF) << "to_bf16 wrote past " << n << " values";
    EXPECT_EQ(back[n], -7.0f) << "from_bf16 wrote past " << n << " values";
  }
}

// C (ldc x n) from every bf16 kernel at one shape, and the bound on each element.
struct Product {
  long m, n, k;
  bool ta, tb;
  long lda, ldb, ldc;
  std::vector<float> a, b;
  std::vector<double> exact, bound;  // the exact product of the rounded inputs; k u sum|a b|
  Product(long m_, long n_, long k_, bool ta_, bool tb_, Rng& rng)
      : m(m_), n(n_), k(k_), ta(ta_), tb(tb_), lda((ta ? k : m) + 3), ldb((tb ? n : k) + 1), ldc(m + 5) {
    a.resize(lda * (ta ? m : k));
    b.resize(ldb * (tb ? k : n));
    for (float& v : a) v = static_cast<float>(rng.normal());
    for (float& v : b) v = static_cast<float>(rng.normal());
    std::vector<float> ra(a.size()), rb(b.size());
    round_to_bf16(a.data(), a.size(), ra.data());
    round_to_bf16(b.data(), b.size(), rb.data());
    exact.assign(ldc * n, 0.0);
    bound.assign(ldc * n, 0.0);
    for (long j = 0; j < n; ++j) {
      for (long i = 0; i < m; ++i) {
        double sum = 0, mag = 0;
        for (long p = 0; p < k; ++p) {
          const double t = static_cast<double>(ta ? ra[i * lda + p] : ra[p * lda + i]) *
                           (tb ? rb[p * ldb + j] : rb[j * ldb + p]);
          sum += t;
          mag += std::abs(t);
        }
        exact[j * ldc + i] = sum;
        bound[j * ldc + i] = static_cast<double>(k) * std::ldexp(1.0, -24) * mag;
      }
    }
  }
  // C starts at -7 everywhere; add: C += the product (the rows of C past m stay -7 either way).
  std::vector<float> run(GemmWorkspace& workspace, bool add = false) const {
    std::vector<float> c(ldc * n, -7.0f);
    gemm(m, n, k, a.data(), lda, ta, b.data(), ldb, tb, c.data(), ldc, workspace, add);
    return c;
  }
};

TEST(Bf16GemmTest, EveryKernelIsWithinTheSumsBoundOfTheExactProduct) {
  if (bf16_kernels().empty()) GTEST_SKIP() << "this CPU has neither AMX-BF16 nor AVX512_BF16";
  Rng rng(11);
  GemmWorkspace workspace;
  struct Shape {
    long m, n, k;
  };
  for (const Shape s : {Shape{1, 1, 1}, Shape{32, 32, 32}, Shape{33, 9, 7}, Shape{10, 128, 256}, Shape{512, 128, 784},
                        Shape{31, 5, 513}, Shape{70, 1100, 40}, Shape{256, 32, 512}, Shape{3, 600, 1100},
                        Shape{17, 40, 1}}) {
    for (int t = 0; t < 4; ++t) {
      const Product p(s.m, s.n, s.k, t & 1, t & 2, rng);
      std::vector<std::vector<float>> results;
      for (GemmKernel kernel : bf16_kernels()) {
        SCOPED_TRACE(gemm_kernel_name(kernel) + " " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                     std::to_string(s.k) + " trans " + std::to_string(t));
        const KernelChoice choice(kernel);
        // add: C's -7 is one more exact term of the f32 sum, so the bound is (k + 1) u (sum|a b| + 7).
        const double u = std::ldexp(1.0, -24);
        for (const bool add : {false, true}) {
          SCOPED_TRACE(add ? "add" : "");
          const std::vector<float> c = p.run(workspace, add);
          long outside = 0, beyond = 0;
          for (long j = 0; j < s.n; ++j) {
            for (long i = 0; i < p.ldc; ++i) {
              const std::size_t at = j * p.ldc + i;
              const double magnitude = p.bound[at] / (static_cast<double>(s.k) * u);
              if (i >= s.m) {
                outside += c[at] != -7.0f;
              } else if (add) {
                beyond += std::abs(c[at] - (p.exact[at] - 7)) > static_cast<double>(s.k + 1) * u * (magnitude + 7);
              } else {
                beyond += std::abs(c[at] - p.exact[at]) > p.bound[at];
              }
            }
          }
          EXPECT_EQ(outside, 0) << "wrote outside C";
          EXPECT_EQ(beyond, 0) << "elements beyond the bound (k u sum|a b|, or (k + 1) u (sum|a b| + 7) with add)";
          EXPECT_EQ(p.run(workspace, add), c) << "the same inputs gave other bits";
          if (!add) results.push_back(c);
        }
      }
      // so two kernels agree within twice the bound (each is within it of the exact product)
      for (std::size_t r = 1; r < results.size(); ++r) {
        long apart = 0;
        for (long j = 0; j < s.n; ++j) {
          for (long i = 0; i < s.m; ++i) {
            const std::size_t at = j * p.ldc + i;
            apart += std::abs(results[r][at] - results[0][at]) > 2 * p.bound[at];
          }
        }
        EXPECT_EQ(apart, 0) << "kernels disagree beyond twice the bound";
      }
    }
  }
}

// op(A) packed once (bf16_pack_a, or element ranges by bf16_repack_a, as
// the update packs the weights) multiplies to the same bits as gemm(), which
// packs it for every product; the ranges fill exactly pack_a's layout.
TEST(Bf16GemmTest, APackedOnceGivesGemmsBits) {
  if (bf16_kernels().empty()) GTEST_SKIP() << "this CPU has neither AMX-BF16 nor AVX512_BF16";
  Rng rng(14);
  GemmWorkspace workspace;
  using Packed = std::vector<std::uint16_t, Eigen::aligned_allocator<std::uint16_t>>;
  const long shapes[][3] = {{70, 40, 300}, {512, 128, 784}, {10, 33, 256}, {33, 5, 1100}, {1, 1, 5}, {129, 600, 31}};
  for (GemmKernel kernel : bf16_kernels()) {
    const KernelChoice choice(kernel);
    for (const auto& shape : shapes) {
      const long m = shape[0], n = shape[1], k = shape[2];
      for (int t = 0; t < 4; ++t) {
        SCOPED_TRACE(gemm_kernel_name(kernel) + " " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                     std::to_string(k) + " trans " + std::to_string(t));
        const Product p(m, n, k, t & 1, t & 2, rng);
        Packed packed(bf16_packed_a_elements(m, k), 0);
        bf16_pack_a(m, k, p.a.data(), p.lda, p.ta, packed.data());
        for (bool add : {false, true}) {
          std::vector<float> c = p.run(workspace, add);
          std::vector<float> once(c.size(), -7.0f);  // as run() starts C
          gemm_packed_a(m, n, k, packed.data(), p.b.data(), p.ldb, p.tb, once.data(), p.ldc, workspace, add);
          EXPECT_TRUE(once == c) << "add " << add;
        }
        if (p.ta) continue;
        // The same layout from ranges of elements, in a shuffled order, cut anywhere (A stored with lda = m).
        std::vector<float> a(m * k);
        for (long q = 0; q < k; ++q) std::copy_n(p.a.data() + q * p.lda, m, a.data() + q * m);
        Packed whole(packed.size(), 0), parts(packed.size(), 0);
        bf16_pack_a(m, k, a.data(), m, false, whole.data());
        std::vector<std::size_t> cuts{0, a.size()};
        for (int i = 0; i < 9; ++i) cuts.push_back(static_cast<std::size_t>(rng.uniform() * a.size()));
        std::sort(cuts.begin(), cuts.end());
        std::vector<std::size_t> order(cuts.size() - 1);
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = order.size() - 1 - i;
        for (std::size_t i : order) bf16_repack_a(m, k, a.data(), cuts[i], cuts[i + 1], parts.data());
        EXPECT_TRUE(parts == whole) << "element ranges packed otherwise than the whole";
      }
    }
  }
}

// The f32 kernel on the same inputs is not within the bound: the test sees rounding.
TEST(Bf16GemmTest, TheBoundSeparatesBf16FromF32Products) {
  if (bf16_kernels().empty()) GTEST_SKIP() << "this CPU has neither AMX-BF16 nor AVX512_BF16";
  Rng rng(12);
  GemmWorkspace workspace;
  const Product p(64, 32, 256, false, false, rng);
  const std::vector<float> f32 = p.run(workspace);  // the automatic f32 kernel
  long beyond = 0;
  for (long j = 0; j < p.n; ++j) {
    for (long i = 0; i < p.m; ++i) beyond += std::abs(f32[j * p.ldc + i] - p.exact[j * p.ldc + i]) > p.bound[j * p.ldc + i];
  }
  EXPECT_GT(beyond, p.m * p.n / 2);
}

// bf16 and f32 kernels agree within the rounding's own bound. Rounding to
// bf16 (8 significant bits) moves a value by at most u = 2^-8 of itself, so
// |r(a) r(b) - a b| <= (2u + u^2) |a b|; each side's f32 sum adds at most
// k 2^-24 sum|a b|. Per element: (2u + u^2 + 2 k 2^-24) sum|a_i b_i|.
TEST(Bf16GemmTest, Bf16AndF32KernelsAgreeWithinTheRoundingBound) {
  if (bf16_kernels().empty()) GTEST_SKIP() << "this CPU has neither AMX-BF16 nor AVX512_BF16";
  Rng rng(13);
  GemmWorkspace workspace;
  for (int t = 0; t < 4; ++t) {
    const Product p(70, 40, 300, t & 1, t & 2, rng);
    const std::vector<float> f32 = p.run(workspace);  // the automatic f32 kernel
    for (GemmKernel kernel : bf16_kernels()) {
      SCOPED_TRACE(gemm_kernel_name(kernel) + " trans " + std::to_string(t));
      const KernelChoice choice(kernel);
      const std::vector<float> c = p.run(workspace);
      const double u = std::ldexp(1.0, -8), per_term = 2 * u + u * u + 2 * p.k * std::ldexp(1.0, -24);
      long beyond = 0;
      for (long j = 0; j < p.n; ++j) {
        for (long i = 0; i < p.m; ++i) {
          double mag = 0;  // sum |a_i b_i| of the unrounded inputs
          for (long q = 0; q < p.k; ++q) {
            mag += std::abs(static_cast<double>(p.ta ? p.a[i * p.lda + q] : p.a[q * p.lda + i]) *
                            (p.tb ? p.b[q * p.ldb + j] : p.b[j * p.ldb + q]));
          }
          beyond += std::abs(static_cast<double>(c[j * p.ldc + i]) - f32[j * p.ldc + i]) > per_term * mag;
        }
      }
      EXPECT_EQ(beyond, 0);
    }
  }
}

}  // namespace
}  // namespace nn_dist
