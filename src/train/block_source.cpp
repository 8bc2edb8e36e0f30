// The rank-count-independent minibatch source (see block_source.hpp): each
// step reads this rank's blocks of the global batch from the file, block by
// block, into one of two batch buffers sized once.
#include "nn_dist/train/block_source.hpp"

#include <algorithm>
#include <numeric>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/init.hpp"

namespace nn_dist {

void block_order(uint64_t seed, int64_t epoch, bool shuffle, std::vector<uint32_t>* order) {
  if (!shuffle) {
    std::iota(order->begin(), order->end(), 0u);
    return;
  }
  // A stream of its own (0x910ba1), apart from the per-rank shuffles' (rank + 0x51, rank + 0xb10c).
  shuffled_order(mix_seed(seed, static_cast<uint64_t>(epoch) + 1, 0x910ba1), order);
}

BlockSource::BlockSource(const DatasetInfo& info, long rows, Loss loss, Standardization transform, long block_rows,
                         long global_blocks, int rank, int ranks, bool shuffle, uint64_t seed)
    : info_(info),
      rows_(rows),
      features_(info.features),
      width_(info.x_width),
      loss_(loss),
      has_labels_(loss == Loss::kSoftmax),
      target_width_(info.target_width),
      transform_(std::move(transform)),
      block_rows_(block_rows),
      global_blocks_(global_blocks),
      per_rank_(ranks > 0 ? global_blocks / ranks : 0),
      blocks_(block_rows > 0 ? (rows + block_rows - 1) / block_rows : 0),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed) {
  if (block_rows <= 0) throw Error("--block-size " + std::to_string(block_rows) + ": must be at least 1");
  if (rows <= 0 || rows > info.samples) {
    throw Error(info.what + ": " + std::to_string(rows) + " training rows asked of " + std::to_string(info.samples));
  }
  if (ranks <= 0 || rank < 0 || rank >= ranks || global_blocks <= 0 || global_blocks % ranks != 0) {
    throw Error("internal: " + std::to_string(global_blocks) + " blocks a global batch do not divide among " +
                std::to_string(ranks) + " ranks");
  }
  if (blocks_ > static_cast<long>(UINT32_MAX)) {
    throw Error("--block-size " + std::to_string(block_rows) + ": " + std::to_string(blocks_) +
                " blocks; give a larger block (fewer than 2^32 blocks)");
  }
  order_.resize(static_cast<std::size_t>(blocks_));
  block_order(seed_, 0, shuffle_, &order_);
  if (width_ == 1) table_ = byte_table(transform_);
  reader_ = std::make_unique<RowReader>(info_);
  // The most rows a step can bring (less than batch() when a block is larger than the data).
  const long batch = std::min(per_rank_ * block_rows_, rows_), block = std::min(block_rows_, rows_);
  for (Slot& slot : slots_) {
    slot.x.resize(features_, batch);
    if (has_labels_) slot.labels.resize(batch);
    else slot.values.resize(target_width_, batch);
    slot.ids.resize(batch);
    slot.begin.resize(std::min(per_rank_, blocks_));
    slot.rows.resize(std::min(per_rank_, blocks_));
  }
  const std::size_t value_bytes = width_ > 0 ? static_cast<std::size_t>(width_) : sizeof(float);
  block_x_.resize(value_bytes * static_cast<std::size_t>(features_ * block));
  if (!reader_->direct()) block_y_.resize(static_cast<std::size_t>(target_width_ * block));
  read_targets();
}

// Every row's targets, read once: y is a few bytes a row (labels 4), X is
// read per step. Through HDF5 per block, y took about half the step's data
// time (784-feature benchmark: 0.13 ms against the in-memory source's 0.055).
void BlockSource::read_targets() {
  if (has_labels_) labels_.resize(static_cast<std::size_t>(rows_));
  else values_.resize(static_cast<std::size_t>(rows_ * target_width_));
  constexpr long kChunk = 1 << 16;
  std::vector<double> y(static_cast<std::size_t>(std::min(rows_, kChunk) * target_width_));
  for (long row = 0; row < rows_; row += kChunk) {
    const long n = std::min(kChunk, rows_ - row);
    reader_->read_targets(row, n, y.data());
    convert_targets(y.data(), n, target_width_, loss_, has_labels_ ? labels_.data() + row : nullptr,
                    has_labels_ ? nullptr : values_.data() + row * target_width_);
  }
}

BlockSource::~BlockSource() = default;

std::string BlockSource::sample_order() const {
  return std::string(shuffle_ ? "shuffled" : "in file order") + " in blocks of " + std::to_string(block_rows_) +
         " rows, " + std::to_string(global_blocks_) + " blocks a global batch";
}

void BlockSource::start_epoch(int64_t epoch) {
  block_order(seed_, epoch, shuffle_, &order_);
  prefetched_ = -1;
}

void BlockSource::gather(long step, Slot& slot) {
  const long first = first_block(step), last = std::min(blocks_, first + per_rank_);
  const bool direct = reader_->direct();
  const std::size_t column = static_cast<std::size_t>(features_) * (width_ > 0 ? width_ : sizeof(float));
  slot.blocks = 0;
  slot.size = 0;
  for (long k = first; k < last; ++k) {
    const long row = static_cast<long>(order_[k]) * block_rows_;
    const long n = std::min(rows_, row + block_rows_) - row;
    if (direct) {
      // One pread for contiguous X (or one a chunk column): on a 2-vCPU Zen 5
      // guest, 1 rank, batch 128, --block-size 128, the step's data took
      // 0.31-0.39 ms when the rows were read in place from the mapping (its
      // page tables filled and cleared every few steps) and 0.09-0.10 so.
      reader_->copy_rows(row, n, block_x_.data());
    } else {
      reader_->read(row, n, /*compact=*/true, block_x_.data(), block_y_.data());
    }
    const long at = slot.size;
    for (long j = 0; j < n; ++j) {
      convert_column(block_x_.data() + column * j, width_, features_, transform_, table_, slot.x.col(at + j).data());
      slot.ids[at + j] = row + j;
    }
    if (has_labels_) {
      std::copy_n(labels_.data() + row, n, slot.labels.data() + at);
    } else {
      std::copy_n(values_.data() + row * target_width_, n * target_width_, slot.values.data() + at * target_width_);
    }
    slot.begin[slot.blocks] = at;
    slot.rows[slot.blocks] = n;
    ++slot.blocks;
    slot.size += n;
  }
}

void BlockSource::prefetch(long step) {
  if (first_block(step) >= blocks_) return;
  gather(step, slots_[1 - current_]);
  prefetched_ = step;
}

long BlockSource::load(long step) {
  if (prefetched_ == step) {
    current_ = 1 - current_;
  } else {
    gather(step, slots_[current_]);
  }
  prefetched_ = -1;
  return slots_[current_].size;
}

}  // namespace nn_dist
