// The streaming minibatch source (see stream.hpp): windows of blocks read by
// a background thread, batches gathered from one or two windows.
#include "nn_dist/train/stream.hpp"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "nn_dist/common/clock.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/model/init.hpp"

namespace nn_dist {

bool one_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1;
}

double stream_row_bytes(const DatasetInfo& info, Loss loss) {
  const double x = static_cast<double>(info.features) * (info.x_width > 0 ? info.x_width : 4);
  const double width = static_cast<double>(info.target_width);
  const double y = 8.0 * width + (loss == Loss::kSoftmax ? 4.0 : 4.0 * width);  // as read, and as used
  // and the window's row order, and 8 bytes that held each row's address when
  // X was read in place (kept: the windows, and so the sample order, stay as they were)
  return x + y + 4.0 + 8.0;
}

StreamShape stream_shape(double cache_bytes, double row_bytes, long batch, long count) {
  const long window = static_cast<long>(cache_bytes / 2 / row_bytes);  // two windows are held
  if (window < batch) {
    throw Error("--cache-mb " + std::to_string(cache_bytes / (1 << 20)) + ": too small for two windows of one batch (" +
                std::to_string(batch) + " rows of " + std::to_string(static_cast<long>(row_bytes)) +
                " bytes each); give at least " +
                std::to_string(static_cast<long>(2 * batch * row_bytes / (1 << 20)) + 1));
  }
  StreamShape s;
  // Blocks small enough that a window mixes many of them (16 or more), large
  // enough that each read is a long contiguous run of rows.
  s.block_rows = std::clamp<long>(window / 16, 1, 65536);
  s.window_rows = std::min(window, std::max(count, 1L)) / s.block_rows * s.block_rows;
  s.window_rows = std::max(s.window_rows, s.block_rows);
  return s;
}

StreamSource::StreamSource(const DatasetInfo& info, long offset, long count, Loss loss, Standardization transform,
                           long batch, bool shuffle, uint64_t seed, int rank, StreamShape shape)
    : info_(info),
      offset_(offset),
      count_(count),
      features_(info.features),
      width_(info.x_width),
      loss_(loss),
      transform_(std::move(transform)),
      batch_(batch),
      shuffle_(shuffle),
      seed_(seed),
      rank_(rank),
      shape_(shape),
      has_labels_(loss == Loss::kSoftmax),
      value_bytes_(info.x_width > 0 ? static_cast<std::size_t>(info.x_width) : sizeof(float)) {
  for (Slot& slot : slots_) {
    slot.x.resize(features_, batch_);
    if (has_labels_) slot.labels.resize(batch_);
    else slot.values.resize(info.target_width, batch_);
  }
  if (width_ == 1) table_ = byte_table(transform_);
  // Both windows take their whole size now, at setup: the first touch of
  // the second one's pages would otherwise fall in the step that reads it
  // (a 33 MB window: 110-150 ms on a 2-vCPU Zen 5 guest, against ~10 ms for
  // the read itself).
  for (Window& w : windows_) size_window(w);
  reader_ = std::make_unique<RowReader>(info_);
  if (!shape_.in_step) thread_ = std::thread([this] { loader(); });
}

StreamSource::~StreamSource() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::string StreamSource::sample_order() const {
  if (!shuffle_) return "in file order";
  const long block = std::min(shape_.block_rows, std::max(count_, 1L));
  const long blocks = (count_ + block - 1) / block;
  const long per_window = std::min(shape_.window_rows / shape_.block_rows, std::max(blocks, 1L));
  return "shuffled in windows of " + std::to_string(per_window * block) + " rows (blocks of " + std::to_string(block) +
         ")";
}

void StreamSource::start_epoch(int64_t epoch) {
  {  // the loader may still read the last epoch's window, from the last epoch's order
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ < 0; });
  }
  epoch_ = epoch;
  prefetched_ = -1;
  const long blocks = (count_ + shape_.block_rows - 1) / shape_.block_rows;
  block_order_.resize(static_cast<std::size_t>(blocks));
  if (shuffle_) {
    shuffled_order(mix_seed(seed_, static_cast<uint64_t>(epoch) + 1, static_cast<uint64_t>(rank_) + 0xb10c),
                   &block_order_);
  } else {
    std::iota(block_order_.begin(), block_order_.end(), 0u);
  }
  const long per_window = shape_.window_rows / shape_.block_rows;
  window_start_.assign(1, 0);
  for (long b = 0; b < blocks; b += per_window) {
    long rows = 0;
    for (long k = b; k < std::min(blocks, b + per_window); ++k) {
      const long first = static_cast<long>(block_order_[k]) * shape_.block_rows;
      rows += std::min(count_, first + shape_.block_rows) - first;
    }
    window_start_.push_back(window_start_.back() + rows);
  }
  request(0);  // the first window is read while the epoch's setup finishes
}

void StreamSource::size_window(Window& w) const {
  const auto rows = static_cast<std::size_t>(shape_.window_rows), width = static_cast<std::size_t>(info_.target_width);
  w.x.resize(value_bytes_ * rows * static_cast<std::size_t>(features_));
  w.y.resize(rows * width);
  if (has_labels_) {
    w.labels.resize(rows);
  } else {
    w.values.resize(rows * width);
  }
  w.order.resize(rows);
  w.place.resize(rows);
}

void StreamSource::order_window(Window& w, long index, int64_t epoch) const {
  w.order.resize(static_cast<std::size_t>(w.rows));
  if (shuffle_) {
    shuffled_order(mix_seed(mix_seed(seed_, static_cast<uint64_t>(epoch) + 1, static_cast<uint64_t>(rank_) + 0x51),
                            static_cast<uint64_t>(index) + 1, 0x3d),
                   &w.order);
  } else {
    std::iota(w.order.begin(), w.order.end(), 0u);
  }
  // Read directly, the rows go where the batches take them, so the batches
  // gather them in sequence, not from random rows of the window. On a 2-vCPU
  // Zen 5 guest, 2 ranks, 400000 x 784 float32, --cache-mb 64, 8 rounds side
  // by side: 1.015-1.051x the samples/s of rows in file order in h5py's
  // chunks, 1.007-1.080x contiguous (--profile's data: 0.17 -> 0.145 ms a
  // step, and 0.14 -> 0.10).
  if (placed()) {
    for (long p = 0; p < w.rows; ++p) w.place[w.order[static_cast<std::size_t>(p)]] = static_cast<uint32_t>(p);
  }
}

void StreamSource::read_window(Window& w, long index, int64_t epoch) {
  const long per_window = shape_.window_rows / shape_.block_rows;
  const long blocks = static_cast<long>(block_order_.size());
  const long first_block = index * per_window, end_block = std::min(blocks, (index + 1) * per_window);
  // The buffers were sized at setup (size_window): a read allocates nothing
  // and touches no fresh page.
  const long width = info_.target_width;
  const auto block_rows = [&](long k) {
    const long first = static_cast<long>(block_order_[k]) * shape_.block_rows;
    return std::make_pair(first, std::min(count_, first + shape_.block_rows) - first);
  };
  w.rows = 0;
  for (long k = first_block; k < end_block; ++k) w.rows += block_rows(k).second;
  order_window(w, index, epoch);
  long at = 0;  // the block's first row in the window
  for (long k = first_block; k < end_block; ++k) {
    const auto [first, n] = block_rows(k);
    unsigned char* x = w.x.data() + value_bytes_ * static_cast<std::size_t>(at * features_);
    double* y = w.y.data() + at * width;
    if (reader_->direct()) {
      // With pread into the window: whole rows straight in, chunked rows
      // gathered from their pieces; placed, each where order_window put it.
      // Reading contiguous X in place from a mapping of the file (its pages
      // made resident for the window, then given back) ran at 0.79-0.84 of
      // in-memory speed on a Zen 5 guest whose page-table changes are
      // costly, against 0.90-0.97.
      if (placed()) {
        reader_->copy_rows(offset_ + first, n, w.x.data(), w.place.data() + at);
      } else {
        reader_->copy_rows(offset_ + first, n, x);
      }
      reader_->read_targets(offset_ + first, n, y);
    } else {
      reader_->read(offset_ + first, n, /*compact=*/true, x, y);
    }
    at += n;
  }
  // Labels and values were checked at setup (scan_shard): only converted here.
  convert_targets(w.y.data(), w.rows, width, loss_, w.labels.data(), w.values.data());
}

void StreamSource::loader() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || pending_ >= 0; });
    if (stop_) return;
    Window& w = windows_[pending_];
    const long index = w.index;
    const int64_t epoch = w.epoch;
    lock.unlock();
    std::exception_ptr error;
    const auto t0 = Clock::now();
    try {
      read_window(w, index, epoch);
    } catch (...) {
      error = std::current_exception();
    }
    const double seconds = seconds_between(t0, Clock::now());
    lock.lock();
    if (error) error_ = error;
    count_read(w, seconds);
    pending_ = -1;
    done_.notify_all();
  }
}

void StreamSource::count_read(Window& w, double seconds) {
  read_seconds_ += seconds;
  read_bytes_ += static_cast<double>(w.rows) *
                 (static_cast<double>(value_bytes_ * features_) + 8.0 * static_cast<double>(info_.target_width));
  w.ready = true;
  ++reads_;
}

void StreamSource::request(long index) {
  if (index < 0 || index >= windows()) return;
  std::unique_lock<std::mutex> lock(mutex_);
  for (const Window& w : windows_) {
    if (w.epoch == epoch_ && w.index == index && w.requested) return;  // there, or on its way
  }
  done_.wait(lock, [this] { return pending_ < 0; });  // one read at a time
  // The buffer not holding the window the last batch ended in (a batch may still need it).
  int victim = windows_[0].index == active_ && windows_[0].epoch == epoch_ ? 1 : 0;
  Window& w = windows_[victim];
  w.index = index;
  w.epoch = epoch_;
  w.ready = false;
  w.requested = true;
  if (shape_.in_step) {  // no other thread: read it now (an error propagates from here)
    const auto t0 = Clock::now();
    try {
      read_window(w, index, epoch_);
    } catch (...) {
      w.index = -1;
      w.requested = false;
      throw;
    }
    count_read(w, seconds_between(t0, Clock::now()));
    return;
  }
  pending_ = victim;
  wake_.notify_all();
}

StreamSource::Window& StreamSource::ensure(long index) {
  request(index);
  std::unique_lock<std::mutex> lock(mutex_);
  for (Window& w : windows_) {
    if (w.epoch == epoch_ && w.index == index) {
      done_.wait(lock, [&] { return w.ready; });
      if (error_) std::rethrow_exception(error_);
      return w;
    }
  }
  throw Error("internal: streaming window " + std::to_string(index) + " was not read");
}

void StreamSource::gather(long step, Slot& slot) {
  const long begin = step * batch_, end = std::min(count_, begin + batch_);
  long w = static_cast<long>(std::upper_bound(window_start_.begin(), window_start_.end(), begin) -
                             window_start_.begin()) - 1;
  const std::size_t column = value_bytes_ * static_cast<std::size_t>(features_);
  const long width = has_labels_ ? 1 : info_.target_width;
  Window* win = &ensure(w);
  active_ = w;
  for (long p = begin; p < end; ++p) {
    if (p >= window_start_[w + 1]) {
      win = &ensure(++w);
      active_ = w;
    }
    const uint32_t row = win->order[p - window_start_[w]];
    const long j = p - begin;
    // Read directly, position p holds row order[p] (placed), or row p itself (in file order, no shuffle).
    const unsigned char* values = win->x.data() + column * (reader_->direct() ? p - window_start_[w] : row);
    convert_column(values, static_cast<int>(width_), features_, transform_, table_, slot.x.col(j).data());
    if (has_labels_) {
      slot.labels[j] = win->labels[row];
    } else {
      std::copy(win->values.data() + row * width, win->values.data() + (row + 1) * width, slot.values.col(j).data());
    }
  }
  if (!shape_.in_step) {
    request(w + 1);  // the next window is read while this one is used
    return;
  }
  // Read on this thread, the next window is read as the batches reach where
  // this one would start if every block were whole: a position the same for
  // every rank, so the ranks read together and none waits in the sum for
  // another's read. (The real boundaries move by up to a block with where the
  // short last block fell.) Measured on a 2-vCPU Zen 5 guest, 2 ranks, a core
  // each, 400000 x 784 float32 in h5py's chunks, --cache-mb 64: a reader
  // thread on each rank's core 0.88-0.91 of in-memory speed, this 0.91-0.94
  // (1.03x in each of 4 rounds); spreading the reads block by block over the
  // window's steps was slower than either. A window needed sooner is read by
  // ensure().
  request((end - 1) / shape_.window_rows + 1);
}

void StreamSource::prefetch(long step) {
  if (step * batch_ >= count_) return;
  gather(step, slots_[1 - current_]);
  prefetched_ = step;
}

long StreamSource::load(long step) {
  const long n = std::clamp(count_ - step * batch_, 0L, batch_);
  if (n == 0) return 0;
  if (prefetched_ == step) {
    current_ = 1 - current_;
  } else {
    gather(step, slots_[current_]);
  }
  prefetched_ = -1;
  return n;
}

}  // namespace nn_dist
