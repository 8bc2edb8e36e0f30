// The packed products (AVX-512 and AVX2 kernels, each forced in turn) against
// a double-precision reference, over shapes that exercise every edge: rows
// and columns that are not multiples of the 32 x 8 and 16 x 6 kernels, depths
// beyond one packed block (cut into equal blocks), wide outputs beyond one
// packed panel, transposed operands, and leading dimensions larger than the
// matrix. Every kernel the CPU supports runs; none is skipped silently.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "nn_dist/common/error.hpp"

#include "nn_dist/model/gemm.hpp"
#include "nn_dist/model/init.hpp"
#include "nn_dist/model/mlp.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

// The packed kernels this CPU runs, and a guard that restores the automatic choice.
std::vector<GemmKernel> packed_kernels() { return testing::supported_kernels({GemmKernel::kAvx512, GemmKernel::kAvx2}); }

using testing::KernelChoice;

TEST(GemmTest, DetectsTheCpusInstructionSets) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  EXPECT_EQ(gemm_kernel_supported(GemmKernel::kAvx512), avx512);
  EXPECT_EQ(gemm_kernel_supported(GemmKernel::kAvx2), avx2);
  EXPECT_EQ(gemm_kernel(), avx512 ? GemmKernel::kAvx512 : avx2 ? GemmKernel::kAvx2 : GemmKernel::kEigen);
  if (!avx512) {
    EXPECT_THROW(set_gemm_kernel(GemmKernel::kAvx512), Error);
  }
  std::printf("[          ] this CPU: avx512 %d, avx2+fma %d; automatic kernel %s\n", avx512, avx2,
              gemm_kernel_name(gemm_kernel()).c_str());
}

// Also with add (C += op(A) op(B), gradient accumulation), where Eigen's
// product is one of the kernels checked.
TEST(GemmTest, MatchesReferenceOnEdgeShapes) {
  ASSERT_FALSE(packed_kernels().empty()) << "this CPU has neither AVX-512 nor AVX2: no packed kernel to test";
  std::vector<GemmKernel> kernels = packed_kernels();
  kernels.push_back(GemmKernel::kEigen);
  for (GemmKernel kernel : kernels) {
  for (const bool add : {false, true}) {
  if (kernel == GemmKernel::kEigen && !add) continue;  // the plain Eigen product is the reference's own code
  SCOPED_TRACE(gemm_kernel_name(kernel) + (add ? " add" : ""));
  const KernelChoice choice(kernel);
  Rng rng(5);
  GemmWorkspace workspace;
  struct Shape {
    long m, n, k;
  };
  for (const Shape s : {Shape{1, 1, 1}, Shape{32, 8, 8}, Shape{33, 9, 7}, Shape{32, 12, 8}, Shape{10, 128, 256}, Shape{512, 128, 784},
                        Shape{31, 5, 513}, Shape{70, 1100, 40}, Shape{256, 32, 512}, Shape{3, 600, 300}, Shape{40, 520, 600}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const long lda = (ta ? s.k : s.m) + 3, ldb = (tb ? s.n : s.k) + 1, ldc = s.m + 5;
      std::vector<float> a(lda * (ta ? s.m : s.k)), b(ldb * (tb ? s.k : s.n)), c(ldc * s.n, -7.0f);
      for (float& v : a) v = static_cast<float>(rng.normal());
      for (float& v : b) v = static_cast<float>(rng.normal());
      std::vector<double> ad(a.begin(), a.end()), bd(b.begin(), b.end()), cd(ldc * s.n, -7.0);
      gemm(s.m, s.n, s.k, a.data(), lda, ta, b.data(), ldb, tb, c.data(), ldc, workspace, add);
      eigen_gemm<double>(s.m, s.n, s.k, ad.data(), lda, ta, bd.data(), ldb, tb, cd.data(), ldc, add);
      double worst = 0;
      for (long j = 0; j < s.n; ++j) {
        for (long i = 0; i < ldc; ++i) {
          const double diff = std::abs(c[j * ldc + i] - cd[j * ldc + i]);
          if (i >= s.m) {
            ASSERT_EQ(c[j * ldc + i], -7.0f) << "wrote outside C at row " << i;  // padding rows untouched
          }
          worst = std::max(worst, diff / std::sqrt(static_cast<double>(s.k)));
        }
      }
      EXPECT_LT(worst, 1e-5) << s.m << "x" << s.n << "x" << s.k << " trans " << ta << tb;
    }
  }
  }
  }
}

// With node-shared parameters, backward() claims this rank's part for writing
// while its products run. The claim must change no value, and on the standard
// model it must cover a 2-rank part before backprop ends, at any batch size.
TEST(GemmTest, BackwardClaimsTheUpdatePartAndChangesNothing) {
  ASSERT_FALSE(packed_kernels().empty()) << "this CPU has neither AVX-512 nor AVX2: no claims";
  for (GemmKernel kernel : packed_kernels()) {
  SCOPED_TRACE(gemm_kernel_name(kernel));
  const KernelChoice choice(kernel);
  Eigen::setNbThreads(1);  // as nn_dist runs by default: its own product, not Eigen's threads
  const Layout layout({784, 512, 256, 10});
  FlatBuffer params;
  testing::random_params(layout, 3, 0.05, params);
  for (const long batch : {32L, 128L}) {
    std::vector<float> x(784 * batch);
    std::vector<int32_t> labels(batch);
    Rng rng(batch);
    for (float& v : x) v = static_cast<float>(rng.normal());
    for (long j = 0; j < batch; ++j) labels[j] = static_cast<int32_t>(j % 10);
    FlatBuffer plain_grad(layout.total(), 0.0f);
    Mlp<float> plain(layout, Activation::kRelu, Loss::kSoftmax, batch);
    plain.forward(params.data(), x.data(), batch);
    plain.loss_and_delta(labels.data(), nullptr);
    plain.backward(params.data(), x.data(), plain_grad.data());
    for (std::size_t rank = 0; rank < 2; ++rank) {
      SCOPED_TRACE("batch " + std::to_string(batch) + " part " + std::to_string(rank));
      std::size_t begin = 0, end = 0;
      line_part(layout.total(), rank, 2, &begin, &end);  // as shared-memory mode cuts the parts
      Mlp<float> claiming(layout, Activation::kRelu, Loss::kSoftmax, batch);
      claiming.set_update_range(begin, end);
      FlatBuffer grad(layout.total(), 0.0f);
      const FlatBuffer before = params;
      claiming.forward(params.data(), x.data(), batch);
      claiming.loss_and_delta(labels.data(), nullptr);
      claiming.backward(params.data(), x.data(), grad.data());
      EXPECT_EQ(claiming.unclaimed_bytes(), 0u);
      EXPECT_EQ(std::memcmp(grad.data(), plain_grad.data(), grad.size() * sizeof(float)), 0);
      EXPECT_EQ(std::memcmp(params.data(), before.data(), params.size() * sizeof(float)), 0);
    }
  }
  }
}

// Gradient accumulation: micro-batches backpropagated as a step's passes
// (the first overwriting whatever the buffer held) give the gradient of their
// union, on every kernel the products may run (f32 packed, Eigen's, bf16),
// up to the order of float sums. The last micro-batch alone is far from it,
// so an add that overwrote would fail.
TEST(GemmTest, MicroBatchesAddUpToTheWholeBatchsGradient) {
  std::vector<GemmKernel> kernels = testing::supported_kernels(
      {GemmKernel::kAvx512, GemmKernel::kAvx2, GemmKernel::kEigen, GemmKernel::kAmx, GemmKernel::kAvx512Bf16});
  Eigen::setNbThreads(1);
  const Layout layout({20, 33, 17, 10});
  FlatBuffer params;
  testing::random_params(layout, 4, 0.3, params);
  const long batch = 32;
  const long parts[] = {13, 13, 6};  // uneven, as a short last micro-batch
  std::vector<float> x(20 * batch);
  std::vector<int32_t> labels(batch);
  Rng rng(9);
  for (float& v : x) v = static_cast<float>(rng.normal());
  for (long j = 0; j < batch; ++j) labels[j] = static_cast<int32_t>(rng.below(10));
  for (GemmKernel kernel : kernels) {
    SCOPED_TRACE(gemm_kernel_name(kernel));
    const KernelChoice choice(kernel);
    Mlp<float> mlp(layout, Activation::kTanh, Loss::kSoftmax, batch, /*piece_elements=*/50);
    FlatBuffer whole(layout.total(), 5.0f), added(layout.total(), 3.0f), last(layout.total(), 0.0f);
    mlp.forward(params.data(), x.data(), batch);
    mlp.loss_and_delta(labels.data(), nullptr);
    mlp.backward(params.data(), x.data(), whole.data());
    long begin = 0;
    for (const long n : parts) {
      mlp.forward(params.data(), x.data() + begin * 20, n);
      mlp.loss_and_delta(labels.data() + begin, nullptr);
      mlp.backward(params.data(), x.data() + begin * 20, added.data(), nullptr, nullptr,
                   backward_pass(begin == 0, begin + n == batch));
      begin += n;
    }
    mlp.backward(params.data(), x.data() + (batch - parts[2]) * 20, last.data());
    double worst = 0, last_apart = 0;
    for (int l = 0; l < layout.num_layers(); ++l) {
      for (const TensorSlot& t : {layout.weight(l), layout.bias(l)}) {
        for (std::size_t i = t.offset; i < t.offset + t.size(); ++i) {
          const double scale = std::max(1.0f, std::abs(whole[i]));
          worst = std::max(worst, std::abs(added[i] - whole[i]) / scale);
          last_apart = std::max(last_apart, std::abs(last[i] - whole[i]) / scale);
        }
      }
    }
    EXPECT_LT(worst, 1e-5) << "the micro-batches' sum differs from the whole batch's gradient";
    EXPECT_GT(last_apart, 1e-2) << "the test cannot tell the sum from the last micro-batch alone";
  }
}

}  // namespace
}  // namespace nn_dist
