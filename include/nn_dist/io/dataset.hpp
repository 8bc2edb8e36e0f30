// Reading one rank's contiguous shard of an HDF5 dataset through a hyperslab,
// never the whole file. Knows nothing of MPI: the caller says which rows.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "nn_dist/io/names.hpp"
#include "nn_dist/math/activation.hpp"
#include "nn_dist/math/loss.hpp"

namespace nn_dist {

struct DatasetInfo {
  std::string path;
  std::string what;          // how errors name it, e.g. "--data train.h5"
  std::string x_name, y_name;
  long samples = 0;          // n
  long features = 0;         // d
  long target_width = 1;     // columns of y (1 for 1-D y)
  bool integer_targets = false;
  int x_width = 0;  // X stored as unsigned integers of 1 or 2 bytes (kept so in memory); 0: any other type
  DataNames names;  // the datasets feature_names and label_names, if the file has them
  // Several files read as one dataset (rows in file order): one entry per
  // file; empty for a single file.
  std::vector<DatasetInfo> parts;
};

// Opens and checks shapes and types; throws Error naming `what`.
DatasetInfo inspect_dataset(const std::string& path, const std::string& what, const std::string& x_name,
                            const std::string& y_name);
// Several files as one dataset, their rows one after the other. Every file
// must have the same feature count and the same kind of y (integer labels, or
// float targets of the same width), and the files that name their features
// or classes the same names; a mismatch is one Error naming both files.
// `flag` names them ("--data").
DatasetInfo inspect_datasets(const std::vector<std::string>& paths, const std::string& flag, const std::string& x_name,
                             const std::string& y_name);

struct Shard {
  long offset = 0;        // first row in the file
  long count = 0;         // rows held here
  Matrix<float> x;        // (features, count): file rows become columns (empty when compact)
  std::vector<unsigned char> compact;  // read compact: (features, count) values of info.x_width bytes
  Matrix<double> y;       // (target_width, count), as stored
  std::vector<int64_t> rows;  // each sample's row in the file(s) when not offset + j (after --val-split)
};

// The memory a shard of `count` rows takes once read (features as float32,
// targets as read and as converted), to refuse absurd sizes before reading.
double shard_bytes(const DatasetInfo& info, long count);

// Rows [offset, offset + count) (of the concatenation, for several files: a
// shard may span two or more); checks X for NaN/Inf.
// Value k (sample j, feature f: k = j * features + f) of a shard read
// compact, whose values are `width` bytes (info.x_width).
inline double compact_value(const Shard& s, int width, std::size_t k) {
  return width == 1 ? s.compact[k] : reinterpret_cast<const uint16_t*>(s.compact.data())[k];
}

// compact (when info.x_width > 0): X stays in its stored uint8/uint16 form.
Shard read_shard(const DatasetInfo& info, long offset, long count, bool compact = false);
// The same rows into buffers the caller owns: x (features, count) as float32,
// or compact values of info.x_width bytes; y (target_width, count) as double.
void read_rows_into(const DatasetInfo& info, long offset, long count, bool compact, void* x, double* y);

// Reads rows again and again (the streaming reader): every file and dataset
// stays open, and values are not checked again (scan them once first).
class RowReader {
 public:
  explicit RowReader(const DatasetInfo& info);
  ~RowReader();
  RowReader(const RowReader&) = delete;
  RowReader& operator=(const RowReader&) = delete;
  // As read_rows_into, holding hdf5_mutex().
  void read(long offset, long count, bool compact, void* x, double* y);
  // Only y, as read_rows_into's y.
  void read_targets(long offset, long count, double* y);

  // X read directly: when every file stores X unfiltered, in the type it
  // has in memory (float32, or the compact uint8/uint16), contiguously or in
  // chunks that are all written (at most 8192 of them, and no user block),
  // copy_rows gathers rows [offset, offset + count) of the concatenation into
  // x ((features, count) as stored, as read() gives them compact) with pread
  // at their offsets in the files, no HDF5 call and no mapping: whole rows
  // straight into x when a chunk spans every feature (contiguous X), else a
  // row's pieces from each of the chunks_a_row() chunks it spans. A file that
  // shrinks meanwhile is an Error naming it. Not thread-safe (one reader per
  // loader). With `place`, row i goes to x + row_bytes * place[i] instead
  // (rows laid out in the order batches take them: StreamSource's windows).
  bool direct() const;
  long chunks_a_row() const;
  void copy_rows(long offset, long count, void* x, const std::uint32_t* place = nullptr) const;
  // Whether copy_rows reads a chunked X's pieces through io_uring, a chunk
  // row's pieces in one system call (else one pread each: kernels without
  // io_uring, or where it is refused); read_without_ring() turns that off (tests).
  bool batched() const;
  void read_without_ring();
  // Whether copy_rows assembles chunked rows a 64-byte line at a time (rows of
  // whole lines, AVX-512) when x is 64-byte aligned; else a tile at a time.
  bool by_lines() const;
  // Whether read_targets reads y with pread too (no HDF5 call): when X is
  // read directly and every file stores y unfiltered as one native integer
  // or float type, contiguously or in chunks of whole rows.
  bool targets_direct() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Debian's HDF5 is not thread-safe: any HDF5 use that may overlap another
// thread's (the streaming reader, the checkpoint writer) holds this lock.
std::mutex& hdf5_mutex();

// Rank r's share of n rows over p ranks: sizes differ by at most one.
void shard_range(long n, int p, int r, long* offset, long* count);
// The same over whole blocks of `block` rows (the last may be short): the
// rows of rank r's blocks (possibly none).
void block_shard_range(long n, long block, int p, int r, long* offset, long* count);

// Targets ready for the loss: labels for softmax, float values otherwise.
struct Targets {
  std::vector<int32_t> labels;  // (count), softmax
  Matrix<float> values;         // (width, count), logistic and mse
  long max_label = -1;          // largest label seen (softmax)
};

// Checks y fits the loss (integer labels >= 0 for softmax, each with a name
// when the file names its classes; 0/1 for logistic; one column for both)
// and converts; throws Error naming info.what.
Targets make_targets(const DatasetInfo& info, const Shard& shard, Loss loss);
// y as read ((width, n) doubles, already checked as make_targets checks them)
// in the loss's form: labels (n) for softmax, else float values (width, n).
// The one conversion make_targets and the streaming sources share, so every
// source gives the same targets for the same rows.
void convert_targets(const double* y, long n, long width, Loss loss, int32_t* labels, float* values);

}  // namespace nn_dist

namespace nn_dist {

enum class StoredType { kFloat32, kFloat64, kInt32 };

// Writes X (features, n) as an (n, features) dataset of the given type, and y
// (width, n) as 1-D int64 labels (integer_labels, width 1) or float32 (n) /
// (n, width) targets. Creates or truncates path.
void write_dataset(const std::string& path, const Matrix<float>& x, const Matrix<double>& y, bool integer_labels,
                   StoredType x_type = StoredType::kFloat32, const std::string& x_name = "X",
                   const std::string& y_name = "y");

}  // namespace nn_dist
