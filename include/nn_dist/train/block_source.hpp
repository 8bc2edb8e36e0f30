// Minibatches whose global batch does not depend on the rank count (--reproducible):
// the epoch's order is a permutation of fixed blocks of consecutive training rows
// drawn from (seed, epoch) alone; a global batch is a run of consecutive blocks of
// that order, and each rank reads its contiguous part of it straight from the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn_dist/io/dataset.hpp"
#include "nn_dist/model/standardization.hpp"
#include "nn_dist/train/data.hpp"

namespace nn_dist {

// Fills order (its size: the block count) with the epoch's block order: a
// Fisher-Yates permutation from the portable generator, a pure function of
// (seed, epoch) -- no rank, so every rank count sees the same order.
// Identity without shuffle.
void block_order(uint64_t seed, int64_t epoch, bool shuffle, std::vector<uint32_t>* order);

class BlockSource : public Minibatches {
 public:
  // Training rows [0, rows) of `info` (the concatenation of the --data files),
  // whose values and labels were checked at setup (scan_shard).
  // transform: applied per batch (compact or float features -> floats).
  // block_rows: --block-size; global_blocks: blocks per global batch, a
  // multiple of ranks. Throws Error when the sizes do not fit together.
  BlockSource(const DatasetInfo& info, long rows, Loss loss, Standardization transform, long block_rows,
              long global_blocks, int rank, int ranks, bool shuffle, uint64_t seed);
  ~BlockSource() override;
  BlockSource(const BlockSource&) = delete;  // reader_ points at info_
  BlockSource& operator=(const BlockSource&) = delete;

  long batch() const override { return per_rank_ * block_rows_; }
  long steps() const override { return (blocks_ + global_blocks_ - 1) / global_blocks_; }  // the same on every rank
  void set_seed(uint64_t seed) override { seed_ = seed; }
  // Names the block and global batch sizes, never the rank count: a resume at
  // another rank count continues the same order.
  std::string sample_order() const override;
  void start_epoch(int64_t epoch) override;
  // Rows of this rank's blocks of step `step` (0 when it has none).
  long load(long step) override;
  // Reads step's blocks into the slot not in use (synchronously).
  void prefetch(long step) override;
  const float* x() const override { return slots_[current_].x.data(); }  // (features, n)
  const int32_t* labels() const override { return has_labels_ ? slots_[current_].labels.data() : nullptr; }
  const float* values() const override { return has_labels_ ? nullptr : slots_[current_].values.data(); }
  const int64_t* sample_ids() const override { return slots_[current_].ids.data(); }

  // The blocks of the last load(): how many, and block j's first column in x() and its rows.
  int blocks() const { return slots_[current_].blocks; }
  long block_begin(int j) const { return slots_[current_].begin[j]; }
  long block_rows(int j) const { return slots_[current_].rows[j]; }
  // X read without HDF5 (RowReader::direct): a block's rows with pread, whole
  // (contiguous X) or gathered from its chunks.
  bool direct() const { return reader_->direct(); }
  long chunks_a_row() const { return reader_->chunks_a_row(); }

 private:
  struct Slot {
    Matrix<float> x;               // (features, batch())
    std::vector<int32_t> labels;   // (batch()), softmax
    Matrix<float> values;          // (width, batch()), logistic and mse
    std::vector<int64_t> ids;      // (batch())
    int blocks = 0;
    long size = 0;                 // columns filled
    std::vector<long> begin, rows;  // (per_rank_): each block's first column and rows
  };
  void gather(long step, Slot& slot);
  void read_targets();
  long first_block(long step) const { return step * global_blocks_ + rank_ * per_rank_; }

  DatasetInfo info_;
  std::unique_ptr<RowReader> reader_;
  long rows_, features_;
  int width_;  // info.x_width: 1 or 2 bytes (compact), 0 float32
  Loss loss_;
  bool has_labels_;
  long target_width_;
  Standardization transform_;
  std::vector<float> table_;  // uint8 with a transform (byte_table)
  long block_rows_, global_blocks_, per_rank_, blocks_;
  int rank_;
  bool shuffle_;
  uint64_t seed_;
  std::vector<uint32_t> order_;  // (blocks_): the epoch's block order

  // One block as read (through HDF5, or with pread): X as stored; y as read.
  std::vector<unsigned char> block_x_;
  std::vector<double> block_y_;     // (not read directly) y as read with X, unused: the targets are held
  std::vector<int32_t> labels_;     // every row's label (softmax), or
  std::vector<float> values_;       // every row's targets (width, rows)

  Slot slots_[2];
  int current_ = 0;
  long prefetched_ = -1;
};

}  // namespace nn_dist
