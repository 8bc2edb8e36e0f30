// BlockSource (--reproducible): the block order is a pure function of (seed,
// epoch); a global batch is the same rows whatever the rank count; features
// and targets are the file's rows, converted as the in-memory source converts
// them; contiguous, chunked (whole rows or rows split across chunks)
// and compressed files give the same batches.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>

#include "alloc_counter.hpp"
#include "nn_dist/train/block_source.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

constexpr long kRows = 103, kBlock = 4, kGlobal = 6;  // 26 blocks, the last of 3 rows; 5 steps, the last of 2 blocks
constexpr long kFeatures = 3;

// Row j's features: exact in uint8 and float32 alike.
float feature(long j, long f) { return static_cast<float>(f == 0 ? j % 256 : f == 1 ? (7 * j) % 256 : 200 - j % 50); }
double label(long j) { return static_cast<double>(j % 5); }

enum class XLayout {
  kContiguous,  // read directly: a block's rows in one pread
  kWholeRows,   // chunks of 5 whole rows: read directly, rows from 1 chunk
  kSplit,       // chunks of 5 rows x 2 features, the last column's partial: read directly, rows from 2 chunks
  kGzip,        // the same chunks compressed: read through HDF5
};

struct FileKind {
  bool compact = false;   // X uint8, else float32
  XLayout layout = XLayout::kContiguous;
  bool targets = false;   // y (n, 2) float32 values (j / 2, -j), else int64 labels
};

// Rows [from, to) of the test data as an HDF5 file.
DatasetInfo write_rows(const std::string& path, FileKind kind, long from = 0, long to = kRows) {
  const long n = to - from;
  std::vector<float> x(static_cast<std::size_t>(n * kFeatures));
  std::vector<double> y;
  for (long j = 0; j < n; ++j) {
    for (long f = 0; f < kFeatures; ++f) x[j * kFeatures + f] = feature(from + j, f);
    if (kind.targets) {
      y.push_back(static_cast<double>(from + j) / 2);
      y.push_back(-static_cast<double>(from + j));
    } else {
      y.push_back(label(from + j));
    }
  }
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t xdims[2] = {static_cast<hsize_t>(n), kFeatures};
  const hsize_t chunk[2] = {5, static_cast<hsize_t>(kind.layout == XLayout::kWholeRows ? kFeatures : 2)};
  const hid_t xspace = H5Screate_simple(2, xdims, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (kind.layout != XLayout::kContiguous) H5Pset_chunk(dcpl, 2, chunk);
  if (kind.layout == XLayout::kGzip) H5Pset_deflate(dcpl, 6);
  const hid_t xs = H5Dcreate2(file, "X", kind.compact ? H5T_STD_U8LE : H5T_IEEE_F32LE, xspace, H5P_DEFAULT, dcpl,
                              H5P_DEFAULT);
  H5Dwrite(xs, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data());
  const hsize_t ydims[2] = {static_cast<hsize_t>(n), 2};
  const hid_t yspace = H5Screate_simple(kind.targets ? 2 : 1, ydims, nullptr);
  const hid_t ys = H5Dcreate2(file, "y", kind.targets ? H5T_IEEE_F32LE : H5T_STD_I64LE, yspace, H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ys, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data());
  for (hid_t d : {xs, ys}) H5Dclose(d);
  for (hid_t s : {xspace, yspace}) H5Sclose(s);
  H5Pclose(dcpl);
  H5Fclose(file);
  return inspect_dataset(path, path, "X", "y");
}

// One step of the job, as every rank's part laid end to end in rank order.
struct Step {
  std::vector<int64_t> ids;
  std::vector<float> x;
  std::vector<int32_t> labels;
  std::vector<float> values;
  bool operator==(const Step& o) const { return ids == o.ids && x == o.x && labels == o.labels && values == o.values; }
};

// Every step of `epochs` epochs at `ranks` ranks (prefetching the next step,
// or loading each directly). Checks each rank's blocks as it goes.
std::vector<Step> run(const DatasetInfo& info, Loss loss, const Standardization& transform, int ranks, bool prefetch,
                      uint64_t seed = 11, int epochs = 2) {
  std::vector<std::unique_ptr<BlockSource>> sources;
  for (int r = 0; r < ranks; ++r) {
    sources.push_back(std::make_unique<BlockSource>(info, info.samples, loss, transform, kBlock, kGlobal, r, ranks,
                                                    true, seed));
  }
  std::vector<Step> steps;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    for (auto& s : sources) s->start_epoch(epoch);
    const long count = sources[0]->steps();
    for (long step = 0; step < count; ++step) {
      Step all;
      for (int r = 0; r < ranks; ++r) {
        BlockSource& s = *sources[r];
        EXPECT_EQ(s.steps(), count) << "the same step count on every rank";
        EXPECT_EQ(s.batch(), kGlobal / ranks * kBlock);
        const long n = s.load(step);
        if (prefetch && step + 1 < count) s.prefetch(step + 1);  // the next step, while this one is in use
        long rows = 0;
        for (int b = 0; b < s.blocks(); ++b) {  // whole blocks, laid one after another
          EXPECT_EQ(s.block_begin(b), rows);
          const int64_t first = s.sample_ids()[rows];
          EXPECT_EQ(first % kBlock, 0) << "a block starts on a multiple of the block size";
          EXPECT_EQ(s.block_rows(b), std::min(kBlock, kRows - first));
          for (long j = 0; j < s.block_rows(b); ++j) EXPECT_EQ(s.sample_ids()[rows + j], first + j);
          rows += s.block_rows(b);
        }
        EXPECT_EQ(rows, n);
        EXPECT_LE(s.blocks(), kGlobal / ranks);
        all.ids.insert(all.ids.end(), s.sample_ids(), s.sample_ids() + n);
        all.x.insert(all.x.end(), s.x(), s.x() + n * kFeatures);
        if (s.labels() != nullptr) all.labels.insert(all.labels.end(), s.labels(), s.labels() + n);
        if (s.values() != nullptr) all.values.insert(all.values.end(), s.values(), s.values() + 2 * n);
      }
      steps.push_back(std::move(all));
    }
  }
  return steps;
}

TEST(BlockOrderTest, APermutationFromSeedAndEpochOnly) {
  std::vector<uint32_t> a(26), b(26), c(26), d(26), identity(26);
  block_order(5, 2, true, &a);
  block_order(5, 2, true, &b);
  block_order(5, 3, true, &c);
  block_order(6, 2, true, &d);
  std::iota(identity.begin(), identity.end(), 0u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c) << "a new order every epoch";
  EXPECT_NE(a, d) << "and for every seed";
  EXPECT_NE(a, identity);
  std::vector<uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, identity) << "every block once";
  block_order(5, 2, false, &b);
  EXPECT_EQ(b, identity) << "without shuffle, file order";
  // The order is part of what --reproducible promises across machines: a
  // change of generator or seed mixing shows here.
  std::vector<uint32_t> golden(10);
  block_order(7, 3, true, &golden);
  EXPECT_EQ(golden, (std::vector<uint32_t>{6, 7, 9, 1, 2, 4, 0, 5, 3, 8}));
}

TEST(BlockSourceTest, TheGlobalBatchIsTheSameAtEveryRankCount) {
  const testing::TempDir temp("blocks");
  const std::string& dir = temp.str();
  const DatasetInfo info = write_rows(dir + "/f32.h5", {});
  const std::vector<Step> one = run(info, Loss::kSoftmax, {}, 1, false);
  ASSERT_EQ(one.size(), 10u) << "5 steps an epoch";
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<uint32_t> order(26);
    block_order(11, epoch, true, &order);
    std::vector<int64_t> seen;
    for (long s = 0; s < 5; ++s) {
      const Step& step = one[epoch * 5 + s];
      std::vector<int64_t> expected;  // the rows of blocks 6s..6s+5 of the epoch's order
      for (long k = 6 * s; k < std::min(26L, 6 * s + 6); ++k) {
        for (long row = order[k] * kBlock; row < std::min(kRows, (order[k] + 1) * kBlock); ++row) expected.push_back(row);
      }
      EXPECT_EQ(step.ids, expected) << "epoch " << epoch << " step " << s;
      seen.insert(seen.end(), step.ids.begin(), step.ids.end());
      for (std::size_t j = 0; j < step.ids.size(); ++j) {  // the file's rows, with their labels
        for (long f = 0; f < kFeatures; ++f) EXPECT_EQ(step.x[j * kFeatures + f], feature(step.ids[j], f));
        EXPECT_EQ(step.labels[j], static_cast<int32_t>(label(step.ids[j])));
      }
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(kRows);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(seen, all) << "epoch " << epoch << ": every row once, the short last block's 3 too";
  }
  EXPECT_NE(one[0].ids, one[5].ids) << "a new order every epoch";
  for (int ranks : {2, 3, 6}) {
    EXPECT_TRUE(run(info, Loss::kSoftmax, {}, ranks, ranks == 3) == one) << ranks << " ranks";
  }
}

TEST(BlockSourceTest, ABlockLargerThanTheDataIsOneStep) {
  const testing::TempDir temp("blocks_large");
  const std::string& dir = temp.str();
  const DatasetInfo info = write_rows(dir + "/f32.h5", {});
  BlockSource source(info, kRows, Loss::kSoftmax, {}, 1000, 2, 0, 2, true, 1);
  source.start_epoch(0);
  EXPECT_EQ(source.steps(), 1);
  EXPECT_EQ(source.load(0), kRows);
  EXPECT_EQ(source.blocks(), 1);
  EXPECT_EQ(source.sample_ids()[kRows - 1], kRows - 1);
  EXPECT_EQ(source.x()[(kRows - 1) * kFeatures], feature(kRows - 1, 0));
}

TEST(BlockSourceTest, PastTheLastGlobalBatchARankLoadsNothing) {
  const testing::TempDir temp("blocks_end");
  const std::string& dir = temp.str();
  const DatasetInfo info = write_rows(dir + "/f32.h5", {});
  BlockSource last(info, kRows, Loss::kSoftmax, {}, kBlock, kGlobal, 5, 6, true, 1);  // step 4 has 2 blocks
  last.start_epoch(0);
  EXPECT_EQ(last.load(3), kBlock);
  EXPECT_EQ(last.load(4), 0);
  EXPECT_EQ(last.blocks(), 0);
  last.prefetch(4);
  EXPECT_EQ(last.load(4), 0);
  const std::string words = "shuffled in blocks of 4 rows, 6 blocks a global batch";
  EXPECT_EQ(last.sample_order(), words);
  EXPECT_EQ(BlockSource(info, kRows, Loss::kSoftmax, {}, kBlock, kGlobal, 0, 2, true, 1).sample_order(), words)
      << "the same words at every rank count: a resume may change it";
}

// BatchSource's floats for rows 0..kRows-1 of `info` under `transform`.
Matrix<float> in_memory(const DatasetInfo& info, const Standardization& transform) {
  Shard shard = read_shard(info, 0, kRows, /*compact=*/true);
  Targets targets = make_targets(info, shard, Loss::kSoftmax);
  if (!shard.compact.empty()) {
    CompactColumns compact{std::move(shard.compact), info.x_width, kFeatures, kRows, transform};
    BatchSource source(std::move(compact), std::move(targets), kRows, false, 1, 0);
    source.start_epoch(0);
    source.load(0);
    return Eigen::Map<const Matrix<float>>(source.x(), kFeatures, kRows);
  }
  if (!transform.empty()) apply_standardization(transform, &shard.x);
  return shard.x;
}

TEST(BlockSourceTest, FeaturesAreTheInMemorySourcesFloats) {
  const testing::TempDir temp("blocks_transform");
  const std::string& dir = temp.str();
  Standardization scale{{0, 0, 0}, {255, 255, 255}}, standardize{{101.5, 120.25, 175.5}, {29.7, 74.1, 14.4}};
  for (const bool compact : {false, true}) {
    const DatasetInfo info = write_rows(dir + "/x.h5", {compact});
    ASSERT_EQ(info.x_width, compact ? 1 : 0);
    for (const Standardization& t : {Standardization{}, scale, standardize}) {
      const Matrix<float> expected = in_memory(info, t);
      const std::vector<Step> steps = run(info, Loss::kSoftmax, t, 2, true, 3, 1);
      long checked = 0;
      for (const Step& step : steps) {
        for (std::size_t j = 0; j < step.ids.size(); ++j, ++checked) {
          for (long f = 0; f < kFeatures; ++f) {
            ASSERT_EQ(step.x[j * kFeatures + f], expected(f, step.ids[j]))
                << (compact ? "uint8" : "float32") << " row " << step.ids[j] << " feature " << f;
          }
        }
      }
      EXPECT_EQ(checked, kRows);
      if (!t.empty()) {
        EXPECT_NE(expected(0, 10), 10.0f) << "the transform was applied";
      }
    }
  }
}

TEST(BlockSourceTest, MappedChunkedAndSplitFilesGiveTheSameBatches) {
  const testing::TempDir temp("blocks_files");
  const std::string& dir = temp.str();
  for (const bool compact : {false, true}) {
    for (const bool targets : {false, true}) {
      const Loss loss = targets ? Loss::kMse : Loss::kSoftmax;
      const std::string what = std::string(compact ? "uint8" : "float32") + (targets ? " values" : " labels");
      const DatasetInfo contiguous = write_rows(dir + "/contiguous.h5", {compact, XLayout::kContiguous, targets});
      const DatasetInfo whole_rows = write_rows(dir + "/whole_rows.h5", {compact, XLayout::kWholeRows, targets});
      const DatasetInfo chunked = write_rows(dir + "/chunked.h5", {compact, XLayout::kSplit, targets});
      const DatasetInfo gzip = write_rows(dir + "/gzip.h5", {compact, XLayout::kGzip, targets});
      // Two files, split inside block 12 (rows 48..51): both contiguous, one chunked, or one compressed.
      write_rows(dir + "/a.h5", {compact, XLayout::kContiguous, targets}, 0, 50);
      write_rows(dir + "/b.h5", {compact, XLayout::kContiguous, targets}, 50, kRows);
      write_rows(dir + "/b_chunked.h5", {compact, XLayout::kSplit, targets}, 50, kRows);
      write_rows(dir + "/b_gzip.h5", {compact, XLayout::kGzip, targets}, 50, kRows);
      const DatasetInfo split = inspect_datasets({dir + "/a.h5", dir + "/b.h5"}, "--data", "X", "y");
      const DatasetInfo split_chunked = inspect_datasets({dir + "/a.h5", dir + "/b_chunked.h5"}, "--data", "X", "y");
      const DatasetInfo split_gzip = inspect_datasets({dir + "/a.h5", dir + "/b_gzip.h5"}, "--data", "X", "y");
      // how each is read: directly, from N chunks a row, or through HDF5
      const auto access = [&](const DatasetInfo& info) {
        const BlockSource source(info, kRows, loss, {}, kBlock, kGlobal, 0, 1, true, 1);
        return !source.direct() ? std::string("hdf5") : "gathered from " + std::to_string(source.chunks_a_row());
      };
      EXPECT_EQ(access(contiguous), "gathered from 1") << what;
      EXPECT_EQ(access(whole_rows), "gathered from 1") << what;
      EXPECT_EQ(access(chunked), "gathered from 2") << what;
      EXPECT_EQ(access(gzip), "hdf5") << what;
      EXPECT_EQ(access(split), "gathered from 1") << what;
      EXPECT_EQ(access(split_chunked), "gathered from 2") << what;
      EXPECT_EQ(access(split_gzip), "hdf5") << what;
      const std::vector<Step> reference = run(contiguous, loss, {}, 3, false);
      ASSERT_EQ(reference.size(), 10u);
      for (const Step& step : reference) {
        for (std::size_t j = 0; j < step.ids.size(); ++j) {
          if (targets) {
            EXPECT_EQ(step.values[2 * j], static_cast<float>(step.ids[j]) / 2) << what;
            EXPECT_EQ(step.values[2 * j + 1], -static_cast<float>(step.ids[j])) << what;
          } else {
            EXPECT_EQ(step.labels[j], static_cast<int32_t>(label(step.ids[j]))) << what;
          }
        }
      }
      EXPECT_TRUE(run(whole_rows, loss, {}, 2, false) == reference) << what << ": chunks of whole rows";
      EXPECT_TRUE(run(chunked, loss, {}, 3, true) == reference) << what << ": rows split across chunks";
      EXPECT_TRUE(run(gzip, loss, {}, 3, true) == reference) << what << ": compressed";
      EXPECT_TRUE(run(split, loss, {}, 2, true) == reference) << what << ": two contiguous files";
      EXPECT_TRUE(run(split_chunked, loss, {}, 6, false) == reference) << what << ": two files, one chunked";
      EXPECT_TRUE(run(split_gzip, loss, {}, 3, false) == reference) << what << ": two files, one compressed";
    }
  }
}

// HDF5 allocates inside each read (Open MPI's collectives do too: their
// business); BlockSource itself allocates nothing once built: an epoch of
// load/prefetch makes exactly the allocations of its HDF5 reads of X (none
// for a file read directly, contiguous or chunked: y is read once, at construction).
TEST(BlockSourceTest, LoadAndPrefetchAllocateOnlyInsideHdf5) {
  const testing::TempDir temp("blocks_alloc");
  const std::string& dir = temp.str();
  for (const XLayout layout : {XLayout::kContiguous, XLayout::kSplit, XLayout::kGzip}) {
    const bool through_hdf5 = layout == XLayout::kGzip;
    const DatasetInfo info = write_rows(dir + "/x.h5", {true, layout});
    const Standardization t{{1, 2, 3}, {4, 5, 6}};
    BlockSource source(info, kRows, Loss::kSoftmax, t, kBlock, kGlobal, 1, 2, true, 1);
    RowReader reader(info);
    std::vector<unsigned char> x(kBlock * kFeatures);
    std::vector<double> y(kBlock);
    std::vector<uint32_t> order(26);
    const auto epoch = [&](int64_t e) {
      source.start_epoch(e);
      for (long s = 0; s < source.steps(); ++s) {
        source.load(s);
        source.prefetch(s + 1);
      }
    };
    const auto reads = [&](int64_t e) {  // the same reads, made directly
      block_order(1, e, true, &order);
      long blocks = 0;
      for (long s = 0; s < source.steps(); ++s) {
        for (long k = s * kGlobal + 3; k < std::min(26L, s * kGlobal + 6); ++k, ++blocks) {
          const long row = order[k] * kBlock, n = std::min(kBlock, kRows - row);
          if (through_hdf5) reader.read(row, n, true, x.data(), y.data());  // read directly: no HDF5 read (y is held)
        }
      }
      return blocks;
    };
    epoch(0);
    reads(1);  // warm-up: HDF5's free lists reach their working size
    std::size_t by_source = 0, by_hdf5 = 0;
    long blocks = 0;
    {
      testing::AllocationCounter counter;
      epoch(1);
      by_source = counter.count();
    }
    {
      testing::AllocationCounter counter;
      blocks = reads(1);
      by_hdf5 = counter.count();
    }
    EXPECT_EQ(blocks, 12);  // rank 1 of 2: blocks 3..5 of steps 0..3, none of step 4
    EXPECT_EQ(by_source, by_hdf5) << static_cast<int>(layout);
    EXPECT_EQ(source.direct(), !through_hdf5);
    if (!through_hdf5) {
      EXPECT_EQ(by_source, 0u) << "a mapped file's steps allocate nothing";
    }
  }
}

}  // namespace
}  // namespace nn_dist
