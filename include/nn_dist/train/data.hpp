// One rank's minibatches: a per-epoch shuffle of the in-memory shard from
// (seed, epoch, rank), gathered into preallocated batch buffers. Features
// stored as uint8/uint16 stay that compact in memory and are converted per
// batch; with --precision bf16, float32 features are kept as bf16.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/io/dataset.hpp"
#include "nn_dist/model/standardization.hpp"

namespace nn_dist {

// A shard's features as stored: `width` bytes (1: uint8, 2: uint16) per
// value, (features, count) column-major. A batch converts each value v to
// float((double(v) - mean[f]) / scale[f]) with `transform` (--scale,
// --standardize), or to float(v) without one: the same values the float path
// computes from the same file. bf16: the values are float32 data already
// transformed and kept as bf16 (width 2, transform empty) because the bf16
// products round them so anyway (see bf16_columns).
struct CompactColumns {
  std::vector<unsigned char> bytes;
  int width = 1;
  long features = 0, count = 0;
  Standardization transform;
  bool bf16 = false;
};

// --precision bf16: x (features, count), already transformed, as bf16
// columns, the products' own rounding (to_bf16), which the products would
// apply to every batch anyway: the same bits at half the memory and half the
// bytes a batch gathers. Returns false (x untouched) if a finite value would
// round to infinity (|x| near FLT_MAX): a non-finite loss would then blame
// the data's feature, so such data stays float32. Needs the bf16 kernels' CPU.
bool bf16_columns(Matrix<float>* x, CompactColumns* out);

// What the training step reads its batches from: the in-memory BatchSource,
// StreamSource (stream.hpp) for data larger than memory, or BlockSource
// (block_source.hpp) for batches that do not depend on the rank count.
class Minibatches {
 public:
  virtual ~Minibatches() = default;
  virtual long batch() const = 0;
  // This rank's steps per epoch (may be fewer than the job's).
  virtual long steps() const = 0;
  virtual void set_seed(uint64_t seed) = 0;
  // What, besides the seed, epoch, rank and batch, decides the order of the
  // samples in an epoch, in words ("in file order", "shuffled", ...): a
  // mid-epoch resume must find the same words, or it would train some
  // samples twice and skip others.
  virtual std::string sample_order() const = 0;
  // Orders the shard for this epoch.
  virtual void start_epoch(int64_t epoch) = 0;
  // Loads batch `step` of the epoch; returns its size (0 past this rank's end).
  // The pointers below are valid until the next load().
  virtual long load(long step) = 0;
  // Gathers batch `step` ahead of its load(), into the buffer not in use.
  virtual void prefetch(long step) = 0;
  virtual const float* x() const = 0;          // (features, n)
  virtual const int32_t* labels() const = 0;   // (n), softmax
  virtual const float* values() const = 0;     // (width, n), logistic and mse
  // Each column's row in the training data (n values; --dropout keys its
  // masks by it), or nullptr where this source does not know them.
  virtual const int64_t* sample_ids() const { return nullptr; }
};

// Compact values to floats (see CompactColumns): one column of `features`
// values of `width` bytes. table: byte_table(t) for width 1 with a transform.
std::vector<float> byte_table(const Standardization& t);
void convert_column(const unsigned char* column, int width, long features, const Standardization& t,
                    const std::vector<float>& table, float* out);

class BatchSource : public Minibatches {
 public:
  BatchSource(Matrix<float> x, Targets targets, long batch, bool shuffle, uint64_t seed, int rank);
  BatchSource(CompactColumns x, Targets targets, long batch, bool shuffle, uint64_t seed, int rank);

  long count() const { return compact_.bytes.empty() ? x_.cols() : compact_.count; }
  long batch() const override { return batch_; }
  long steps() const override { return (count() + batch_ - 1) / batch_; }

  void set_seed(uint64_t seed) override { seed_ = seed; }
  std::string sample_order() const override { return shuffle_ ? "shuffled" : "in file order"; }
  // Orders the shard for this epoch (identity without shuffle).
  void start_epoch(int64_t epoch) override;
  long load(long step) override;
  // The gather can fill time the rank would otherwise spend waiting.
  void prefetch(long step) override;
  const float* x() const override { return x_batch_; }
  const int32_t* labels() const override { return labels_batch_; }
  const float* values() const override { return values_batch_; }
  const int64_t* sample_ids() const override { return ids_batch_; }
  const std::vector<uint32_t>& order() const { return order_; }
  // The training-data row of each sample of the shard (count() values).
  void set_sample_ids(std::vector<int64_t> ids);

 private:
  Matrix<float> x_;           // (features, count), or empty when compact_ holds the features
  CompactColumns compact_;
  std::vector<float> table_;  // uint8 with a transform: (256, features), every value's converted float
  Targets targets_;
  long batch_;
  bool shuffle_;
  uint64_t seed_;
  int rank_;
  struct Slot {
    Matrix<float> x;               // (features, batch)
    std::vector<int32_t> labels;   // (batch)
    Matrix<float> values;          // (width, batch)
    std::vector<int64_t> ids;      // (batch), with set_sample_ids
  };
  long size_of(long step) const;
  void gather(long step, Slot& slot) const;
  void convert_column(long src, float* out) const;  // compact_ column src -> floats
  bool gathers() const { return shuffle_ || !compact_.bytes.empty(); }  // else batches are views
  void allocate_slots();

  std::vector<uint32_t> order_;
  Slot slots_[2];
  int current_ = 0;
  long prefetched_ = -1;  // the step waiting in the other slot, or -1
  const float* x_batch_ = nullptr;
  const int32_t* labels_batch_ = nullptr;
  const float* values_batch_ = nullptr;
  std::vector<int64_t> ids_;  // (count) or empty
  const int64_t* ids_batch_ = nullptr;
};

// Fills order (its size) with a permutation of 0..n-1: a Fisher-Yates
// shuffle drawn from Rng(seed), the same on every platform.
void shuffled_order(uint64_t seed, std::vector<uint32_t>* order);

// Fills order (n local samples) with the epoch's permutation, a pure function
// of (seed, epoch, rank): a Fisher-Yates shuffle from a portable generator.
void epoch_order(uint64_t seed, int64_t epoch, int rank, std::vector<uint32_t>* order);

}  // namespace nn_dist
