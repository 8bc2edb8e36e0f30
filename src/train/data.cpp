// Minibatch gathering: without shuffle a batch is a view into the shard (no
// copy); with shuffle its columns are gathered into buffers sized once.
#include "nn_dist/train/data.hpp"

#include <algorithm>
#include <numeric>

#include "nn_dist/model/init.hpp"

namespace nn_dist {

void epoch_order(uint64_t seed, int64_t epoch, int rank, std::vector<uint32_t>* order) {
  std::iota(order->begin(), order->end(), 0u);
  Rng rng(mix_seed(seed, static_cast<uint64_t>(epoch) + 1, static_cast<uint64_t>(rank) + 0x51));
  for (std::size_t i = order->size() - 1; i > 0 && i < order->size(); --i) {
    std::swap((*order)[i], (*order)[rng.below(static_cast<uint64_t>(i) + 1)]);
  }
}

BatchSource::BatchSource(Matrix<float> x, Targets targets, long batch, bool shuffle, uint64_t seed, int rank)
    : x_(std::move(x)), targets_(std::move(targets)), batch_(batch), shuffle_(shuffle), seed_(seed), rank_(rank) {
  order_.resize(count());
  std::iota(order_.begin(), order_.end(), 0u);
  if (shuffle_) {
    x_buf_.resize(x_.rows(), batch_);
    if (!targets_.labels.empty()) labels_buf_.resize(batch_);
    if (targets_.values.size()) values_buf_.resize(targets_.values.rows(), batch_);
  }
}

void BatchSource::start_epoch(int64_t epoch) {
  if (shuffle_) epoch_order(seed_, epoch, rank_, &order_);
}

long BatchSource::load(long step) {
  const long begin = step * batch_;
  const long n = std::clamp(count() - begin, 0L, batch_);
  if (n == 0) return 0;
  const bool has_labels = !targets_.labels.empty();
  if (!shuffle_) {
    x_batch_ = x_.data() + begin * x_.rows();
    labels_batch_ = has_labels ? targets_.labels.data() + begin : nullptr;
    values_batch_ = has_labels ? nullptr : targets_.values.data() + begin * targets_.values.rows();
    return n;
  }
  for (long j = 0; j < n; ++j) {
    const uint32_t src = order_[begin + j];
    x_buf_.col(j) = x_.col(src);
    if (has_labels) {
      labels_buf_[j] = targets_.labels[src];
    } else {
      values_buf_.col(j) = targets_.values.col(src);
    }
  }
  x_batch_ = x_buf_.data();
  labels_batch_ = has_labels ? labels_buf_.data() : nullptr;
  values_batch_ = has_labels ? nullptr : values_buf_.data();
  return n;
}

}  // namespace nn_dist
