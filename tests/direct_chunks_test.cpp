// X stored in chunks and read without HDF5 (pread at the chunks' offsets in
// the file): every chunk shape and HDF5 chunk index gives the contiguous
// file's rows bit for bit (row by row, streamed, --reproducible's blocks, in
// memory), long runs too; filtered, partly unwritten and user-block files go
// through HDF5; reading maps no page of the file into the process; a file cut
// short while being read is one error.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "nn_dist/common/cpu.hpp"
#include "nn_dist/train/block_source.hpp"
#include "nn_dist/train/stream.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

constexpr long kRows = 100, kFeatures = 13;

// Row j, feature f: exact in float32, and as a byte (compact files).
float value(long j, long f) { return static_cast<float>(j * kFeatures + f) + 0.25f; }
unsigned char byte(long j, long f) { return static_cast<unsigned char>((j * kFeatures + f) % 251); }
bool in_hole(long j, long f) { return j >= 7 && j < 14 && f >= 5 && f < 10; }  // chunk (1, 1) of a (7, 5) grid

// How a test file stores X (y: int64 labels j % 7, contiguous).
struct Storage {
  std::string name;
  hsize_t chunk[2] = {0, 0};  // {0, 0}: contiguous
  int index = 0;              // HDF5's chunk index: 0 the v1 B-tree (the default format); with the latest
                              // format 1 fixed array, 2 extensible array, 3 v2 B-tree, 4 implicit (chunks
                              // allocated at creation), 5 single chunk
  bool gzip = false;          // compressed: read through HDF5
  bool shuffle = false;       // the byte-shuffle filter alone: chunks of the same size, bytes reordered
  bool hole = false;          // chunk (1, 1) (rows 7..13, features 5..9) never written: HDF5's fill value 0
  hsize_t userblock = 0;
  long chunks_a_row = 0;      // RowReader::chunks_a_row when read directly; 0: read through HDF5
};

const std::vector<Storage>& storages() {
  static const std::vector<Storage> all = {
      {"contiguous", {0, 0}, 0, false, false, false, 0, 1},
      {"chunks (7,5)", {7, 5}, 0, false, false, false, 0, 3},  // partial edge chunks below and to the right
      {"chunks (1,13)", {1, 13}, 0, false, false, false, 0, 1},
      {"chunks (100,1)", {100, 1}, 0, false, false, false, 0, 13},
      {"chunks (64,20)", {64, 20}, 0, false, false, false, 0, 1},  // wider than the data: stride 20, unused values
      {"chunks (7,5), fixed array", {7, 5}, 1, false, false, false, 0, 3},
      {"chunks (7,5), extensible array", {7, 5}, 2, false, false, false, 0, 3},
      {"chunks (7,5), v2 B-tree", {7, 5}, 3, false, false, false, 0, 3},
      {"chunks (7,5), implicit", {7, 5}, 4, false, false, false, 0, 3},
      {"one chunk", {kRows, kFeatures}, 5, false, false, false, 0, 1},  // one run of rows, as if contiguous
      {"one chunk, wider", {kRows, 16}, 0, false, false, false, 0, 1},
      {"chunks (7,5), gzip", {7, 5}, 0, true, false, false, 0, 0},
      {"chunks (7,5), shuffled bytes", {7, 5}, 0, false, true, false, 0, 0},
      {"chunks (7,5), one unwritten", {7, 5}, 0, false, false, true, 0, 0},
      {"chunks (7,5), user block", {7, 5}, 0, false, false, false, 512, 0},
  };
  return all;
}

DatasetInfo write_file(const std::string& path, const Storage& s, bool compact) {
  std::vector<float> x(kRows * kFeatures);
  std::vector<int64_t> y(kRows);
  for (long j = 0; j < kRows; ++j) {
    for (long f = 0; f < kFeatures; ++f) x[j * kFeatures + f] = compact ? byte(j, f) : value(j, f);
    y[j] = j % 7;
  }
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (s.index > 0) H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  if (s.userblock > 0) H5Pset_userblock(fcpl, s.userblock);
  const hsize_t dims[2] = {kRows, kFeatures};
  // HDF5 takes no chunk larger than the largest extent
  hsize_t maxdims[2] = {std::max<hsize_t>(kRows, s.chunk[0]), std::max<hsize_t>(kFeatures, s.chunk[1])};
  if (s.index == 2) maxdims[0] = H5S_UNLIMITED;
  if (s.index == 3) maxdims[0] = maxdims[1] = H5S_UNLIMITED;
  if (s.chunk[0] > 0) H5Pset_chunk(dcpl, 2, s.chunk);
  if (s.index == 4) H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  if (s.gzip) H5Pset_deflate(dcpl, 6);
  if (s.shuffle) H5Pset_shuffle(dcpl);
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl, fapl);
  const hid_t space = H5Screate_simple(2, dims, maxdims);
  const hid_t xs =
      H5Dcreate2(file, "X", compact ? H5T_STD_U8LE : H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (s.hole) {  // every value but those of the hole: its chunk is never allocated
    const hsize_t start[2] = {7, 5}, count[2] = {7, 5};
    H5Sselect_all(space);
    H5Sselect_hyperslab(space, H5S_SELECT_NOTB, start, nullptr, count, nullptr);
  }
  EXPECT_GE(H5Dwrite(xs, H5T_NATIVE_FLOAT, space, space, H5P_DEFAULT, x.data()), 0) << s.name;
  const hid_t yspace = H5Screate_simple(1, dims, nullptr);
  const hid_t ys = H5Dcreate2(file, "y", H5T_STD_I64LE, yspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ys, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data());
  for (hid_t d : {xs, ys}) H5Dclose(d);
  for (hid_t sp : {space, yspace}) H5Sclose(sp);
  for (hid_t p : {fapl, fcpl, dcpl}) H5Pclose(p);
  H5Fclose(file);
  return inspect_dataset(path, path, "X", "y");
}

// Row j as stored (float32 or bytes), the hole's values 0.
std::vector<unsigned char> expected_row(long j, bool compact, bool hole) {
  std::vector<unsigned char> row(kFeatures * (compact ? 1 : sizeof(float)));
  for (long f = 0; f < kFeatures; ++f) {
    const bool zero = hole && in_hole(j, f);
    if (compact) {
      row[f] = zero ? 0 : byte(j, f);
    } else {
      const float v = zero ? 0.0f : value(j, f);
      std::memcpy(row.data() + f * sizeof(float), &v, sizeof v);
    }
  }
  return row;
}

TEST(DirectChunksTest, EveryLayoutGivesTheStoredRowsBitForBit) {
  const testing::TempDir temp("chunks_rows");
  const std::string& dir = temp.str();
  for (const bool compact : {false, true}) {
    for (const Storage& s : storages()) {
      const std::string what = s.name + (compact ? ", uint8" : ", float32");
      const DatasetInfo info = write_file(dir + "/x.h5", s, compact);
      RowReader reader(info), piece_by_piece(info);
      piece_by_piece.read_without_ring();
      ASSERT_EQ(reader.direct(), s.chunks_a_row > 0) << what;
      const std::size_t row_bytes = kFeatures * (compact ? 1 : sizeof(float));
      std::vector<unsigned char> all(kRows * row_bytes);
      std::vector<double> y(kRows);
      reader.read(0, kRows, /*compact=*/true, all.data(), y.data());  // through HDF5, whatever the storage
      std::vector<unsigned char> row(row_bytes + 1, 0xee);             // one byte past the row: never written
      if (reader.direct()) {
        EXPECT_EQ(reader.chunks_a_row(), s.chunks_a_row) << what;
      }
      for (long j = 0; j < kRows; ++j) {
        const std::vector<unsigned char> expected = expected_row(j, compact, s.hole);
        ASSERT_EQ(0, std::memcmp(all.data() + j * row_bytes, expected.data(), row_bytes))
            << what << ": HDF5, row " << j;
        if (!reader.direct()) continue;
        reader.copy_rows(j, 1, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), expected.data(), row_bytes)) << what << ": copy_rows " << j;
        ASSERT_EQ(row[row_bytes], 0xee) << what << ": copy_rows " << j << " wrote past the row";
      }
      if (reader.direct()) {  // runs of rows: across chunk rows, longer than copy_rows' tiles of 32
        for (const auto& [first, n] : {std::make_pair(0L, kRows), std::make_pair(5L, 61L), std::make_pair(99L, 1L)}) {
          std::vector<unsigned char> rows(n * row_bytes + 1, 0xee);
          for (RowReader* r : {&reader, &piece_by_piece}) {
            std::fill(rows.begin(), rows.end(), 0xee);
            r->copy_rows(first, n, rows.data());
            const std::string how = r == &reader && reader.batched() ? " (io_uring)" : " (pread)";
            EXPECT_EQ(0, std::memcmp(rows.data(), all.data() + first * row_bytes, n * row_bytes))
                << what << ": copy_rows " << first << ".." << first + n - 1 << how;
            EXPECT_EQ(rows[n * row_bytes], 0xee) << what << ": copy_rows wrote past its rows" << how;
          }
        }
      }
      if (s.hole) {
        EXPECT_EQ(all[(8 * kFeatures + 6) * (compact ? 1 : 4)], 0) << "the unwritten chunk reads as the fill value";
      }
    }
  }
}

// What a source gave over two epochs: every batch's x as floats, then its
// labels; and how it read X.
struct Seen {
  std::vector<float> values;
  bool direct = false;
};

// For float32 and uint8 X, raw and standardized: every storage's file gives
// `epochs`' source the contiguous file's values bit for bit, and is read
// (directly or through HDF5) as the storage says.
template <typename Epochs>
void expect_contiguous_bits(const std::string& tag, Epochs&& epochs) {
  const testing::TempDir temp(tag);
  const std::string& dir = temp.str();
  for (const bool compact : {false, true}) {
    Standardization standardize{std::vector<double>(kFeatures, 3.5), std::vector<double>(kFeatures, 7.25)};
    for (const Standardization& t : {Standardization{}, standardize}) {
      const std::string kind = std::string(compact ? "uint8" : "float32") + (t.empty() ? "" : ", standardized");
      const Seen reference = epochs(write_file(dir + "/contiguous.h5", storages()[0], compact), t);
      ASSERT_TRUE(reference.direct) << "the contiguous file is read directly";
      for (const Storage& s : storages()) {
        if (s.hole) continue;  // other values
        const Seen seen = epochs(write_file(dir + "/x.h5", s, compact), t);
        EXPECT_EQ(seen.direct, s.chunks_a_row > 0) << s.name << ", " << kind;
        ASSERT_EQ(seen.values.size(), reference.values.size()) << s.name << ", " << kind;
        EXPECT_EQ(0, std::memcmp(seen.values.data(), reference.values.data(), seen.values.size() * sizeof(float)))
            << s.name << ", " << kind;
      }
    }
  }
}

// Streamed rows [3, 93), shuffled, prefetching in the second epoch.
Seen stream_epochs(const DatasetInfo& info, const Standardization& t) {
  constexpr long kOffset = 3, kCount = 90, kBatch = 8;
  const double row = stream_row_bytes(info, Loss::kSoftmax);
  StreamSource source(info, kOffset, kCount, Loss::kSoftmax, t, kBatch, true, 7, 1,
                      stream_shape(2 * 48 * row, row, kBatch, kCount));  // windows of 48 rows, blocks of 3
  Seen seen{{}, source.direct()};
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    source.start_epoch(epoch);
    for (long s = 0; s < source.steps(); ++s) {
      const long n = source.load(s);
      if (epoch == 1 && s + 1 < source.steps()) source.prefetch(s + 1);
      seen.values.insert(seen.values.end(), source.x(), source.x() + n * kFeatures);
      for (long j = 0; j < n; ++j) seen.values.push_back(static_cast<float>(source.labels()[j]));
    }
  }
  EXPECT_EQ(source.reads(), 4) << "two windows an epoch";
  return seen;
}

TEST(DirectChunksTest, StreamedBatchesAreTheContiguousFilesBitForBit) {
  expect_contiguous_bits("chunks_stream", stream_epochs);
}

// --reproducible's blocks (4 rows, 6 a step), then the in-memory shard's floats.
Seen block_epochs(const DatasetInfo& info, const Standardization& t) {
  BlockSource source(info, kRows, Loss::kSoftmax, t, 4, 6, 0, 1, true, 5);
  Seen seen{{}, source.direct()};
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    source.start_epoch(epoch);
    for (long s = 0; s < source.steps(); ++s) {
      const long n = source.load(s);
      if (s + 1 < source.steps()) source.prefetch(s + 1);
      seen.values.insert(seen.values.end(), source.x(), source.x() + n * kFeatures);
      for (long j = 0; j < n; ++j) seen.values.push_back(static_cast<float>(source.labels()[j]));
    }
  }
  EXPECT_EQ(seen.values.size(), static_cast<std::size_t>(2 * kRows * (kFeatures + 1))) << "every row, twice";
  const Shard shard = read_shard(info, 0, kRows, /*compact=*/false);
  seen.values.insert(seen.values.end(), shard.x.data(), shard.x.data() + shard.x.size());
  return seen;
}

TEST(DirectChunksTest, BlockReadsAndTheInMemoryShardAreTheContiguousFilesBitForBit) {
  expect_contiguous_bits("chunks_blocks", block_epochs);
}

// This process's resident KiB of its mappings of `path` (/proc/self/smaps).
long resident_kib(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool ours = false;
  long kib = 0;
  while (std::getline(smaps, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first.find('-') != std::string::npos && first.find_first_not_of("0123456789abcdef-") == std::string::npos) {
      // a mapping's first line: "begin-end perms offset device inode path"
      ours = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
    } else if (ours && first == "Rss:") {
      kib += std::stol(line.substr(4));
    }
  }
  return kib;
}

// A file of float32 X (dims rows x features, given row-major) and y (y_rank
// dimensions of y_dims, given as y_memory values, stored as y_type), each
// in chunks of the shape given or contiguous (null).
DatasetInfo write_xy(const std::string& path, const std::vector<float>& x, const hsize_t* dims, const hsize_t* chunk,
                     hid_t y_type, hid_t y_memory, const void* y, int y_rank, const hsize_t* y_dims,
                     const hsize_t* y_chunk) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hid_t space = H5Screate_simple(2, dims, nullptr), yspace = H5Screate_simple(y_rank, y_dims, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), ydcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk != nullptr) H5Pset_chunk(dcpl, 2, chunk);
  if (y_chunk != nullptr) H5Pset_chunk(ydcpl, y_rank, y_chunk);
  const hid_t xs = H5Dcreate2(file, "X", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  const hid_t ys = H5Dcreate2(file, "y", y_type, yspace, H5P_DEFAULT, ydcpl, H5P_DEFAULT);
  H5Dwrite(xs, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data());
  H5Dwrite(ys, y_memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
  for (hid_t d : {xs, ys}) H5Dclose(d);
  for (hid_t sp : {space, yspace}) H5Sclose(sp);
  for (hid_t p : {dcpl, ydcpl}) H5Pclose(p);
  H5Fclose(file);
  return inspect_dataset(path, path, "X", "y");
}

// Float32 X (rows x features, given row-major) and int64 y (all 0), in
// chunks of chunk[0] x chunk[1], or contiguous when chunk is null.
DatasetInfo write_floats(const std::string& path, const std::vector<float>& x, long rows, long features,
                         const hsize_t* chunk) {
  const std::vector<int64_t> y(static_cast<std::size_t>(rows), 0);
  const hsize_t dims[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(features)};
  return write_xy(path, x, dims, chunk, H5T_STD_I64LE, H5T_NATIVE_INT64, y.data(), 1, dims, nullptr);
}

// A file of `rows` rows: X contiguous float32 (3 features) and y stored as
// file_type, one-dimensional (width 0) or (rows, width), in chunks of
// (chunk_rows, chunk_cols) or contiguous (chunk_rows 0); y(j, c) = (3 j + c)
// % 100, plus 0.5 when `half`.
DatasetInfo write_targets(const std::string& path, long rows, hid_t file_type, long width, hsize_t chunk_rows,
                          hsize_t chunk_cols, bool half) {
  const long w = std::max(width, 1L);
  std::vector<float> x(static_cast<std::size_t>(rows * 3), 1.0f);
  std::vector<double> y(static_cast<std::size_t>(rows * w));
  for (long j = 0; j < rows; ++j) {
    for (long c = 0; c < w; ++c) y[static_cast<std::size_t>(j * w + c)] = (3 * j + c) % 100 + (half ? 0.5 : 0.0);
  }
  const hsize_t dims[2] = {static_cast<hsize_t>(rows), 3};
  const hsize_t y_dims[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(w)};
  const hsize_t y_chunk[2] = {chunk_rows, chunk_cols};
  return write_xy(path, x, dims, nullptr, file_type, H5T_NATIVE_DOUBLE, y.data(), width > 0 ? 2 : 1, y_dims,
                  chunk_rows > 0 ? y_chunk : nullptr);
}

// y read with pread (no HDF5 call) where it is stored unfiltered in a native
// type, contiguously or in chunks of whole rows: the values HDF5 gives, for
// every run of rows; other storage is read through HDF5, with the same values.
TEST(DirectChunksTest, TargetsReadDirectlyAreHdf5sValues) {
  const testing::TempDir temp("chunks_targets");
  struct Case {
    std::string name;
    hid_t type;
    long width;
    hsize_t chunk_rows, chunk_cols;
    bool half, direct;
  };
  const std::vector<Case> cases = {
      {"int64, contiguous", H5T_STD_I64LE, 0, 0, 0, false, true},
      {"int64, chunks of 25", H5T_STD_I64LE, 0, 25, 0, false, true},
      {"int32, chunks of 7", H5T_STD_I32LE, 0, 7, 0, false, true},
      {"uint8, contiguous", H5T_STD_U8LE, 0, 0, 0, false, true},
      {"float32 (n, 3), chunks of (10, 3)", H5T_IEEE_F32LE, 3, 10, 3, true, true},
      {"float64 (n, 3), contiguous", H5T_IEEE_F64LE, 3, 0, 0, true, true},
      {"float32 (n, 3), chunks of (10, 1): a row in 3 chunks", H5T_IEEE_F32LE, 3, 10, 1, true, false},
      {"int64 big-endian", H5T_STD_I64BE, 0, 0, 0, false, false},
  };
  constexpr long kRows = 230;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const DatasetInfo info = write_targets(temp.str() + "/y.h5", kRows, c.type, c.width, c.chunk_rows, c.chunk_cols,
                                           c.half);
    RowReader reader(info);
    ASSERT_TRUE(reader.direct());
    EXPECT_EQ(reader.targets_direct(), c.direct);
    const long w = std::max(c.width, 1L);
    std::vector<float> x(static_cast<std::size_t>(kRows * 3));
    std::vector<double> hdf5(static_cast<std::size_t>(kRows * w)), y(hdf5.size() + 1, -1.0);
    reader.read(0, kRows, false, x.data(), hdf5.data());
    EXPECT_EQ(hdf5[static_cast<std::size_t>(w * 101 + w - 1)], (303 + w - 1) % 100 + (c.half ? 0.5 : 0.0));
    for (const auto& [first, n] : {std::make_pair(0L, kRows), std::make_pair(24L, 2L), std::make_pair(99L, 131L)}) {
      std::fill(y.begin(), y.end(), -1.0);
      reader.read_targets(first, n, y.data());
      EXPECT_TRUE(std::equal(y.begin(), y.begin() + n * w, hdf5.begin() + first * w)) << first << ".." << first + n - 1;
      EXPECT_EQ(y[static_cast<std::size_t>(n * w)], -1.0) << "read_targets wrote past its rows";
    }
  }
  // A file cut short inside y: one Error naming it and y.
  const std::string path = temp.str() + "/cut.h5";
  const DatasetInfo info = write_targets(path, kRows, H5T_STD_I64LE, 0, 0, 0, false);
  RowReader reader(info);
  ASSERT_TRUE(reader.targets_direct());
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t ys = H5Dopen2(file, "y", H5P_DEFAULT);
  const haddr_t y_at = H5Dget_offset(ys);
  H5Dclose(ys);
  H5Fclose(file);
  std::filesystem::resize_file(path, y_at + 8 * 10);  // y's first 10 rows
  std::vector<double> y(2);
  reader.read_targets(8, 2, y.data());
  EXPECT_EQ(y[1], 27.0);
  try {
    reader.read_targets(kRows - 2, 2, y.data());
    FAIL() << "rows of y past the file's new end were read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": reading y at byte "), std::string::npos) << e.what();
  }
}

// value(j, f) for rows x features, in chunks of (chunk_rows, 1): one column
// per chunk, so a run of rows is long.
DatasetInfo write_columns(const std::string& path, long rows, long features, long chunk_rows) {
  std::vector<float> x(static_cast<std::size_t>(rows * features));
  for (long j = 0; j < rows; ++j) {
    for (long f = 0; f < features; ++f) x[static_cast<std::size_t>(j * features + f)] = value(j, f);
  }
  const hsize_t chunk[2] = {static_cast<hsize_t>(chunk_rows), 1};
  return write_floats(path, x, rows, features, chunk);
}

// Direct reads map nothing: after reading every row of X, chunked or
// contiguous, none of the file's pages is in this process (X's memory is the
// caller's buffers alone, however large the file), and the rows read right.
TEST(DirectChunksTest, DirectReadsLeaveNoPageOfTheFileInTheProcess) {
  const testing::TempDir temp("chunks_direct");
  const std::string& dir = temp.str();
  constexpr long kBigRows = 4000, kBigFeatures = 50;  // 800 KB of float32: 8 x 4 chunks of 32 KB, or contiguous
  for (const bool chunked : {true, false}) {
    const std::string path = std::filesystem::canonical(dir).string() + (chunked ? "/chunked.h5" : "/contiguous.h5");
    std::vector<float> x(kBigRows * kBigFeatures);
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = static_cast<float>(k);
    const hsize_t chunk[2] = {512, 16};
    const DatasetInfo info = write_floats(path, x, kBigRows, kBigFeatures, chunked ? chunk : nullptr);
    const std::string what = chunked ? "chunked" : "contiguous";
    RowReader reader(info);
    ASSERT_TRUE(reader.direct()) << what;
    ASSERT_EQ(reader.chunks_a_row(), chunked ? 4 : 1) << what;
    std::vector<float> all(x.size());
    reader.copy_rows(0, kBigRows, all.data());
    EXPECT_TRUE(all == x) << what;
    EXPECT_EQ(resident_kib(path), 0) << what << ": no page of the file in this process";
    std::vector<float> row(kBigFeatures);
    for (long j : {1000L, 1023L, 1024L, 1099L, 0L, 3999L}) {
      reader.copy_rows(j, 1, row.data());
      for (long f = 0; f < kBigFeatures; ++f) ASSERT_EQ(row[f], static_cast<float>(j * kBigFeatures + f)) << what << j;
    }
  }
}

// copy_rows reads the pieces of all chunk columns for up to 4 MB of rows at
// a time: runs of rows longer than that (here 100000 rows x 13 columns of 4 B,
// 5.2 MB, in one chunk row) are read in parts, and the parts join bit for bit.
TEST(DirectChunksTest, RunsLongerThanTheStagingBufferAreReadInParts) {
  const testing::TempDir temp("chunks_long");
  constexpr long kLongRows = 100000;
  const DatasetInfo info = write_columns(temp.str() + "/long.h5", kLongRows, kFeatures, kLongRows);
  RowReader reader(info);
  ASSERT_TRUE(reader.direct());
  ASSERT_EQ(reader.chunks_a_row(), kFeatures);
  for (const auto& [first, n] : {std::make_pair(0L, kLongRows), std::make_pair(77L, 90000L)}) {
    std::vector<float> rows(static_cast<std::size_t>(n * kFeatures + 1), -1.0f);
    reader.copy_rows(first, n, rows.data());
    for (long j = 0; j < n; ++j) {
      for (long f = 0; f < kFeatures; ++f) {
        ASSERT_EQ(rows[static_cast<std::size_t>(j * kFeatures + f)], value(first + j, f)) << "row " << first + j;
      }
    }
    EXPECT_EQ(rows.back(), -1.0f) << "copy_rows wrote past its rows";
  }
}

// With `place`, copy_rows puts row i of a run at place[i] (StreamSource's
// windows, laid out in the order the batches take them): whole rows
// (contiguous X, a preadv a group of 1024 rows) and rows gathered from chunks
// alike, each where place says and nothing past them; a file cut short is
// still one Error naming it.
TEST(DirectChunksTest, RowsGoWherePlaceSays) {
  const testing::TempDir temp("chunks_placed");
  constexpr long kManyRows = 2500, kColumns = 50, kFirst = 7, kCount = 2400;
  std::vector<float> x(static_cast<std::size_t>(kManyRows * kColumns));
  for (std::size_t k = 0; k < x.size(); ++k) x[k] = static_cast<float>(k);
  std::vector<std::uint32_t> place(kCount);
  std::iota(place.begin(), place.end(), 0u);
  std::shuffle(place.begin(), place.end(), std::mt19937(3));
  for (const bool chunked : {false, true}) {
    SCOPED_TRACE(chunked ? "chunks (300, 16)" : "contiguous");
    const std::string path = temp.str() + (chunked ? "/chunked.h5" : "/contiguous.h5");
    const hsize_t chunk[2] = {300, 16};
    const DatasetInfo info = write_floats(path, x, kManyRows, kColumns, chunked ? chunk : nullptr);
    RowReader reader(info);
    ASSERT_TRUE(reader.direct());
    std::vector<float> out(static_cast<std::size_t>((kCount + 1) * kColumns), -1.0f);  // a row more: never written
    reader.copy_rows(kFirst, kCount, out.data(), place.data());
    for (long i = 0; i < kCount; ++i) {
      ASSERT_EQ(0, std::memcmp(out.data() + place[i] * kColumns, x.data() + (kFirst + i) * kColumns,
                               kColumns * sizeof(float)))
          << "row " << kFirst + i << " at " << place[i];
    }
    EXPECT_EQ(out.back(), -1.0f) << "copy_rows wrote past its rows";
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
    try {
      reader.copy_rows(kFirst, kCount, out.data(), place.data());
      FAIL() << "rows past the file's new end were read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ": reading X at byte "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("shrank or was overwritten"), std::string::npos) << e.what();
    }
  }
}

// Rows of whole 64-byte lines (32 and 16 float32 here) are assembled a line
// at a time from their pieces (AVX-512, into 64-byte aligned rows), else a
// tile at a time: pieces narrower than a line, wider than one, and a last
// chunk passing the last feature give HDF5's rows either way, in order and
// placed, and nothing past them.
TEST(DirectChunksTest, RowsOfWholeCacheLinesAreTheStoredRowsBitForBit) {
  const testing::TempDir temp("chunks_lines");
  constexpr long kLineRows = 300;
  std::vector<std::uint32_t> place(kLineRows);
  std::iota(place.begin(), place.end(), 0u);
  std::shuffle(place.begin(), place.end(), std::mt19937(5));
  for (const long features : {32L, 16L}) {
    std::vector<float> x(static_cast<std::size_t>(kLineRows * features));
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = static_cast<float>(k) + 0.25f;
    for (const hsize_t width : {5, 13, 20, 24, 3}) {
      if (width > static_cast<hsize_t>(features)) continue;  // (HDF5: a chunk within the dataset's dimensions)
      const std::string what = std::to_string(features) + " features, chunks (7, " + std::to_string(width) + ")";
      const hsize_t chunk[2] = {7, width};
      const DatasetInfo info =
          write_floats(temp.str() + "/lines_" + std::to_string(features) + "_" + std::to_string(width) + ".h5", x,
                       kLineRows, features, chunk);
      RowReader reader(info);
      ASSERT_TRUE(reader.direct()) << what;
      EXPECT_EQ(reader.by_lines(), cpu_has_avx512()) << what;
      const std::size_t row_bytes = static_cast<std::size_t>(features) * sizeof(float);
      // 64-byte aligned (lines), then 16 bytes off (tiles); one row more: never written
      std::vector<unsigned char> buffer((kLineRows + 1) * row_bytes + 64);
      unsigned char* const aligned = buffer.data() + (64 - reinterpret_cast<std::uintptr_t>(buffer.data()) % 64) % 64;
      for (unsigned char* out : {aligned, aligned + 16}) {
        const std::uint32_t* const placed = place.data();
        for (const std::uint32_t* where : {static_cast<const std::uint32_t*>(nullptr), placed}) {
          std::fill(buffer.begin(), buffer.end(), 0xee);
          reader.copy_rows(0, kLineRows, out, where);
          for (long j = 0; j < kLineRows; ++j) {
            const std::size_t at = where != nullptr ? where[j] : static_cast<std::size_t>(j);
            ASSERT_EQ(0, std::memcmp(out + at * row_bytes, x.data() + j * features, row_bytes))
                << what << (out == aligned ? ", lines" : ", tiles") << (where ? ", placed" : "") << ": row " << j;
          }
          EXPECT_EQ(out[kLineRows * row_bytes], 0xee) << what << ": copy_rows wrote past its rows";
        }
      }
    }
  }
}

// A chunked file cut short while it is read: the rows it no longer holds are
// one Error naming the file (read with pread: no SIGBUS), the rest still read.
TEST(DirectChunksTest, AFileThatShrankWhileBeingReadIsOneError) {
  const testing::TempDir temp("chunks_shrank");
  const std::string path = temp.str() + "/shrinks.h5";
  for (const bool ring : {true, false}) {
    const DatasetInfo info = write_columns(path, 2000, kFeatures, 500);
    RowReader reader(info);
    if (!ring) reader.read_without_ring();
    SCOPED_TRACE(reader.batched() ? "io_uring" : "pread");
    ASSERT_TRUE(reader.direct());
    std::vector<float> row(kFeatures);
    reader.copy_rows(1999, 1, row.data());
    EXPECT_EQ(row[kFeatures - 1], value(1999, kFeatures - 1));
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
    try {
      reader.copy_rows(1999, 1, row.data());
      FAIL() << "a row past the file's new end was read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ": reading X at byte "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("shrank or was overwritten"), std::string::npos) << e.what();
    }
  }
}

// Where the kernel grants this process an io_uring, a reader of chunked X
// reads each chunk row's pieces through one (a system call for all of them),
// and reads the same bytes as with one pread a piece, long runs included.
TEST(DirectChunksTest, ChunkedPiecesAreReadThroughIoUringWhereTheKernelHasIt) {
  io_uring_params params{};
  const long ring = syscall(__NR_io_uring_setup, 4, &params);
  if (ring < 0) GTEST_SKIP() << "this kernel refuses io_uring (" << std::strerror(errno) << "): copy_rows uses pread";
  close(static_cast<int>(ring));
  const testing::TempDir temp("chunks_ring");
  constexpr long kLongRows = 20000;
  const DatasetInfo info = write_columns(temp.str() + "/ring.h5", kLongRows, 200, 3000);  // 200 chunk columns a row
  RowReader reader(info), piece_by_piece(info);
  piece_by_piece.read_without_ring();
  EXPECT_TRUE(reader.batched());
  EXPECT_FALSE(piece_by_piece.batched());
  std::vector<float> a(static_cast<std::size_t>(kLongRows * 200)), b(a.size(), -1.0f);
  for (const auto& [first, n] :
       {std::make_pair(0L, kLongRows), std::make_pair(2999L, 2L), std::make_pair(77L, 9000L)}) {
    reader.copy_rows(first, n, a.data());
    piece_by_piece.copy_rows(first, n, b.data());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(n * 200)))
        << "rows " << first << ".." << first + n - 1;
    EXPECT_EQ(a[static_cast<std::size_t>(n * 200) - 1], value(first + n - 1, 199));
  }
}

}  // namespace
}  // namespace nn_dist
