// --val-split: which samples of a shard are held out for validation, as a
// pure function of (seed, the sample's index in the dataset, the fraction),
// so the same samples are held out at any rank count and whatever order the
// classes have in the files. No MPI: the caller agrees on the counts.
#pragma once

#include <cstdint>
#include <vector>

#include "nn_dist/io/dataset.hpp"

namespace nn_dist {

// Whether sample `index` of the dataset is held out: a hash of (seed, index)
// falls below `fraction`.
bool held_out(uint64_t seed, long index, double fraction);

struct HoldOutSplit {
  Shard train;             // the samples kept for training, in their form (compact stays compact)
  Targets train_targets;
  Matrix<float> val_x;     // (features, held) the held-out samples as float32: float(v), exactly the stored value
  Targets val_targets;
};

// Splits shard (features of x_width bytes when compact; targets alongside)
// into the samples kept and those held out, each in shard order.
HoldOutSplit hold_out(const Shard& shard, const Targets& targets, long features, int x_width, uint64_t seed,
                      double fraction);

}  // namespace nn_dist
