// Minibatches: an epoch visits every local sample once, shuffles are a pure
// function of (seed, epoch, rank), and a prefetched batch equals a loaded one.
#include <gtest/gtest.h>

#include <set>

#include "nn_dist/train/data.hpp"

namespace nn_dist {
namespace {

BatchSource make_source(long n, long batch, bool shuffle, uint64_t seed) {
  Matrix<float> x(2, n);
  Targets targets;
  for (long j = 0; j < n; ++j) {
    x(0, j) = static_cast<float>(j);
    x(1, j) = static_cast<float>(-j);
    targets.labels.push_back(static_cast<int32_t>(j));
  }
  return BatchSource(std::move(x), std::move(targets), batch, shuffle, seed, 0);
}

std::vector<int32_t> epoch_labels(BatchSource& source, int64_t epoch, bool prefetch) {
  std::vector<int32_t> seen;
  source.start_epoch(epoch);
  for (long s = 0; s < source.steps(); ++s) {
    const long n = source.load(s);
    for (long j = 0; j < n; ++j) {
      EXPECT_EQ(source.x()[2 * j], static_cast<float>(source.labels()[j]));  // x travels with its label
      seen.push_back(source.labels()[j]);
    }
    if (prefetch && s + 1 < source.steps()) source.prefetch(s + 1);
  }
  return seen;
}

TEST(BatchSourceTest, EpochVisitsEverySampleOnce) {
  BatchSource source = make_source(23, 5, true, 3);
  EXPECT_EQ(source.steps(), 5);
  const std::vector<int32_t> seen = epoch_labels(source, 0, false);
  EXPECT_EQ(seen.size(), 23u);
  EXPECT_EQ(std::set<int32_t>(seen.begin(), seen.end()).size(), 23u);
}

TEST(BatchSourceTest, ShuffleIsAFunctionOfSeedEpochAndRank) {
  BatchSource a = make_source(50, 7, true, 9), b = make_source(50, 7, true, 9), c = make_source(50, 7, true, 10);
  const auto a0 = epoch_labels(a, 0, false), a1 = epoch_labels(a, 1, false);
  EXPECT_EQ(a0, epoch_labels(b, 0, false));
  EXPECT_NE(a0, a1);
  EXPECT_NE(a0, epoch_labels(c, 0, false));
  std::vector<uint32_t> rank0(50), rank1(50);
  epoch_order(9, 0, 0, &rank0);
  epoch_order(9, 0, 1, &rank1);
  EXPECT_NE(rank0, rank1);
}

TEST(BatchSourceTest, PrefetchedBatchesEqualLoadedOnes) {
  BatchSource a = make_source(40, 6, true, 4), b = make_source(40, 6, true, 4);
  EXPECT_EQ(epoch_labels(a, 2, true), epoch_labels(b, 2, false));
}

TEST(BatchSourceTest, WithoutShuffleBatchesAreFileOrderViews) {
  BatchSource source = make_source(10, 4, false, 1);
  source.start_epoch(0);
  EXPECT_EQ(source.load(2), 2);  // the short last batch
  EXPECT_EQ(source.labels()[0], 8);
  EXPECT_EQ(source.load(3), 0);  // past this rank's end
}

}  // namespace
}  // namespace nn_dist
