// Minibatches: an epoch visits every local sample once, shuffles are a pure
// function of (seed, epoch, rank), and a prefetched batch equals a loaded one.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>

#include "nn_dist/common/error.hpp"
#include "nn_dist/train/data.hpp"
#include "nn_dist/train/stream.hpp"
#include "test_util.hpp"

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

std::vector<int32_t> epoch_labels(Minibatches& source, int64_t epoch, bool prefetch, long from = 0) {
  std::vector<int32_t> seen;
  source.start_epoch(epoch);
  for (long s = from; s < source.steps(); ++s) {
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

// ---- streaming (--cache-mb): a file of n rows whose X holds (j, -j) and y j.
DatasetInfo stream_file(const std::string& dir, long n) {
  Matrix<float> x(2, n);
  Matrix<double> y(1, n);
  for (long j = 0; j < n; ++j) {
    x(0, j) = static_cast<float>(j);
    x(1, j) = static_cast<float>(-j);
    y(0, j) = static_cast<double>(j);
  }
  const std::string path = dir + "/stream.h5";
  write_dataset(path, x, y, true);
  return inspect_dataset(path, path, "X", "y");
}

StreamShape small_windows(const DatasetInfo& info, long batch, long count) {  // windows of about 100 rows
  const double row = stream_row_bytes(info, Loss::kSoftmax);
  return stream_shape(2 * 100 * row, row, batch, count);
}

TEST(StreamSourceTest, EveryRowOncePerEpochInWindowsOfShuffledBlocks) {
  const std::string dir = testing::temp_dir("stream");
  const DatasetInfo info = stream_file(dir, 1003);
  const long offset = 17, count = 950;  // a rank's rows, not from 0
  StreamSource source(info, offset, count, Loss::kSoftmax, {}, 16, true, 5, 1, small_windows(info, 16, count));
  EXPECT_GT(source.steps(), 0);
  EXPECT_TRUE(source.mapped()) << "a contiguous float32 X is read in place";
  std::vector<int32_t> previous;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<int32_t> seen = epoch_labels(source, epoch, epoch == 1);
    EXPECT_GT(source.windows(), 5) << "the cache holds a fraction of the shard";
    std::vector<int32_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int32_t> expected(count);
    std::iota(expected.begin(), expected.end(), static_cast<int32_t>(offset));
    EXPECT_EQ(sorted, expected) << "epoch " << epoch << ": every row exactly once";
    EXPECT_NE(seen, previous) << "a new order every epoch";
    previous = seen;
  }
  StreamSource again(info, offset, count, Loss::kSoftmax, {}, 16, true, 5, 1, small_windows(info, 16, count));
  EXPECT_EQ(epoch_labels(again, 2, false), previous) << "a pure function of (seed, epoch, rank)";
  std::filesystem::remove_all(dir);
}

TEST(StreamSourceTest, ResumingMidEpochGivesTheRemainingBatches) {
  const std::string dir = testing::temp_dir("stream_resume");
  const DatasetInfo info = stream_file(dir, 700);
  StreamSource whole(info, 0, 700, Loss::kSoftmax, {}, 9, true, 3, 0, small_windows(info, 9, 700));
  const std::vector<int32_t> all = epoch_labels(whole, 4, true);
  for (long from : {1L, 11L, 40L}) {
    StreamSource resumed(info, 0, 700, Loss::kSoftmax, {}, 9, true, 3, 0, small_windows(info, 9, 700));
    const std::vector<int32_t> rest = epoch_labels(resumed, 4, false, from);
    EXPECT_EQ(rest, std::vector<int32_t>(all.begin() + from * 9, all.end())) << "from step " << from;
  }
  std::filesystem::remove_all(dir);
}

TEST(StreamSourceTest, WithoutShuffleFileOrderLikeTheInMemorySource) {
  const std::string dir = testing::temp_dir("stream_order");
  const DatasetInfo info = stream_file(dir, 300);
  StreamSource source(info, 0, 300, Loss::kSoftmax, {}, 7, false, 3, 0, small_windows(info, 7, 300));
  std::vector<int32_t> expected(300);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(epoch_labels(source, 0, true), expected);
  std::filesystem::remove_all(dir);
}

TEST(StreamSourceTest, ACacheTooSmallForTwoBatchesIsOneClearError) {
  try {
    stream_shape(1000, 3200, 64, 10000);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cache-mb"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nn_dist
