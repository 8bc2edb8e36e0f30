// Minibatches: an epoch visits every local sample once, shuffles are a pure
// function of (seed, epoch, rank), a prefetched batch equals a loaded one, and
// bf16-kept data gives the batches the bf16 products would see.
// --val-split's hold-out is a pure function of each sample's index.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <set>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/model/init.hpp"
#include "nn_dist/train/data.hpp"
#include "nn_dist/train/hold_out.hpp"
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

// --precision bf16 keeps a float32 shard as bf16 bits: every batch is the
// float32 batch rounded as the bf16 products round it (so they compute the
// same bits), prefetched or loaded, with the same labels and rows.
TEST(BatchSourceTest, Bf16ColumnsGiveTheFloatBatchesRoundedAsTheProductsRoundThem) {
  if (!gemm_kernel_supported(GemmKernel::kAvx512Bf16)) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  const long features = 37, n = 29, batch = 6;  // rows that end mid-register, a short last batch
  Matrix<float> x(features, n);
  Rng rng(5);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal() * std::ldexp(1.0, i % 40 - 20));
  Targets targets;
  std::vector<int64_t> ids;
  for (long j = 0; j < n; ++j) {
    targets.labels.push_back(static_cast<int32_t>(j % 4));
    ids.push_back(1000 + 3 * j);
  }
  Matrix<float> copy = x;
  CompactColumns bits;
  ASSERT_TRUE(bf16_columns(&copy, &bits));
  EXPECT_EQ(copy.size(), 0) << "the float32 shard is released";
  EXPECT_EQ(bits.bytes.size(), static_cast<std::size_t>(2 * features * n));
  BatchSource f32(x, targets, batch, true, 8, 1), bf16(std::move(bits), targets, batch, true, 8, 1);
  f32.set_sample_ids(ids);
  bf16.set_sample_ids(ids);
  std::vector<float> rounded(features * batch);
  for (int64_t epoch : {0, 1}) {
    f32.start_epoch(epoch);
    bf16.start_epoch(epoch);
    for (long s = 0; s < f32.steps(); ++s) {
      const long m = f32.load(s);
      ASSERT_EQ(bf16.load(s), m);
      round_to_bf16(f32.x(), static_cast<std::size_t>(features * m), rounded.data());
      EXPECT_EQ(std::memcmp(bf16.x(), rounded.data(), sizeof(float) * features * m), 0) << "epoch " << epoch << " step " << s;
      EXPECT_TRUE(std::equal(f32.labels(), f32.labels() + m, bf16.labels()));
      EXPECT_TRUE(std::equal(f32.sample_ids(), f32.sample_ids() + m, bf16.sample_ids()));
      if (s + 1 < f32.steps() && epoch == 1) bf16.prefetch(s + 1);
    }
  }
  // A finite value that bf16 would round to infinity: the shard stays float32.
  Matrix<float> huge = x;
  huge(3, 7) = -std::numeric_limits<float>::max();
  CompactColumns none;
  EXPECT_FALSE(bf16_columns(&huge, &none));
  EXPECT_EQ(huge.size(), x.size());
  EXPECT_EQ(huge(3, 7), -std::numeric_limits<float>::max());
  EXPECT_TRUE(none.bytes.empty());
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
  const testing::TempDir temp("stream");
  const std::string& dir = temp.str();
  const DatasetInfo info = stream_file(dir, 1003);
  const long offset = 17, count = 950;  // a rank's rows, not from 0
  StreamSource source(info, offset, count, Loss::kSoftmax, {}, 16, true, 5, 1, small_windows(info, 16, count));
  EXPECT_GT(source.steps(), 0);
  EXPECT_TRUE(source.direct()) << "a contiguous float32 X is read directly";
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
}

TEST(StreamSourceTest, ResumingMidEpochGivesTheRemainingBatches) {
  const testing::TempDir temp("stream_resume");
  const std::string& dir = temp.str();
  const DatasetInfo info = stream_file(dir, 700);
  StreamSource whole(info, 0, 700, Loss::kSoftmax, {}, 9, true, 3, 0, small_windows(info, 9, 700));
  const std::vector<int32_t> all = epoch_labels(whole, 4, true);
  for (long from : {1L, 11L, 40L}) {
    StreamSource resumed(info, 0, 700, Loss::kSoftmax, {}, 9, true, 3, 0, small_windows(info, 9, 700));
    const std::vector<int32_t> rest = epoch_labels(resumed, 4, false, from);
    EXPECT_EQ(rest, std::vector<int32_t>(all.begin() + from * 9, all.end())) << "from step " << from;
  }
}

// The windows read on the training thread: the same batches as with a
// reader thread, and each window read at a step that does not depend on the
// rank's shuffle (where its short last block fell), so ranks read together.
TEST(StreamSourceTest, ReadInStepTheSameBatchesAtTheSameStepsOnEveryRank) {
  const testing::TempDir temp("stream_in_step");
  const DatasetInfo info = stream_file(temp.str(), 1003);
  const long count = 950;  // blocks of 6 rows: the last has 2
  StreamShape in_step = small_windows(info, 16, count);
  in_step.in_step = true;
  ASSERT_EQ(count % in_step.block_rows, 2);
  std::vector<long> reads_at[2];  // windows read once each step is loaded and the next prefetched
  for (int rank = 0; rank < 2; ++rank) {
    StreamSource thread(info, 0, count, Loss::kSoftmax, {}, 16, true, 5, rank, small_windows(info, 16, count));
    StreamSource source(info, 0, count, Loss::kSoftmax, {}, 16, true, 5, rank, in_step);
    EXPECT_TRUE(source.in_step());
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      EXPECT_EQ(epoch_labels(source, epoch, true), epoch_labels(thread, epoch, true)) << "rank " << rank;
    }
    const long before = source.reads();
    source.start_epoch(2);
    for (long s = 0; s < source.steps(); ++s) {
      source.load(s);
      if (s + 1 < source.steps()) source.prefetch(s + 1);
      reads_at[rank].push_back(source.reads() - before);
    }
    StreamSource resumed(info, 0, count, Loss::kSoftmax, {}, 16, true, 5, rank, in_step);
    const std::vector<int32_t> all = epoch_labels(thread, 3, false), rest = epoch_labels(resumed, 3, true, 11);
    EXPECT_EQ(rest, std::vector<int32_t>(all.begin() + 11 * 16, all.end())) << "resumed at step 11, rank " << rank;
  }
  EXPECT_EQ(reads_at[0], reads_at[1]) << "the ranks read their windows at the same steps";
  EXPECT_EQ(reads_at[0].back(), (count + in_step.window_rows - 1) / in_step.window_rows);
}

// A batch stays as loaded until the next load(), though the next batch is
// prefetched meanwhile and windows are read again behind it (rows laid out in
// the order the batches take them). Each column of x holds (j, -j) for label
// j. Batches of 20 end where windows of 100 rows would (blocks of 6: the real
// ones move), batches of 16 fall across.
TEST(StreamSourceTest, ABatchStaysAsLoadedUntilTheNextLoad) {
  const testing::TempDir temp("stream_views");
  const DatasetInfo info = stream_file(temp.str(), 1003);
  const long count = 950;
  for (const long batch : {16L, 20L}) {
    for (const bool in_step : {false, true}) {
      StreamShape shape = small_windows(info, batch, count);
      shape.in_step = in_step;
      StreamSource source(info, 0, count, Loss::kSoftmax, {}, batch, true, 5, 1, shape);
      ASSERT_TRUE(source.direct());
      for (int64_t epoch = 0; epoch < 3; ++epoch) {
        source.start_epoch(epoch);
        for (long s = 0; s < source.steps(); ++s) {
          const long n = source.load(s);
          if (s + 1 < source.steps()) source.prefetch(s + 1);
          for (long j = 0; j < n; ++j) {
            const auto label = static_cast<float>(source.labels()[j]);
            ASSERT_EQ(source.x()[2 * j], label) << "batch " << batch << (in_step ? ", in step" : ", thread")
                                                << ", epoch " << epoch << ", step " << s << ", column " << j;
            ASSERT_EQ(source.x()[2 * j + 1], -label);
          }
        }
      }
    }
  }
}

TEST(StreamSourceTest, ReadInStepAFileCutShortIsOneErrorNamingIt) {
  const testing::TempDir temp("stream_in_step_cut");
  const DatasetInfo info = stream_file(temp.str(), 1003);
  StreamShape in_step = small_windows(info, 16, 1003);
  in_step.in_step = true;
  StreamSource source(info, 0, 1003, Loss::kSoftmax, {}, 16, true, 5, 0, in_step);
  std::filesystem::resize_file(info.path, std::filesystem::file_size(info.path) / 2);
  try {
    source.start_epoch(0);
    for (long s = 0; s < source.steps(); ++s) source.load(s);
    FAIL() << "rows past the file's new end were read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(info.path), std::string::npos) << e.what();
  }
}

// The minor page faults this thread has taken so far (each first touch of a fresh page is one).
long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// Both windows take their size at setup: reading the second window (and any
// later one) touches no fresh page, so no step pays for the first touch of a
// window buffer (on a Zen 5 guest, 110-150 ms for 33 MB).
TEST(StreamSourceTest, ReadingALaterWindowTouchesNoFreshPage) {
  const testing::TempDir temp("stream_pages");
  const long n = 6000, features = 256;  // 1 KiB a row
  Matrix<float> x = Matrix<float>::Constant(features, n, 0.5f);
  Matrix<double> y(1, n);
  for (long j = 0; j < n; ++j) y(0, j) = static_cast<double>(j % 10);
  const std::string path = temp.str() + "/wide.h5";
  write_dataset(path, x, y, true);
  const DatasetInfo info = inspect_dataset(path, path, "X", "y");
  const double row = stream_row_bytes(info, Loss::kSoftmax);
  StreamShape shape = stream_shape(2 * 1000 * row, row, 16, n);  // windows of ~1 MiB: ~250 pages each
  shape.in_step = true;  // read on this thread, whose faults getrusage counts
  StreamSource source(info, 0, n, Loss::kSoftmax, {}, 16, true, 5, 0, shape);
  source.start_epoch(0);  // reads the first window (and the reader's own buffers take their size)
  const long before = minor_faults(), reads = source.reads();
  for (long s = 0; source.reads() < reads + 2; ++s) source.load(s);  // the second window is read in step 0
  EXPECT_LT(minor_faults() - before, 32) << "pages first touched while reading two more windows";
}

TEST(StreamSourceTest, WithoutShuffleFileOrderLikeTheInMemorySource) {
  const testing::TempDir temp("stream_order");
  const std::string& dir = temp.str();
  const DatasetInfo info = stream_file(dir, 300);
  StreamSource source(info, 0, 300, Loss::kSoftmax, {}, 7, false, 3, 0, small_windows(info, 7, 300));
  std::vector<int32_t> expected(300);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(epoch_labels(source, 0, true), expected);
}

TEST(StreamSourceTest, ACacheTooSmallForTwoBatchesIsOneClearError) {
  try {
    stream_shape(1000, 3200, 64, 10000);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cache-mb"), std::string::npos) << e.what();
  }
}

// Rows [offset, offset + n) of a dataset whose sample j has features (j, j % 7)
// (as bytes when compact) and label j % 3 (or the value j / 2 for mse).
Shard make_shard(long offset, long n, bool compact, Targets* targets, bool labels = true) {
  Shard s;
  s.offset = offset;
  s.count = n;
  if (!compact) s.x.resize(2, n);
  if (!labels) targets->values.resize(1, n);
  for (long j = 0; j < n; ++j) {
    const long i = offset + j;
    if (compact) {
      s.compact.push_back(static_cast<unsigned char>(i % 256));
      s.compact.push_back(static_cast<unsigned char>(i % 7));
    } else {
      s.x(0, j) = static_cast<float>(i);
      s.x(1, j) = static_cast<float>(i % 7);
    }
    if (labels) {
      targets->labels.push_back(static_cast<int32_t>(i % 3));
      targets->max_label = std::max<long>(targets->max_label, i % 3);
    } else {
      targets->values(0, j) = static_cast<float>(i) / 2;
    }
  }
  return s;
}

TEST(HoldOutTest, TheSameSamplesAreHeldOutWhereverTheShardsBegin) {
  const long n = 500;
  const double fraction = 0.3;
  Targets whole_targets;
  const HoldOutSplit whole = hold_out(make_shard(0, n, false, &whole_targets), whole_targets, 2, 0, 9, fraction);
  std::vector<float> held, kept;
  for (const auto& [offset, count] : {std::pair<long, long>{0, 123}, {123, 250}, {373, 127}}) {
    Targets t;
    const HoldOutSplit part = hold_out(make_shard(offset, count, false, &t), t, 2, 0, 9, fraction);
    for (long j = 0; j < part.val_x.cols(); ++j) held.push_back(part.val_x(0, j));
    for (long j = 0; j < part.train.count; ++j) kept.push_back(part.train.x(0, j));
    ASSERT_EQ(part.val_targets.labels.size(), static_cast<std::size_t>(part.val_x.cols()));
    for (long j = 0; j < part.val_x.cols(); ++j) {  // targets travel with their samples
      EXPECT_EQ(part.val_targets.labels[j], static_cast<long>(part.val_x(0, j)) % 3);
    }
  }
  ASSERT_EQ(static_cast<long>(held.size()), whole.val_x.cols());
  for (long j = 0; j < whole.val_x.cols(); ++j) {
    EXPECT_EQ(held[j], whole.val_x(0, j));
    EXPECT_TRUE(held_out(9, static_cast<long>(held[j]), fraction));
  }
  EXPECT_EQ(static_cast<long>(held.size() + kept.size()), n);
  EXPECT_NEAR(static_cast<double>(held.size()) / n, fraction, 0.07);  // about the fraction asked for
  EXPECT_EQ(whole.train.count, n - whole.val_x.cols());
}

TEST(HoldOutTest, CompactFeaturesStayBytesForTrainingAndBecomeExactFloatsForValidation) {
  Targets targets;
  const Shard shard = make_shard(1000, 300, true, &targets, /*labels=*/false);
  const HoldOutSplit split = hold_out(shard, targets, 2, 1, 4, 0.5);
  ASSERT_GT(split.val_x.cols(), 0);
  ASSERT_EQ(split.train.compact.size(), static_cast<std::size_t>(2 * split.train.count));
  EXPECT_EQ(split.train.x.size(), 0);
  long a = 0, b = 0;
  for (long j = 0; j < shard.count; ++j) {
    const long i = 1000 + j;
    if (held_out(4, i, 0.5)) {
      EXPECT_EQ(split.val_x(0, b), static_cast<float>(i % 256));
      EXPECT_EQ(split.val_x(1, b), static_cast<float>(i % 7));
      EXPECT_EQ(split.val_targets.values(0, b++), static_cast<float>(i) / 2);
    } else {
      EXPECT_EQ(split.train.compact[2 * a], static_cast<unsigned char>(i % 256));
      EXPECT_EQ(split.train.compact[2 * a + 1], static_cast<unsigned char>(i % 7));
      EXPECT_EQ(split.train_targets.values(0, a++), static_cast<float>(i) / 2);
    }
  }
  EXPECT_EQ(b, split.val_x.cols());
  EXPECT_EQ(a, split.train.count);
}

}  // namespace
}  // namespace nn_dist
