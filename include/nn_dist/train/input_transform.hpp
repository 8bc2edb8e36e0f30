// The transform every input goes through, x' = (x - mean) / scale: the one a
// checkpoint stores (/preprocess), or --standardize's statistics over the
// whole training set, or --scale alone; none without them. It is saved in
// the run's checkpoints, so evaluation and a resume see the same inputs.
#pragma once

#include "nn_dist/cli/config.hpp"
#include "nn_dist/model/standardization.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/training_set.hpp"

namespace nn_dist {

// The run's transform: `saved` (a checkpoint's, when it has one), else one
// computed from the flags and the data. Collective (--standardize sums over
// the ranks); rank 0 warns of constant features.
Standardization input_transform(const Communicator& comm, const Config& config, const TrainingSet& set,
                                const Standardization& saved);

// Applies it in place to the float shard (compact and streamed features are
// converted per batch instead) and to the validation set.
void apply_input_transform(const Standardization& transform, TrainingSet* set);

}  // namespace nn_dist
