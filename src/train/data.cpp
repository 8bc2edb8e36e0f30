// Minibatch gathering: without shuffle a batch is a view into the shard (no
// copy); with shuffle its columns are gathered into two buffers sized once,
// so the next batch can be gathered while the current one is still in use.
#include "nn_dist/train/data.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include <sys/mman.h>
#include <unistd.h>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/model/init.hpp"

namespace nn_dist {

void shuffled_order(uint64_t seed, std::vector<uint32_t>* order) {
  std::iota(order->begin(), order->end(), 0u);
  Rng rng(seed);
  for (std::size_t i = order->size(); i > 1; --i) std::swap((*order)[i - 1], (*order)[rng.below(i)]);
}

void epoch_order(uint64_t seed, int64_t epoch, int rank, std::vector<uint32_t>* order) {
  shuffled_order(mix_seed(seed, static_cast<uint64_t>(epoch) + 1, static_cast<uint64_t>(rank) + 0x51), order);
}

BatchSource::BatchSource(Matrix<float> x, Targets targets, long batch, bool shuffle, uint64_t seed, int rank)
    : x_(std::move(x)), targets_(std::move(targets)), batch_(batch), shuffle_(shuffle), seed_(seed), rank_(rank) {
  allocate_slots();
}

BatchSource::BatchSource(CompactColumns x, Targets targets, long batch, bool shuffle, uint64_t seed, int rank)
    : compact_(std::move(x)), targets_(std::move(targets)), batch_(batch), shuffle_(shuffle), seed_(seed), rank_(rank) {
  if (compact_.width == 1) table_ = byte_table(compact_.transform);
  if (compact_.bf16 && !compact_.transform.empty()) throw Error("internal: bf16 columns with a transform");
  allocate_slots();
}

bool bf16_columns(Matrix<float>* x, CompactColumns* out) {
  const std::size_t n = static_cast<std::size_t>(x->size());
  const float* v = x->data();
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, v + i, 4);
    bits &= 0x7FFFFFFFu;
    if (bits >= 0x7F7F8000u && bits < 0x7F800000u) return false;  // finite, rounds to infinity
  }
  // Block by block, each block's float32 pages given back once converted:
  // the process never holds more than the float32 shard (plus a block).
  out->bytes.reserve(2 * n);  // touches no page: each block's are touched as it grows
  constexpr std::size_t kBlock = std::size_t{1} << 20;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  for (std::size_t i = 0; i < n; i += kBlock) {
    const std::size_t count = std::min(kBlock, n - i);
    out->bytes.resize(2 * (i + count));
    to_bf16(v + i, count, reinterpret_cast<uint16_t*>(out->bytes.data()) + i);
    const uintptr_t from = (reinterpret_cast<uintptr_t>(v + i) + page - 1) / page * page;
    const uintptr_t to = reinterpret_cast<uintptr_t>(v + i + count) / page * page;
    if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);  // a hint: may fail
  }
  out->width = 2;
  out->features = x->rows();
  out->count = x->cols();
  out->transform = Standardization();
  out->bf16 = true;
  *x = Matrix<float>();
  return true;
}

std::vector<float> byte_table(const Standardization& t) {
  std::vector<float> table;
  if (t.empty()) return table;
  // One transform for every feature (--scale alone): one table of 256 floats,
  // which stays in L1; else 256 per feature (--standardize).
  const bool uniform = std::all_of(t.mean.begin(), t.mean.end(), [&](double m) { return m == t.mean[0]; }) &&
                       std::all_of(t.scale.begin(), t.scale.end(), [&](double s) { return s == t.scale[0]; });
  const long tables = uniform ? 1 : t.features();
  table.resize(256 * static_cast<std::size_t>(tables));
  for (long f = 0; f < tables; ++f) {
    for (int v = 0; v < 256; ++v) table[f * 256 + v] = static_cast<float>((v - t.mean[f]) / t.scale[f]);
  }
  return table;
}

void convert_column(const unsigned char* column, int width, long d, const Standardization& t,
                    const std::vector<float>& table, float* out) {
  if (width == 1) {
    if (table.empty()) {
      for (long f = 0; f < d; ++f) out[f] = static_cast<float>(column[f]);
    } else if (table.size() == 256) {
      for (long f = 0; f < d; ++f) out[f] = table[column[f]];
    } else {
      for (long f = 0; f < d; ++f) out[f] = table[f * 256 + column[f]];
    }
    return;
  }
  if (width == 2) {
    const uint16_t* in = reinterpret_cast<const uint16_t*>(column);
    if (t.empty()) {
      for (long f = 0; f < d; ++f) out[f] = static_cast<float>(in[f]);
    } else {
      for (long f = 0; f < d; ++f) out[f] = static_cast<float>((in[f] - t.mean[f]) / t.scale[f]);
    }
    return;
  }
  const float* in = reinterpret_cast<const float*>(column);  // float32 storage
  if (t.empty()) {
    std::memcpy(out, in, sizeof(float) * static_cast<std::size_t>(d));
  } else {
    for (long f = 0; f < d; ++f) out[f] = static_cast<float>((static_cast<double>(in[f]) - t.mean[f]) / t.scale[f]);
  }
}

void BatchSource::allocate_slots() {
  order_.resize(count());
  std::iota(order_.begin(), order_.end(), 0u);
  if (!gathers()) return;
  const long features = compact_.bytes.empty() ? x_.rows() : compact_.features;
  for (Slot& slot : slots_) {
    slot.x.resize(features, batch_);
    if (!targets_.labels.empty()) slot.labels.resize(batch_);
    if (targets_.values.size()) slot.values.resize(targets_.values.rows(), batch_);
  }
}

void BatchSource::set_sample_ids(std::vector<int64_t> ids) {
  ids_ = std::move(ids);
  if (gathers()) {
    for (Slot& slot : slots_) slot.ids.resize(batch_);
  }
}

void BatchSource::convert_column(long src, float* out) const {
  const std::size_t column = static_cast<std::size_t>(compact_.width * compact_.features);
  if (compact_.bf16) {
    from_bf16(reinterpret_cast<const uint16_t*>(compact_.bytes.data()) + column / 2 * static_cast<std::size_t>(src),
              static_cast<std::size_t>(compact_.features), out);
    return;
  }
  nn_dist::convert_column(compact_.bytes.data() + column * static_cast<std::size_t>(src), compact_.width,
                          compact_.features, compact_.transform, table_, out);
}

void BatchSource::start_epoch(int64_t epoch) {
  if (shuffle_) epoch_order(seed_, epoch, rank_, &order_);
  prefetched_ = -1;
}

long BatchSource::size_of(long step) const { return std::clamp(count() - step * batch_, 0L, batch_); }

void BatchSource::gather(long step, Slot& slot) const {
  const long begin = step * batch_, n = size_of(step);
  const bool has_labels = !targets_.labels.empty();
  // Rows are far apart in the shard: each, with its label and id, is fetched
  // from memory two rows ahead of its copy (more ahead gained nothing).
  const bool compact = !compact_.bytes.empty();
  const std::size_t row_bytes = compact ? static_cast<std::size_t>(compact_.width * compact_.features)
                                        : sizeof(float) * static_cast<std::size_t>(x_.rows());
  const char* rows = compact ? reinterpret_cast<const char*>(compact_.bytes.data())
                             : reinterpret_cast<const char*>(x_.data());
  constexpr long kAhead = 2;
  for (long j = 0; j < n; ++j) {
    const uint32_t src = order_[begin + j];
    if (j + kAhead < n) {
      const uint32_t next = order_[begin + j + kAhead];
      if (!ids_.empty()) __builtin_prefetch(&ids_[next], 0, 3);
      if (has_labels) __builtin_prefetch(&targets_.labels[next], 0, 3);
      const char* ahead = rows + row_bytes * next;
      for (const char* p = ahead - reinterpret_cast<uintptr_t>(ahead) % 64; p < ahead + row_bytes; p += 64) {
        __builtin_prefetch(p, 0, 3);
      }
    }
    if (compact) {
      convert_column(src, slot.x.col(j).data());
    } else {
      // memcpy: glibc picks its AVX2/AVX-512 copy at run time; Eigen's copy
      // is compiled for the baseline build's SSE2 (0.10 vs 0.08 ms per step).
      std::memcpy(slot.x.col(j).data(), x_.col(src).data(), sizeof(float) * static_cast<std::size_t>(x_.rows()));
    }
    if (!ids_.empty()) slot.ids[j] = ids_[src];
    if (has_labels) {
      slot.labels[j] = targets_.labels[src];
    } else {
      slot.values.col(j) = targets_.values.col(src);
    }
  }
}

void BatchSource::prefetch(long step) {
  if (!gathers() || size_of(step) == 0) return;
  gather(step, slots_[1 - current_]);
  prefetched_ = step;
}

long BatchSource::load(long step) {
  const long n = size_of(step);
  if (n == 0) return 0;
  const bool has_labels = !targets_.labels.empty();
  if (!gathers()) {  // a view into the shard: no copy
    const long begin = step * batch_;
    x_batch_ = x_.data() + begin * x_.rows();
    labels_batch_ = has_labels ? targets_.labels.data() + begin : nullptr;
    values_batch_ = has_labels ? nullptr : targets_.values.data() + begin * targets_.values.rows();
    ids_batch_ = ids_.empty() ? nullptr : ids_.data() + begin;
    return n;
  }
  if (prefetched_ == step) {
    current_ = 1 - current_;
  } else {
    gather(step, slots_[current_]);
  }
  prefetched_ = -1;
  const Slot& slot = slots_[current_];
  x_batch_ = slot.x.data();
  labels_batch_ = has_labels ? slot.labels.data() : nullptr;
  values_batch_ = has_labels ? nullptr : slot.values.data();
  ids_batch_ = ids_.empty() ? nullptr : slot.ids.data();
  return n;
}

}  // namespace nn_dist
