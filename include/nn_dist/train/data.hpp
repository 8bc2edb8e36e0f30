// One rank's minibatches: a per-epoch shuffle of the in-memory shard from
// (seed, epoch, rank), gathered into preallocated batch buffers. Features
// stored as uint8/uint16 stay that compact in memory and are converted per
// batch.
#pragma once

#include <cstdint>
#include <vector>

#include "nn_dist/io/dataset.hpp"
#include "nn_dist/model/standardization.hpp"

namespace nn_dist {

// A shard's features as stored: `width` bytes (1: uint8, 2: uint16) per
// value, (features, count) column-major. A batch converts each value v to
// float((double(v) - mean[f]) / scale[f]) with `transform` (--scale,
// --standardize), or to float(v) without one: the same values the float path
// computes from the same file.
struct CompactColumns {
  std::vector<unsigned char> bytes;
  int width = 1;
  long features = 0, count = 0;
  Standardization transform;
};

class BatchSource {
 public:
  BatchSource(Matrix<float> x, Targets targets, long batch, bool shuffle, uint64_t seed, int rank);
  BatchSource(CompactColumns x, Targets targets, long batch, bool shuffle, uint64_t seed, int rank);

  long count() const { return compact_.bytes.empty() ? x_.cols() : compact_.count; }
  long batch() const { return batch_; }
  long steps() const { return (count() + batch_ - 1) / batch_; }  // this rank's own; may be fewer than the job's

  void set_seed(uint64_t seed) { seed_ = seed; }
  // Orders the shard for this epoch (identity without shuffle).
  void start_epoch(int64_t epoch);
  // Loads batch `step` of the epoch; returns its size (0 past this rank's end).
  // The pointers below are valid until the next load().
  long load(long step);
  // Gathers batch `step` ahead of its load(), into the buffer not in use, so
  // the gather can fill time the rank would otherwise spend waiting.
  void prefetch(long step);
  const float* x() const { return x_batch_; }
  const int32_t* labels() const { return labels_batch_; }
  const float* values() const { return values_batch_; }
  const std::vector<uint32_t>& order() const { return order_; }

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
};

// Fills order (n local samples) with the epoch's permutation, a pure function
// of (seed, epoch, rank): a Fisher-Yates shuffle from a portable generator.
void epoch_order(uint64_t seed, int64_t epoch, int rank, std::vector<uint32_t>* order);

}  // namespace nn_dist
