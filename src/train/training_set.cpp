// Reading one rank's training data: the dataset inspected, the loss chosen,
// the shard read (or scanned, for streaming) within this node's memory, the
// classes agreed, the validation set split off or read, and the batch fixed.
#include "nn_dist/train/training_set.hpp"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>

#include "nn_dist/common/text.hpp"
#include "nn_dist/train/block_source.hpp"
#include "nn_dist/train/hold_out.hpp"
#include "nn_dist/train/memory.hpp"
#include "nn_dist/train/stream.hpp"

namespace nn_dist {

namespace {

// The training files as one dataset, and the loss their targets call for.
void inspect_training_data(const Communicator& comm, const Config& config, TrainingSet* set) {
  const int p = comm.size();
  comm.agreed([&] {
    set->info = inspect_datasets(config.data_files, "--data", config.x_dataset, config.y_dataset);
    if (set->info.samples < p) {
      throw Error(set->info.what + ": " + std::to_string(set->info.samples) + " sample(s) cannot be split over " +
                  std::to_string(p) + " ranks (need at least one per rank)");
    }
    if (config.loss == "auto") {
      set->loss = set->info.integer_targets ? Loss::kSoftmax : Loss::kMse;
    } else {
      set->loss = parse_loss(config.loss);
    }
    const long g = config.global_batch_size, k = config.accumulate_steps;
    if (g > 0 && g < p) {
      throw Error("--global-batch-size " + std::to_string(g) + ": must be at least the " + std::to_string(p) +
                  " ranks");
    }
    // Without accumulation a rank may take one sample more; every rank's micro-batches are of one size.
    if (g > 0 && k > 1 && g % (k * p) != 0) {
      throw Error("--global-batch-size " + std::to_string(g) + ": must be a multiple of --accumulate-steps " +
                  std::to_string(k) + " x " + std::to_string(p) + " ranks = " + std::to_string(k * p));
    }
  });
}

// This rank's shard: read into memory, or (streaming) scanned once, so every
// value and label is checked now and reads during training cannot fail.
// Streaming only when asked for: a shard too big for memory is an error that
// suggests it (streaming a file whose size is absurd would start a pass of
// days rather than fail).
void read_training_shard(const Communicator& comm, const Config& config, TrainingSet* set) {
  const double per_rank = memory_per_rank(comm.node_size());
  shard_range(set->info.samples, comm.size(), comm.rank(), &set->offset, &set->count);
  set->streaming = config.cache_mb > 0 && !config.reproducible;
  // --reproducible reads each step's rows from anywhere in the file during
  // training (block_source.hpp): the shard is only checked here, not kept.
  set->scanned = set->streaming || config.reproducible;
  // Setup passes read blocks of a quarter of the cache: within the memory bound too.
  if (config.cache_mb > 0) {
    set->scan_rows = std::max(1L, static_cast<long>(config.cache_mb * (1 << 20) / 4 /
                                                    stream_row_bytes(set->info, set->loss)));
  }
  comm.agreed([&] {
    if (set->streaming && config.val_split > 0) {
      throw Error("--val-split: cannot hold out samples from a streamed dataset (--cache-mb); give --val");
    }
    if (set->scanned) {
      long& max_label = set->targets.max_label;
      scan_shard(set->info, set->offset, set->count, set->loss, set->scan_rows,
                 [&](const Shard&, const Targets& t) { max_label = std::max(max_label, t.max_label); });
      return;
    }
    try {
      require_memory(shard_bytes(set->info, set->count), per_rank, comm.node_size(),
                     set->info.what + ": this rank's " + std::to_string(set->count) + " samples x " +
                         std::to_string(set->info.features) + " features");
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; or stream the data, holding a part in memory: --cache-mb " +
                  std::to_string(std::max(16L, static_cast<long>(per_rank / 4 / (1 << 20)))));
    }
    set->shard = read_shard(set->info, set->offset, set->count, /*compact=*/true);
    set->targets = make_targets(set->info, set->shard, set->loss);
  });
}

// --val-split: this rank's held-out samples become its validation set. The
// counts over all ranks are agreed: no rank may be left without training samples.
void hold_out_validation(const Communicator& comm, const Config& config, TrainingSet* set) {
  HoldOutSplit split = hold_out(set->shard, set->targets, set->info.features, set->info.x_width, config.seed,
                                config.val_split);
  double kept = static_cast<double>(split.train.count), held = static_cast<double>(split.val_x.cols());
  comm.sum(&kept, 1);
  comm.sum(&held, 1);
  const long fewest = comm.min(split.train.count);
  comm.agree(fewest > 0 && held > 0
                 ? ""
                 : "--val-split " + fmt("%g", config.val_split) + ": leaves " +
                       (held == 0 ? std::string("no validation sample") : "a rank without training samples") +
                       " out of " + std::to_string(set->info.samples) + " samples");
  if (comm.root() && !config.quiet) {
    std::printf("nn_dist: --val-split %g: %.0f of the %ld samples held out for validation, %.0f for training\n",
                config.val_split, held, set->info.samples, kept);
  }
  set->info.samples = static_cast<long>(kept);
  set->shard = std::move(split.train);
  set->targets = std::move(split.train_targets);
  set->val_x = std::move(split.val_x);
  set->val_targets = std::move(split.val_targets);
  set->has_val = true;
}

// --val: this rank's share of another file, which must fit the training data.
void read_validation_file(const Communicator& comm, const Config& config, TrainingSet* set) {
  Shard vshard;
  comm.agreed([&] {
    const std::string what = "--val " + config.val;
    const DatasetInfo& train = set->info;
    DatasetInfo info = inspect_dataset(config.val, what, config.x_dataset, config.y_dataset);
    if (info.features != train.features) {
      throw Error(what + ": has " + std::to_string(info.features) + " features but the training data has " +
                  std::to_string(train.features));
    }
    require_same_names(info.names, what, train.names, train.what);
    if (set->loss == Loss::kMse && info.target_width != train.target_width) {
      throw Error(what + ": has " + std::to_string(info.target_width) + " target columns but the training data has " +
                  std::to_string(train.target_width));
    }
    long offset = 0, count = 0;
    // --reproducible evaluates in whole blocks, each the same on any rank count.
    if (config.reproducible) {
      block_shard_range(info.samples, config.block_size, comm.size(), comm.rank(), &offset, &count);
    } else {
      shard_range(info.samples, comm.size(), comm.rank(), &offset, &count);
    }
    require_memory(shard_bytes(info, count), memory_per_rank(comm.node_size()), comm.node_size(),
                   what + ": this rank's " + std::to_string(count) + " samples x " + std::to_string(info.features) +
                       " features");
    vshard = read_shard(info, offset, count);
    set->val_targets = make_targets(info, vshard, set->loss);
    if (set->loss == Loss::kSoftmax && set->val_targets.max_label >= set->classes) {
      throw Error(what + ": label " + std::to_string(set->val_targets.max_label) +
                  " is not a class of the training data (0.." + std::to_string(set->classes - 1) + ")");
    }
  });
  set->val_x = std::move(vshard.x);
  set->has_val = true;
}

// --reproducible: every rank takes the same number of whole blocks of every
// global batch, so a global batch and its blocks do not depend on the rank count.
// With --accumulate-steps K the step's global batch is K times as many blocks,
// read at once and backpropagated block by block as always (each block's
// gradient is kept for the exact sum): K micro-batches of whole blocks each.
void reproducible_batch(const Communicator& comm, const Config& config, TrainingSet* set) {
  const long p = comm.size(), m = config.block_size, k = config.accumulate_steps;
  const bool global = config.global_batch_size > 0;
  const long g = global ? config.global_batch_size : k * config.batch_size * p;
  const std::string accumulated = k > 1 ? "--accumulate-steps " + std::to_string(k) + " x " : "";
  comm.agree(g % (k * m * p) == 0
                 ? ""
                 : "--reproducible: the global batch " + std::to_string(g) +
                       (global ? " (--global-batch-size)"
                               : k > 1 ? " (--accumulate-steps x --batch-size x ranks)" : " (--batch-size x ranks)") +
                       " must be a multiple of " + accumulated + "--block-size " + std::to_string(m) + " x " +
                       std::to_string(p) + " ranks = " + std::to_string(k * m * p));
  set->global_blocks = g / m;
  set->step_batch = g / p;
  set->requested_batch = set->batch = g / (k * p);
}

// The shard in memory: as read (float32, or uint8/uint16 converted per
// batch), or with --precision bf16 a float32 shard kept as bf16 (half the
// memory, the same bits: see bf16_columns).
std::unique_ptr<Minibatches> memory_source(const Communicator& comm, const Config& config,
                                           const Standardization& transform, TrainingSet* set) {
  Shard& shard = set->shard;
  std::vector<int64_t> rows = std::move(shard.rows);
  if (rows.empty()) {  // the shard's rows are contiguous
    rows.resize(static_cast<std::size_t>(shard.count));
    std::iota(rows.begin(), rows.end(), static_cast<int64_t>(shard.offset));
  }
  CompactColumns compact;
  if (!shard.compact.empty()) {
    compact = {std::move(shard.compact), set->info.x_width, set->info.features, shard.count, transform};
  } else if (config.precision == Precision::kBf16) {
    bf16_columns(&shard.x, &compact);  // false: x stays float32
  }
  const int r = comm.rank();
  auto source = compact.bytes.empty()
                    ? std::make_unique<BatchSource>(std::move(shard.x), std::move(set->targets), set->batch,
                                                    config.shuffle, config.seed, r)
                    : std::make_unique<BatchSource>(std::move(compact), std::move(set->targets), set->batch,
                                                    config.shuffle, config.seed, r);
  source->set_sample_ids(std::move(rows));
  return source;
}

}  // namespace

TrainingSet load_training_set(const Communicator& comm, const Config& config) {
  TrainingSet set;
  inspect_training_data(comm, config, &set);
  read_training_shard(comm, config, &set);
  set.classes = comm.max(set.targets.max_label) + 1;
  set.classes = std::max<long>(set.classes, static_cast<long>(set.info.names.labels.size()));  // named, if not all seen
  if (config.val_split > 0) hold_out_validation(comm, config, &set);
  if (!config.val.empty()) read_validation_file(comm, config, &set);
  if (config.reproducible) {
    reproducible_batch(comm, config, &set);
    return set;
  }
  const long g = config.global_batch_size, p = comm.size(), r = comm.rank(), k = config.accumulate_steps;
  set.requested_batch = g > 0 ? g / (k * p) + (r < g % p ? 1 : 0) : config.batch_size;
  // A batch larger than the shard is the whole shard (full-batch steps): the
  // same sums, without buffers for samples that do not exist. So is a step's
  // K micro-batches, as one batch of K x the size would be.
  const long count = set.streaming ? set.count : set.shard.count;
  set.batch = std::min(set.requested_batch, count);
  set.step_batch = k >= (count + set.batch - 1) / set.batch ? count : k * set.batch;
  return set;
}

std::unique_ptr<Minibatches> make_minibatches(const Communicator& comm, const Config& config,
                                              const Standardization& transform, TrainingSet* set) {
  const bool quiet = config.quiet || !comm.root();
  const long k = config.accumulate_steps;
  if (set->step_batch < k * set->requested_batch && !quiet) {
    const bool global = config.global_batch_size > 0;
    const std::string accumulated = k > 1 && !global ? " x --accumulate-steps " + std::to_string(k) : "";
    std::printf("note: %s %ld%s is more than the %ld samples of rank 0: every step uses each rank's whole shard\n",
                global ? "--global-batch-size" : "--batch-size", global ? config.global_batch_size : config.batch_size,
                accumulated.c_str(), set->step_batch);
  }
  const int r = comm.rank();
  if (config.reproducible) {
    return std::make_unique<BlockSource>(set->info, set->info.samples, set->loss, transform, config.block_size,
                                         set->global_blocks, r, comm.size(), config.shuffle, config.seed);
  }
  if (!set->streaming) return memory_source(comm, config, transform, set);
  StreamShape shape;
  comm.agreed([&] {
    shape = stream_shape(config.cache_mb * (1 << 20), stream_row_bytes(set->info, set->loss), set->batch, set->count);
  });
  shape.in_step = one_cpu();
  auto stream = std::make_unique<StreamSource>(set->info, set->offset, set->count, set->loss, transform, set->batch,
                                               config.shuffle, config.seed, r, shape);
  if (!quiet) {
    const std::string how =
        !stream->direct()  ? "X copied through HDF5: filtered, converted or partly unwritten storage"
        : stream->chunks_a_row() == 1 ? "X read with pread, whole rows"
                                      : std::string(stream->batched() ? "X read with io_uring" : "X read with pread") +
                                            ", rows gathered from its chunks (" +
                                            std::to_string(stream->chunks_a_row()) + " a row)";
    std::printf("nn_dist: streaming: %.0f MiB of samples per rank at most, windows of %ld rows read in blocks of %ld "
                "(%s) by %s\n",
                config.cache_mb, shape.window_rows, shape.block_rows, how.c_str(),
                shape.in_step ? "the training thread between steps (rank 0 has one CPU)" : "a background thread");
  }
  return stream;
}

}  // namespace nn_dist
