// The exact gradient sum (--reproducible, GradientSync::create_exact): twelve
// fixed blocks spread over the ranks in every contiguous way (a sample of them
// beyond 3 ranks) sum to the same bits as a single-process reference in
// 128-bit integers, on every rank and in every mode; NaN gives NaN, not a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "alloc_counter.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

const Communicator& comm() {
  static const Communicator c;
  return c;
}

using Ranges = std::vector<std::pair<std::size_t, std::size_t>>;
using Blocks = std::vector<std::vector<float>>;

constexpr int kBlocks = 12;
constexpr std::size_t kGradSize = 220;
// Four tensors and the gaps between them (padding: the blocks hold garbage
// there, the sum must be 0). Tensor 2 is all zeros in every block.
const Ranges kTensors{{0, 50}, {64, 130}, {144, 160}, {176, 212}};

// The same blocks on every rank (a fixed seed): signs, magnitudes from 2^-40
// to 2^20 (tensor 3 from 2^-60 to 2^30: most of its values lose bits),
// about one value in ten exactly zero, and some sums far smaller than their terms.
Blocks make_blocks() {
  std::mt19937_64 bits(20261206);
  Blocks blocks(kBlocks, std::vector<float>(kGradSize));
  for (auto& block : blocks) {
    for (std::size_t i = 0; i < kGradSize; ++i) {
      const uint64_t r = bits();
      const bool wide = i >= kTensors[3].first;
      const int exponent = wide ? static_cast<int>(r % 91) - 60 : static_cast<int>(r % 61) - 40;
      const float mantissa = 1.0f + static_cast<float>((r >> 8) & 0xffffff) / 16777216.0f;
      const float sign = (r >> 40) & 1 ? -1.0f : 1.0f;
      block[i] = (r >> 41) % 10 == 0 ? 0.0f : sign * std::ldexp(mantissa, exponent);
    }
    std::fill(block.begin() + kTensors[2].first, block.begin() + kTensors[2].second, 0.0f);
  }
  // Ten elements of tensors 0 and 1 whose large values cancel (blocks 5-9
  // negate 0-4), leaving blocks 10 and 11's small ones (2^-30 to 2^-21): their
  // sum shows the fixed point's last bits, so a wrong rounding rule shows.
  for (const std::size_t start : {kTensors[0].first, kTensors[1].first}) {
    for (std::size_t i = start; i < start + 10; ++i) {
      for (int j = 0; j < 5; ++j) blocks[5 + j][i] = -blocks[j][i];
      for (int j = 10; j < 12; ++j) {
        const uint64_t r = bits();
        blocks[j][i] = ((r >> 40) & 1 ? -1.0f : 1.0f) *
                       std::ldexp(1.0f + static_cast<float>(r & 0xffffff) / 16777216.0f, static_cast<int>(r % 10) - 30);
      }
    }
  }
  return blocks;
}

// The exponent rule, written again from its definition: the largest e with
// max * 2^e * 2^b < 2^62, 2^b the least power of two >= total_blocks.
int reference_exponent(long double most, long total_blocks) {
  if (most == 0) return 0;
  const int k = std::ilogb(most) + 1;  // 2^(k-1) <= most < 2^k
  const int b = total_blocks <= 1 ? 0 : 64 - __builtin_clzll(static_cast<unsigned long long>(total_blocks - 1));
  return 62 - k - b;
}

// The sum by the definition, in one process: each value rounded (to nearest,
// ties to even) to an integer at its tensor's exponent, the integers added in
// 128 bits, the sum rounded once to float. Also returns each element's exponent.
std::vector<float> reference_sum(const Blocks& blocks, long total_blocks, std::vector<int>* exponents = nullptr) {
  std::vector<float> out(kGradSize, 0.0f);
  if (exponents) exponents->assign(kGradSize, 0);
  for (const auto& [begin, end] : kTensors) {
    long double most = 0;
    for (const auto& block : blocks) {
      for (std::size_t i = begin; i < end; ++i) most = std::max(most, std::fabs(static_cast<long double>(block[i])));
    }
    const int e = reference_exponent(most, total_blocks);
    for (std::size_t i = begin; i < end; ++i) {
      __int128 sum = 0;
      for (const auto& block : blocks) {
        sum += static_cast<__int128>(std::nearbyintl(std::ldexp(static_cast<long double>(block[i]), e)));
      }
      out[i] = static_cast<float>(std::ldexp(static_cast<long double>(sum), -e));  // |sum| < 2^63: exact
      if (exponents) (*exponents)[i] = e;
    }
  }
  return out;
}

// Every way of handing out kBlocks blocks in order to `ranks` ranks (counts
// per rank, any may be 0). Beyond 3 ranks there are thousands: a fixed sample,
// with the extremes (all on the first rank, all on the last, an even split).
std::vector<std::vector<int>> distributions(int ranks) {
  std::vector<std::vector<int>> all;
  std::vector<int> counts(static_cast<std::size_t>(ranks), 0);
  auto fill = [&](auto&& self, int rank, int left) -> void {
    if (rank == ranks - 1) {
      counts[rank] = left;
      all.push_back(counts);
      return;
    }
    for (int c = 0; c <= left; ++c) {
      counts[rank] = c;
      self(self, rank + 1, left - c);
    }
  };
  fill(fill, 0, kBlocks);
  if (ranks <= 3) return all;
  std::vector<std::vector<int>> sample{all.front(), all.back()};
  std::vector<int> even(static_cast<std::size_t>(ranks), kBlocks / ranks);
  for (int r = 0; r < kBlocks % ranks; ++r) ++even[r];
  sample.push_back(even);
  std::mt19937_64 pick(7);
  for (int i = 0; i < 40; ++i) sample.push_back(all[pick() % all.size()]);
  return sample;
}

// One step of the exact sum with this rank holding blocks [first, first + count):
// the float sum every rank is handed, and the statistics' sums.
std::vector<float> exact_step(GradientSync& sync, const Blocks& blocks, int first, int count, double* blocks_seen) {
  for (int j = 0; j < count; ++j) {
    std::copy(blocks[first + j].begin(), blocks[first + j].end(), sync.block_buffer(j));
  }
  sync.set_blocks(count);
  const double stats[kStepStats] = {0.5 * count, 0, static_cast<double>(count)};
  sync.start_stats(stats);
  *blocks_seen = sync.wait_stats()[kStatCount];
  // The slices, in order, cover the gradient once: the whole (mpi), or one
  // part per rank of the node (shared memory, read where its owner left it).
  std::vector<float> out(kGradSize, -1.0f);
  std::size_t covered = 0;
  sync.wait([&](std::size_t begin, std::size_t end, const float* sum, const float* second) {
    EXPECT_EQ(begin, covered);
    EXPECT_LE(end, kGradSize);
    EXPECT_EQ(second, nullptr);
    std::copy(sum + begin, sum + end, out.begin() + begin);
    covered = end;
  });
  EXPECT_EQ(covered, kGradSize);
  return out;
}

// The first block this rank holds under `counts`.
int first_block(const std::vector<int>& counts) {
  int first = 0;
  for (int r = 0; r < comm().rank(); ++r) first += counts[r];
  return first;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const AllreduceMode kExactModes[] = {AllreduceMode::kMpi, AllreduceMode::kShared, AllreduceMode::kHierarchical};

TEST(MpiExactSumTest, EveryDistributionGivesTheReferenceBitsOnEveryRank) {
  const Blocks blocks = make_blocks();
  std::vector<int> exponents;
  const std::vector<float> reference = reference_sum(blocks, kBlocks, &exponents);
  // Within the fixed point's own error of a double sum: each value off by at
  // most half a unit of 2^-e, then one float rounding.
  for (std::size_t i = 0; i < kGradSize; ++i) {
    double sum = 0;
    for (const auto& block : blocks) sum += block[i];
    const bool inside =
        std::any_of(kTensors.begin(), kTensors.end(), [&](const auto& t) { return i >= t.first && i < t.second; });
    if (!inside) {
      EXPECT_EQ(reference[i], 0.0f) << "padding element " << i;
      continue;
    }
    const double bound = kBlocks * 0.5 * std::ldexp(1.0, -exponents[i]) + std::ldexp(std::fabs(sum), -24);
    EXPECT_LE(std::fabs(reference[i] - sum), bound) << "element " << i;
  }
  for (const AllreduceMode mode : kExactModes) {
    std::vector<float> sums(kGradSize);
    const auto sync = GradientSync::create_exact(comm(), sums.data(), kGradSize, kTensors, kBlocks, kBlocks, mode);
    SCOPED_TRACE(allreduce_mode_name(mode) + ": " + sync->reason());
    // One node: each mode is what was asked; across nodes shared memory alone cannot sum (hierarchical instead).
    if (comm().node_size() == comm().size()) {
      EXPECT_EQ(sync->mode(), mode);
    }
    EXPECT_TRUE(testing::has(sync->reason(), "exact")) << sync->reason();
    EXPECT_EQ(sync->block_buffer(kBlocks), nullptr);
    long trials = 0, wrong = 0;
    for (const std::vector<int>& counts : distributions(comm().size())) {
      double seen = 0;
      const std::vector<float> out = exact_step(*sync, blocks, first_block(counts), counts[comm().rank()], &seen);
      EXPECT_EQ(seen, kBlocks);
      ++trials;
      if (!same_bits(out, reference)) {
        ++wrong;
        std::string split;
        for (int c : counts) split += std::to_string(c) + " ";
        ADD_FAILURE() << "blocks per rank " << split << "differ from the reference on rank " << comm().rank();
        if (wrong > 3) break;
      }
    }
    EXPECT_GT(trials, 0);
  }
}

// The test can see order effects: the same blocks added as floats in two
// orders differ (which the exact sum does not).
TEST(MpiExactSumTest, PlainFloatSumsDependOnTheOrder) {
  const Blocks blocks = make_blocks();
  int differ = 0;
  for (std::size_t i = 0; i < kGradSize; ++i) {
    float forward = 0, backward = 0;
    for (int j = 0; j < kBlocks; ++j) forward += blocks[j][i];
    for (int j = kBlocks - 1; j >= 0; --j) backward += blocks[j][i];
    differ += forward != backward;
  }
  EXPECT_GT(differ, 0);
}

// NaN or infinity in one block: that tensor's sum is NaN on every rank (in
// every mode, no crash), the other tensors are still exact.
TEST(MpiExactSumTest, NonFiniteValueMakesItsTensorNaN) {
  const Blocks clean = make_blocks();
  const std::vector<float> reference = reference_sum(clean, kBlocks);
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
    Blocks blocks = clean;
    blocks[5][kTensors[1].first + 7] = bad;
    for (const AllreduceMode mode : kExactModes) {
      SCOPED_TRACE(allreduce_mode_name(mode) + " with " + std::to_string(bad));
      std::vector<float> sums(kGradSize);
      const auto sync = GradientSync::create_exact(comm(), sums.data(), kGradSize, kTensors, kBlocks, kBlocks, mode);
      const std::vector<int> counts = distributions(comm().size()).back();
      double seen = 0;
      const std::vector<float> out = exact_step(*sync, blocks, first_block(counts), counts[comm().rank()], &seen);
      for (std::size_t i = 0; i < kGradSize; ++i) {
        if (i >= kTensors[1].first && i < kTensors[1].second) {
          EXPECT_TRUE(std::isnan(out[i])) << "element " << i << " is " << out[i];
        } else {
          EXPECT_EQ(std::memcmp(&out[i], &reference[i], sizeof(float)), 0) << "element " << i;
        }
      }
      // And the next step, with clean blocks again, is exact: nothing was left behind.
      const std::vector<float> after = exact_step(*sync, clean, first_block(counts), counts[comm().rank()], &seen);
      EXPECT_TRUE(same_bits(after, reference));
    }
  }
}

// A bound of 2^20 blocks costs 20 bits of each tensor's precision: still the
// reference's bits, and within the (wider) error bound of a double sum.
TEST(MpiExactSumTest, LargeBlockBoundStaysExactToItsPrecision) {
  const long total = 1L << 20;
  const Blocks blocks = make_blocks();
  std::vector<int> exponents;
  const std::vector<float> reference = reference_sum(blocks, total, &exponents);
  for (const AllreduceMode mode : kExactModes) {
    SCOPED_TRACE(allreduce_mode_name(mode));
    std::vector<float> sums(kGradSize);
    const auto sync = GradientSync::create_exact(comm(), sums.data(), kGradSize, kTensors, kBlocks, total, mode);
    const std::vector<int> counts = distributions(comm().size()).front();
    double seen = 0;
    const std::vector<float> out = exact_step(*sync, blocks, first_block(counts), counts[comm().rank()], &seen);
    EXPECT_TRUE(same_bits(out, reference));
    for (std::size_t i = 0; i < kGradSize; ++i) {
      double sum = 0;
      for (const auto& block : blocks) sum += block[i];
      if (exponents[i] == 0) continue;  // padding or the zero tensor
      const double bound = kBlocks * 0.5 * std::ldexp(1.0, -exponents[i]) + std::ldexp(std::fabs(sum), -24);
      EXPECT_LE(std::fabs(out[i] - sum), bound) << "element " << i;
    }
  }
}

// No sum at all cannot be exact: refused naming the flag, on every rank
// before any collective. On one node, hierarchical is accepted as asked.
TEST(MpiExactSumTest, ModesThatCannotBeExactAreRefused) {
  std::vector<float> sums(kGradSize);
  const std::string error = testing::error_of(
      [&] { GradientSync::create_exact(comm(), sums.data(), kGradSize, kTensors, 2, kBlocks, AllreduceMode::kNone); });
  EXPECT_EQ(error.rfind("--allreduce none: not with --reproducible (", 0), 0u) << error;
  const bool one_node = comm().node_size() == comm().size();
  const auto automatic =
      GradientSync::create_exact(comm(), sums.data(), kGradSize, kTensors, 2, kBlocks, AllreduceMode::kAuto);
  if (one_node) {
    EXPECT_EQ(automatic->mode(), AllreduceMode::kShared);
  }
  EXPECT_NE(automatic->block_buffer(1), nullptr);
  EXPECT_EQ(automatic->block_buffer(2), nullptr);
}

// The step allocates nothing in the shared-memory modes on one node (their
// MPI calls are a few doubles, and kHierarchical's allreduce spans one rank).
TEST(MpiExactSumTest, ExactStepAllocatesNothing) {
  if (comm().node_size() != comm().size()) GTEST_SKIP() << "several nodes: Open MPI allocates inside";
  const Blocks blocks = make_blocks();
  const std::vector<int> counts = distributions(comm().size()).back();
  for (const AllreduceMode mode : {AllreduceMode::kShared, AllreduceMode::kHierarchical}) {
    std::vector<float> sums(kGradSize);
    const auto sync = GradientSync::create_exact(comm(), sums.data(), kGradSize, kTensors, kBlocks, kBlocks, mode);
    const int first = first_block(counts), count = counts[comm().rank()];
    auto step = [&] {
      for (int j = 0; j < count; ++j) std::copy(blocks[first + j].begin(), blocks[first + j].end(), sync->block_buffer(j));
      sync->set_blocks(count);
      const double stats[kStepStats] = {};
      sync->start_stats(stats);
      sync->wait_stats();
      sync->wait([](std::size_t, std::size_t, const float*, const float*) {});
    };
    for (int i = 0; i < 3; ++i) step();  // warm-up: MPI's free lists reach their working size
    long allocations = 0;
    {
      testing::AllocationCounter counter;
      for (int i = 0; i < 5; ++i) step();
      allocations = static_cast<long>(counter.count());
    }
    EXPECT_EQ(allocations, 0) << allreduce_mode_name(mode) << " on rank " << comm().rank();
  }
}

}  // namespace
}  // namespace nn_dist
