// --val-split's split of one shard into training and validation samples:
// the choice per sample (held_out), then the columns of features and targets
// copied to the side they belong to.
#include "nn_dist/train/hold_out.hpp"

#include <algorithm>
#include <cstring>

#include "nn_dist/model/init.hpp"

namespace nn_dist {

namespace {

// Column j of shard's features to the training set's column `at`: as stored.
void keep_column(const Shard& shard, long features, std::size_t width, long j, long at, Shard* train) {
  if (width == 0) {
    train->x.col(at) = shard.x.col(j);
    return;
  }
  const std::size_t column = width * static_cast<std::size_t>(features);
  std::memcpy(train->compact.data() + column * at, shard.compact.data() + column * j, column);
}

// Column j of shard's features to the held-out column `at`, as float32.
void hold_column(const Shard& shard, long features, int x_width, long j, long at, Matrix<float>* val_x) {
  if (shard.compact.empty()) {
    val_x->col(at) = shard.x.col(j);
    return;
  }
  for (long f = 0; f < features; ++f) {
    (*val_x)(f, at) = static_cast<float>(compact_value(shard, x_width, static_cast<std::size_t>(j * features + f)));
  }
}

void move_target(const Targets& from, long j, long at, Targets* to) {
  if (from.labels.empty()) {
    to->values.col(at) = from.values.col(j);
    return;
  }
  to->labels.push_back(from.labels[j]);
  to->max_label = std::max<long>(to->max_label, from.labels[j]);
}

}  // namespace

bool held_out(uint64_t seed, long index, double fraction) {
  const uint64_t h = mix_seed(seed, static_cast<uint64_t>(index), 0x7a11d5u);
  return static_cast<double>(h >> 11) * 0x1.0p-53 < fraction;
}

HoldOutSplit hold_out(const Shard& shard, const Targets& targets, long features, int x_width, uint64_t seed,
                      double fraction) {
  const long n = shard.count;
  std::vector<char> held(static_cast<std::size_t>(n));
  long held_count = 0;
  for (long j = 0; j < n; ++j) {
    held[j] = held_out(seed, shard.offset + j, fraction);
    held_count += held[j];
  }
  const long kept = n - held_count;
  const bool compact = !shard.compact.empty();
  const std::size_t width = compact ? static_cast<std::size_t>(x_width) : 0;
  HoldOutSplit split;
  split.train.offset = shard.offset;
  split.train.count = kept;
  split.train.x.resize(compact ? 0 : features, compact ? 0 : kept);
  split.train.compact.resize(width * static_cast<std::size_t>(features * kept));
  split.train.rows.reserve(static_cast<std::size_t>(kept));
  split.val_x.resize(features, held_count);
  if (targets.labels.empty()) {
    split.train_targets.values.resize(targets.values.rows(), kept);
    split.val_targets.values.resize(targets.values.rows(), held_count);
  }
  for (long j = 0, a = 0, b = 0; j < n; ++j) {
    if (held[j]) {
      hold_column(shard, features, x_width, j, b, &split.val_x);
      move_target(targets, j, b++, &split.val_targets);
    } else {
      split.train.rows.push_back(shard.offset + j);
      keep_column(shard, features, width, j, a, &split.train);
      move_target(targets, j, a++, &split.train_targets);
    }
  }
  return split;
}

}  // namespace nn_dist
