// The compute part of a training step (gather, forward, loss, backward,
// optimizer) makes no heap allocation once set up. The MPI tests check the
// whole distributed step the same way.
#include <gtest/gtest.h>

#include "alloc_counter.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/train/data.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

TEST(AllocationTest, CounterSeesAllocations) {
  testing::AllocationCounter counter;
  std::vector<float>* v = new std::vector<float>(100);
  Matrix<float> m(64, 64);
  delete v;
  EXPECT_GE(counter.count(), 3u);  // proves the hook works, so a zero below means something
}

TEST(AllocationTest, SteadyStateStepAllocatesNothing) {
  Eigen::setNbThreads(1);  // nn_dist's default: one thread per rank
  const long d = 784, batch = 128, n = 1000;
  // gelu keeps f'(z) from the forward pass; AdamW shrinks the weights first.
  // Each bf16 kernel the CPU runs (--precision bf16, the data kept as bf16) as well.
  // micro: micro-batches per step (--accumulate-steps), each added to the gradient in backprop.
  struct Variant {
    OptimizerKind kind;
    Activation activation;
    GemmKernel kernel;
    long micro = 1;
  };
  std::vector<Variant> variants{{OptimizerKind::kSgd, Activation::kRelu, GemmKernel::kAuto},
                                {OptimizerKind::kAdam, Activation::kRelu, GemmKernel::kAuto},
                                {OptimizerKind::kAdamW, Activation::kGelu, GemmKernel::kAuto},
                                {OptimizerKind::kSgd, Activation::kRelu, GemmKernel::kAuto, 4},
                                {OptimizerKind::kAdamW, Activation::kGelu, GemmKernel::kEigen, 4}};
  for (GemmKernel k : {GemmKernel::kAmx, GemmKernel::kAvx512Bf16}) {
    if (!gemm_kernel_supported(k)) continue;
    variants.push_back({OptimizerKind::kAdam, Activation::kRelu, k});
    variants.push_back({OptimizerKind::kAdam, Activation::kRelu, k, 4});
  }
  for (const Variant v : variants) {
    set_gemm_kernel(v.kernel, kernel_precision(v.kernel));
    const OptimizerKind kind = v.kind;
    const Layout layout({d, 512, 256, 10});
    Mlp<float> mlp(layout, v.activation, Loss::kSoftmax, batch);
    FlatBuffer params, grad(layout.total(), 0.0f);
    testing::random_params(layout, 1, 0.05, params);
    OptimizerOptions options;
    options.kind = kind;
    options.momentum = 0.9;
    options.weight_decay = 1e-4;
    Optimizer optimizer(options, layout.total());
    Matrix<float> x = Matrix<float>::Random(d, n);
    Targets targets;
    for (long j = 0; j < n; ++j) targets.labels.push_back(static_cast<int32_t>(j % 10));
    // bf16 keeps the data as bf16, as nn_dist does (bf16_columns).
    CompactColumns bits;
    const bool bf16 = kernel_precision(v.kernel) == Precision::kBf16 && bf16_columns(&x, &bits);
    BatchSource source = bf16 ? BatchSource(std::move(bits), std::move(targets), batch, /*shuffle=*/true, 7, 0)
                              : BatchSource(std::move(x), std::move(targets), batch, /*shuffle=*/true, 7, 0);
    source.start_epoch(0);

    auto step = [&](long s) {
      long count = 0;
      for (long i = 0; i < v.micro; ++i) {
        const long m = source.load((s * v.micro + i) % source.steps());
        mlp.forward(params.data(), source.x(), m);
        mlp.loss_and_delta(source.labels(), source.values());
        mlp.backward(params.data(), source.x(), grad.data(), nullptr, nullptr,
                     backward_pass(i == 0, i + 1 == v.micro));
        count += m;
      }
      optimizer.update(params.data(), grad.data(), 1.0f / count, 0, layout.total());
      optimizer.finish_step();
    };
    for (long s = 0; s < 3; ++s) step(s);
    testing::AllocationCounter counter;
    for (long s = 3; s < 20; ++s) step(s);  // includes the short last batch (1000 = 7*128 + 104)
    EXPECT_EQ(counter.count(), 0u) << optimizer_name(kind) << " " << activation_name(v.activation) << " "
                                   << gemm_kernel_name(gemm_kernel()) << " micro-batches " << v.micro;
  }
  set_gemm_kernel(GemmKernel::kAuto);
}

}  // namespace
}  // namespace nn_dist
