// One rank's training data, read and checked on every rank with the errors
// agreed: its shard of the training set (in memory, or the rows a stream
// reads during training), the targets and classes, the validation set
// (--val, or the samples --val-split holds out), and the minibatches.
#pragma once

#include <memory>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/model/standardization.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/data.hpp"

namespace nn_dist {

struct TrainingSet {
  DatasetInfo info;            // the training set; samples: those trained on (after --val-split)
  Loss loss = Loss::kSoftmax;  // --loss, or auto's choice from the targets
  long classes = 0;            // softmax: the labels over all ranks, at least the named classes
  Shard shard;                 // this rank's samples (not read when streamed)
  Targets targets;             // their targets (streamed: only max_label)
  bool streaming = false;      // --cache-mb: rows [offset, offset + count) are read during training
  long offset = 0, count = 0;  // this rank's rows of the training set
  bool scanned = false;        // the shard was scanned, not kept (streaming, --reproducible)
  long scan_rows = 4096;       // rows per read in the setup passes over a scanned shard
  Matrix<float> val_x;         // (features, n) this rank's validation samples
  Targets val_targets;
  bool has_val = false;
  long requested_batch = 0;    // --batch-size, or this rank's part of --global-batch-size
  long batch = 0;              // this rank's samples per micro-batch: at most its whole shard
  long step_batch = 0;         // ... per step (--accumulate-steps micro-batches): at most its whole shard
  long global_blocks = 0;      // --reproducible: blocks of --block-size rows per global batch
};

// Reads and checks the training and validation data. Collective.
TrainingSet load_training_set(const Communicator& comm, const Config& config);

// The minibatches training reads: the shard (moved out of *set) or a stream.
// `transform` is applied per batch where the features stay compact or are
// streamed (float shards were transformed in place). Rank 0 notes a batch
// larger than its shard and how it streams. Collective.
std::unique_ptr<Minibatches> make_minibatches(const Communicator& comm, const Config& config,
                                              const Standardization& transform, TrainingSet* set);

}  // namespace nn_dist

