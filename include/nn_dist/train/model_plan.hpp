// The model a run trains, planned before anything large is allocated: its
// layer widths from the data and --hidden, and the check that training it
// fits this node's memory, naming the flag or label that makes it too big.
#pragma once

#include <vector>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/training_set.hpp"

namespace nn_dist {

// The outputs the loss needs: one per class (softmax), 1 (logistic), or one
// per target column (mse).
long output_width(const TrainingSet& set);

// The features, --hidden's widths, the outputs.
std::vector<long> planned_sizes(const Config& config, const TrainingSet& set);

// The batch the model's buffers hold: training and evaluation batches.
long model_batch(const TrainingSet& set);

// Throws Error unless parameters, gradients, optimizer state and a batch's
// activations for `sizes` and the hidden activation fit what this node gives
// each rank. from_checkpoint: the widths are --init's or --resume's, not the flags'.
void require_model_memory(const Communicator& comm, const Config& config, const TrainingSet& set,
                          const std::vector<long>& sizes, Activation hidden, bool from_checkpoint);

}  // namespace nn_dist
