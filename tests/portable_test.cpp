// One build for every node: the default build is baseline x86-64 and picks
// its matrix kernel at run time. Under qemu-user's Haswell (AVX2 + FMA, no
// AVX-512) the real binary trains at 1 and 2 ranks with the AVX2 kernel and
// reaches the result it reaches on this CPU; every kernel this CPU runs
// trains to the same result within float tolerance, and the bf16 kernels
// (--precision bf16) within bf16's. A CPU without bf16 products refuses
// --precision bf16 in one line.
#include <unistd.h>

#include "e2e_util.hpp"
#include "nn_dist/common/cpu.hpp"

namespace nn_dist::e2e {
namespace {

// The number after the first `key` in line.
double number_after(const std::string& line, const std::string& key) {
  const std::size_t at = line.find(key);
  return at == std::string::npos ? std::nan("") : std::atof(line.c_str() + at + key.size());
}

// The last epoch line's training loss and accuracy.
std::vector<double> final_metrics(const RunResult& r) {
  const std::vector<std::string> lines = epoch_lines(r.out);
  if (lines.empty()) return {};
  return {number_after(lines.back(), "  loss "), number_after(lines.back(), "  acc ")};
}

std::string qemu_binary() {
  for (const char* p : {"/usr/bin/qemu-x86_64", "/usr/bin/qemu-x86_64-static"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

class PortableTest : public E2eTest {
 protected:
  static std::vector<std::string> with(std::vector<std::string> args, const std::string& last) {
    args.push_back(last);
    return args;
  }
  // A small task that trains in a second natively (tens of seconds emulated).
  std::vector<std::string> task() const {
    return {"--data", shared().train, "--hidden", "64,32", "--epochs", "3", "--batch-size", "50", "--seed", "3"};
  }
};

TEST_F(PortableTest, EveryKernelThisCpuRunsTrainsToTheSameResult) {
  const RunResult automatic = run_nn_dist(dir_, 2, task());
  expect_success(automatic);
  const std::vector<double> expected = final_metrics(automatic);
  ASSERT_EQ(expected.size(), 2u) << describe(automatic);
  for (const std::string kernel : {"avx512", "avx2", "eigen"}) {
    SCOPED_TRACE(kernel);
    std::vector<std::string> args = task();
    args.insert(args.end(), {"--gemm", kernel});
    const RunResult r = run_nn_dist(dir_, 2, args);
    if (kernel == "avx512" && r.code == 2 && contains(r.err, "does not have the instructions")) continue;
    expect_success(r);
    EXPECT_TRUE(contains(r.out, kernel + " kernel")) << describe(r);
    const std::vector<double> got = final_metrics(r);
    ASSERT_EQ(got.size(), 2u) << describe(r);
    EXPECT_NEAR(got[0], expected[0], 1e-4 * std::max(1.0, expected[0])) << describe(r);
    EXPECT_NEAR(got[1], expected[1], 0.01) << describe(r);
  }
  // bf16 products: each step's values differ from f32 by about 2^-9 relative, so the loss after three epochs
  // is compared within 2%, the accuracy within 2 points.
  for (const std::string kernel : {"amx", "avx512_bf16"}) {
    SCOPED_TRACE(kernel);
    std::vector<std::string> args = task();
    args.insert(args.end(), {"--precision", "bf16", "--gemm", kernel});
    const RunResult r = run_nn_dist(dir_, 2, args);
    if (r.code == 2 && contains(r.err, "does not have the instructions")) continue;
    expect_success(r);
    EXPECT_TRUE(contains(r.out, kernel + " kernel (bf16 products")) << describe(r);
    const std::vector<double> got = final_metrics(r);
    ASSERT_EQ(got.size(), 2u) << describe(r);
    EXPECT_NEAR(got[0], expected[0], 0.02 * std::max(1.0, expected[0])) << describe(r);
    EXPECT_NEAR(got[1], expected[1], 0.02) << describe(r);
  }
}

TEST_F(PortableTest, Bf16IsOneClearErrorOnAnEmulatedCpuWithoutBf16Products) {
  const std::string qemu = qemu_binary();
  if (qemu.empty()) GTEST_SKIP() << "qemu-user is not installed (scripts/install_deps.sh installs it)";
  const RunResult refused = run_shell(dir_, mpirun_prefix(2) + " " + quote(qemu) + " -cpu Haswell " +
                                                quote(NN_DIST_BIN) + joined(task()) + " --precision bf16",
                                      600);
  EXPECT_EQ(refused.code, 2) << describe(refused);
  EXPECT_TRUE(contains(refused.err, "--precision bf16: this CPU has neither AMX-BF16 nor AVX512_BF16"))
      << describe(refused);
  EXPECT_FALSE(contains(refused.err, "Illegal instruction")) << describe(refused);
}

TEST_F(PortableTest, TrainsOnAnEmulatedCpuWithoutAvx512) {
  const std::string qemu = qemu_binary();
  if (qemu.empty()) GTEST_SKIP() << "qemu-user is not installed (scripts/install_deps.sh installs it)";
  // On the real CPU with the kernel the emulated one will pick: the same instructions, so the same bits.
  std::vector<std::string> avx2_args = task();
  avx2_args.insert(avx2_args.end(), {"--gemm", "avx2"});
  for (int ranks : {1, 2}) {
    SCOPED_TRACE(std::to_string(ranks) + " rank(s)");
    const RunResult native = run_nn_dist(dir_, ranks, avx2_args);
    expect_success(native);
    const RunResult automatic = run_nn_dist(dir_, ranks, task());
    expect_success(automatic);
    const std::string command = mpirun_prefix(ranks) + " " + quote(qemu) + " -cpu Haswell " + quote(NN_DIST_BIN) +
                                joined(task());
    const RunResult emulated = run_shell(dir_, command, 600);
    expect_success(emulated);
    EXPECT_FALSE(contains(emulated.err, "Illegal instruction")) << describe(emulated);
    EXPECT_TRUE(contains(emulated.out, "avx2 kernel")) << "did not pick the AVX2 kernel\n" << describe(emulated);
    EXPECT_EQ(epoch_lines_without_timing(emulated.out), epoch_lines_without_timing(native.out))
        << "emulated Haswell and this CPU's AVX2 kernel differ";
    const std::vector<double> got = final_metrics(emulated), expected = final_metrics(automatic);
    ASSERT_EQ(got.size(), 2u) << describe(emulated);
    ASSERT_EQ(expected.size(), 2u) << describe(automatic);
    EXPECT_NEAR(got[0], expected[0], 1e-4 * std::max(1.0, expected[0]));
    EXPECT_NEAR(got[1], expected[1], 0.01);
    // Forcing a kernel the CPU lacks is one clear error, not an illegal instruction.
    const RunResult refused =
        run_shell(dir_, mpirun_prefix(ranks) + " " + quote(qemu) + " -cpu Haswell " + quote(NN_DIST_BIN) +
                            joined(task()) + " --gemm avx512",
                  600);
    EXPECT_EQ(refused.code, 2) << describe(refused);
    EXPECT_TRUE(contains(refused.err, "--gemm avx512")) << describe(refused);
  }
}

// --reproducible on ranks whose CPUs differ (this CPU and an emulated
// Haswell without AVX-512, in one job): they agree on the AVX2 kernel, rank 0
// says so, and the run holds the bits of one native rank forced to AVX2.
TEST_F(PortableTest, ReproducibleRanksOnDifferentCpusAgreeOnOneKernel) {
  const std::string qemu = qemu_binary();
  if (qemu.empty()) GTEST_SKIP() << "qemu-user is not installed (scripts/install_deps.sh installs it)";
  const std::vector<std::string> args = {"--data", shared().train, "--hidden", "32,16", "--epochs", "2",
                                         "--global-batch-size", "100", "--block-size", "25", "--seed", "3",
                                         "--reproducible"};
  std::vector<std::string> native_args = args;
  native_args.insert(native_args.end(), {"--gemm", "avx2", "--checkpoint", dir_ + "/native.h5"});
  const RunResult native = run_nn_dist(dir_, 1, native_args);
  expect_success(native);
  std::vector<std::string> mixed_args = args;
  mixed_args.insert(mixed_args.end(), {"--checkpoint", dir_ + "/mixed.h5"});
  // qemu-user lacks process_vm_readv, Open MPI's single-copy transfer: copy through shared memory instead.
  const RunResult mixed = run_shell(dir_, mpirun_prefix(1) + " --mca btl_vader_single_copy_mechanism none " +
                                              quote(NN_DIST_BIN) + joined(mixed_args) +
                                              " : -np 1 " + quote(qemu) + " -cpu Haswell " + quote(NN_DIST_BIN) +
                                              joined(mixed_args),
                                    600);
  expect_success(mixed);
  if (cpu_has_avx512()) {
    EXPECT_TRUE(contains(mixed.out, "note: --reproducible: the ranks' CPUs differ; every rank multiplies with the "
                                    "avx2 kernel"))
        << describe(mixed);
  }
  EXPECT_TRUE(contains(mixed.out, "avx2 kernel")) << describe(mixed);
  EXPECT_EQ(epoch_lines_without_timing(mixed.out), epoch_lines_without_timing(native.out)) << describe(mixed);
  // h5diff compares every value exactly (no tolerance given): exit 0 only when the weights are the same.
  const RunResult diff = run_shell(dir_, "h5diff " + quote(dir_ + "/native.h5") + " " + quote(dir_ + "/mixed.h5") +
                                             " /model /model", 60);
  EXPECT_EQ(diff.code, 0) << "the weights differ\n" << describe(diff);
}

// The dropout masks come from a loop compiled for AVX-512F, AVX2 and the
// baseline, picked at run time: on the emulated Haswell (the AVX2 copy) a run
// with --dropout ends with the epoch lines of this CPU's (AVX-512F here).
TEST_F(PortableTest, DropoutDrawsTheSameMasksOnAnEmulatedCpuWithoutAvx512) {
  const std::string qemu = qemu_binary();
  if (qemu.empty()) GTEST_SKIP() << "qemu-user is not installed (scripts/install_deps.sh installs it)";
  std::vector<std::string> args = task();
  args.insert(args.end(), {"--dropout", "0.3", "--gemm", "avx2"});
  const RunResult native = run_nn_dist(dir_, 1, args);
  expect_success(native);
  const RunResult emulated =
      run_shell(dir_, mpirun_prefix(1) + " " + quote(qemu) + " -cpu Haswell " + quote(NN_DIST_BIN) + joined(args), 600);
  expect_success(emulated);
  EXPECT_EQ(epoch_lines_without_timing(emulated.out), epoch_lines_without_timing(native.out))
      << "the masks of emulated Haswell and this CPU differ";
  EXPECT_FALSE(epoch_lines_without_timing(native.out).empty()) << describe(native);
}

// The optimizers' update loops and the clipping norm's sum of squares are
// compiled for AVX-512 and for any x86-64, picked at run time (the update
// with no multiply fused into an add): on the emulated Haswell (the baseline
// loops) SGD with momentum and AdamW with clipping end with the checkpoint's
// weights and optimizer state of this CPU (the AVX-512 loops here), bit for
// bit. Both sides multiply with the AVX2 kernel.
TEST_F(PortableTest, TheOptimizersUpdateToTheSameBitsOnAnEmulatedCpuWithoutAvx512) {
  const std::string qemu = qemu_binary();
  if (qemu.empty()) GTEST_SKIP() << "qemu-user is not installed (scripts/install_deps.sh installs it)";
  const std::vector<std::vector<std::string>> optimizers = {{"--momentum", "0.9", "--weight-decay", "0.001"},
                                                            {"--optimizer", "adamw", "--weight-decay", "0.05", "--clip-grad-norm", "0.05"}};
  for (const std::vector<std::string>& optimizer : optimizers) {
    SCOPED_TRACE(optimizer[1]);
    std::vector<std::string> args = task();
    args.insert(args.end(), optimizer.begin(), optimizer.end());
    args.insert(args.end(), {"--gemm", "avx2", "--checkpoint"});
    const RunResult native = run_nn_dist(dir_, 1, with(args, dir_ + "/native.h5"));
    expect_success(native);
    const RunResult emulated = run_shell(
        dir_, mpirun_prefix(1) + " " + quote(qemu) + " -cpu Haswell " + quote(NN_DIST_BIN) + joined(with(args, dir_ + "/emulated.h5")),
        600);
    expect_success(emulated);
    for (const std::string group : {"/model", "/optimizer"}) {
      // h5diff compares every value exactly (no tolerance given): exit 0 only when they are the same.
      const RunResult diff = run_shell(dir_, "h5diff " + quote(dir_ + "/native.h5") + " " + quote(dir_ + "/emulated.h5") +
                                                 " " + group + " " + group, 60);
      EXPECT_EQ(diff.code, 0) << group << " differs\n" << describe(diff);
    }
  }
}

}  // namespace
}  // namespace nn_dist::e2e
