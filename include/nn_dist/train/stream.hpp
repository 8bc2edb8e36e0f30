// Minibatches from a shard larger than memory (--cache-mb): the shard is read
// in blocks of rows, a window of blocks at a time, while a background thread
// reads the next window (double buffering), so each rank holds about
// --cache-mb of samples however large its shard. With StreamShape::in_step
// the training thread reads the next window itself, between two steps.
//
// An epoch's order, a pure function of (seed, epoch, rank) like the in-memory
// shuffle: the blocks in a shuffled order, grouped into windows; the samples
// of each window shuffled among themselves; batches cut from that sequence.
// Every sample comes once per epoch. Unlike a full shuffle, a batch draws on
// one or two windows (about --cache-mb / 2 of data), not the whole shard.
// Without shuffle: file order, the same batches as the in-memory source.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "nn_dist/io/dataset.hpp"
#include "nn_dist/model/standardization.hpp"
#include "nn_dist/train/data.hpp"

namespace nn_dist {

struct StreamShape {
  long block_rows = 0;   // rows read per block
  long window_rows = 0;  // rows per window (a multiple of block_rows); two windows are held
  // Read the windows on the training thread instead of a background thread,
  // at steps every rank shares (see StreamSource::gather): for a rank with
  // one CPU, which a reader thread could only take from the training.
  bool in_step = false;
};

// The block and window sizes for a cache of `cache_bytes` and rows of
// `row_bytes` (as kept in memory). Throws Error naming --cache-mb when two
// windows of one batch do not fit.
StreamShape stream_shape(double cache_bytes, double row_bytes, long batch, long count);

// Reads rows [offset, offset + count) once, block by block, calling
// visit(block, targets) for each: the setup pass that checks every value and
// label (so reads during training cannot fail on content) and sums statistics.
template <typename Visit>
void scan_shard(const DatasetInfo& info, long offset, long count, Loss loss, long block_rows, Visit&& visit) {
  for (long done = 0; done < count; done += block_rows) {
    const long n = std::min(block_rows, count - done);
    const Shard block = read_shard(info, offset + done, n, /*compact=*/true);
    visit(block, make_targets(info, block, loss));
  }
}

// Whether this process may run on one CPU only (bound to a core, as mpirun
// binds up to 2 ranks by default, or srun with one CPU a task): then its
// StreamSource reads in step (StreamShape::in_step).
bool one_cpu();

// Bytes one row takes in a StreamSource's windows.
double stream_row_bytes(const DatasetInfo& info, Loss loss);

class StreamSource : public Minibatches {
 public:
  // Rows [offset, offset + count) of `info`, whose labels and values were
  // checked at setup (scan_shard). transform: applied per batch.
  StreamSource(const DatasetInfo& info, long offset, long count, Loss loss, Standardization transform, long batch,
               bool shuffle, uint64_t seed, int rank, StreamShape shape);
  ~StreamSource() override;

  long batch() const override { return batch_; }
  long steps() const override { return (count_ + batch_ - 1) / batch_; }
  void set_seed(uint64_t seed) override { seed_ = seed; }
  // In file order: the same batches as BatchSource's. Shuffled: the sizes
  // of the windows and blocks (from --cache-mb) shape the order too, as far
  // as this rank's rows fill them (a larger cache may give the same order).
  std::string sample_order() const override;
  void start_epoch(int64_t epoch) override;
  long load(long step) override;
  void prefetch(long step) override;
  const float* x() const override { return slots_[current_].x.data(); }
  const int32_t* labels() const override { return has_labels_ ? slots_[current_].labels.data() : nullptr; }
  const float* values() const override { return has_labels_ ? nullptr : slots_[current_].values.data(); }

  long windows() const { return static_cast<long>(window_start_.size()) - 1; }
  // X read with pread at its place in the files (RowReader::direct): whole
  // rows, or gathered into the window from its chunks.
  bool direct() const { return reader_->direct(); }
  long chunks_a_row() const { return reader_->chunks_a_row(); }
  bool batched() const { return reader_->batched(); }  // a chunk row's pieces in one system call (io_uring)
  long reads() const { return reads_; }  // windows read so far (tests)
  // Bytes of X and y read so far, and the seconds spent reading them.
  double read_bytes() const { return read_bytes_; }
  double read_seconds() const { return read_seconds_; }
  bool in_step() const { return shape_.in_step; }

 private:
  struct Window {
    long index = -1;  // which window of the epoch it holds; -1: none
    int64_t epoch = -1;
    bool ready = false, requested = false;
    long rows = 0;
    // (features, rows) as stored (compact) or float32; 64-byte aligned, so rows
    // of whole cache lines are assembled a line at a time (RowReader::copy_rows)
    std::vector<unsigned char, Eigen::aligned_allocator<unsigned char>> x;
    std::vector<double> y;         // (width, rows) as read
    std::vector<int32_t> labels;
    std::vector<float> values;     // (width, rows)
    std::vector<uint32_t> order;   // the window's shuffled row order
    // Where placed(), row order[p] of x is stored at position p (place:
    // order's inverse), so the batches gather it in sequence.
    std::vector<uint32_t> place;
  };
  struct Slot {
    Matrix<float> x;
    std::vector<int32_t> labels;
    Matrix<float> values;
  };
  // Whether a window's rows are read into the order the batches take them:
  // X read directly (RowReader::direct) and shuffled.
  bool placed() const { return reader_->direct() && shuffle_; }
  void size_window(Window& w) const;                        // every buffer at a whole window's size
  void order_window(Window& w, long index, int64_t epoch) const;  // w.order (and w.place) for w.rows rows
  void read_window(Window& w, long index, int64_t epoch);         // in either thread
  Window& ensure(long index);                               // the window, read if need be (main thread)
  void request(long index);                                 // read it in the background (in step: now)
  void gather(long step, Slot& slot);
  void loader();
  void count_read(Window& w, double seconds);  // under mutex_ with a loader thread

  DatasetInfo info_;
  std::unique_ptr<RowReader> reader_;  // the files stay open (read by the loader, or in step by the trainer)
  long offset_, count_, features_, width_;
  Loss loss_;
  Standardization transform_;
  long batch_;
  bool shuffle_;
  uint64_t seed_;
  int rank_;
  StreamShape shape_;
  bool has_labels_;
  std::size_t value_bytes_;  // of X in memory

  int64_t epoch_ = 0;
  std::vector<uint32_t> block_order_;
  std::vector<long> window_start_;  // the epoch's windows: sample positions, windows() + 1 entries

  std::vector<float> table_;  // uint8 with a transform (byte_table)
  Window windows_[2];
  long active_ = -1;          // the window the last gathered batch ended in
  Slot slots_[2];
  int current_ = 0;
  long prefetched_ = -1;
  long reads_ = 0;
  double read_bytes_ = 0, read_seconds_ = 0;  // under mutex_

  std::mutex mutex_;  // guards windows_' index/epoch/ready/requested, pending_, stop_, error_
  std::condition_variable wake_, done_;
  int pending_ = -1;  // the buffer the loader should fill, or -1
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace nn_dist
