// Where a run starts: fresh (the flags' model, --seed, step 0), or from the
// checkpoint --init or --resume names. Rank 0 reads that checkpoint once and
// checks it against the data and flags (every rank agrees on its errors);
// one broadcast then gives every rank what it needs to build the model. The
// parameters and optimizer state stay on rank 0 until the model exists:
// they go out with the broadcast that starts every run, fresh or not, from
// rank 0's parameters (Trainer).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/model/standardization.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/training_set.hpp"

namespace nn_dist {

struct ResumePoint {
  // Every rank:
  std::vector<long> sizes;           // the model's layer widths
  ActivationFn activation;           // with leaky_relu's slope
  Standardization standardization;   // the checkpoint's /preprocess (empty: none stored, or a fresh start)
  int64_t epoch = 0;                 // --resume: completed epochs; else 0
  int64_t global_step = 0;
  int64_t epoch_step = 0;            // a mid-epoch checkpoint: the steps of epoch `epoch` already taken ...
  EpochSums epoch_sums;              // ... and their sums
  uint64_t seed = 0;                 // the shuffles' seed: --seed, or the resumed run's
  // --resume: the checkpoint's early-stopping and plateau states (has_*: it has them), the
  // value they watched, and the peak lr the plateau's lr was reduced from.
  bool has_early_stopping = false, has_plateau = false;
  Monitor monitor = Monitor::kLoss;
  EarlyStoppingState early_stopping;
  PlateauState plateau;
  double lr_peak = 0;
  // Rank 0 only:
  FlatBuffer best_params;            // --restore-best: the checkpoint's /best (empty: none)
  DataNames names;                   // the names the model is trained with (the data's, or the checkpoint's)
  FlatBuffer params;                 // the checkpoint's parameters (empty: a fresh start)
  std::unique_ptr<Optimizer> optimizer;  // --resume: the checkpoint's optimizer state (else null)
  TrainingState state;               // --resume: the state the checkpoint was saved with
};

// Reads the start. activation: --activation and --leaky-slope (a
// checkpoint's own replace them). Collective; errors are AgreedError naming
// the checkpoint or flag.
ResumePoint read_resume_point(const Communicator& comm, const Config& config, const TrainingSet& set,
                              const ActivationFn& activation);

// What the run resuming a checkpoint is, for check_continuation.
struct RunShape {
  int ranks = 1;
  long global_batch = 0;      // samples per step over all ranks
  long accumulate_steps = 1;  // --accumulate-steps
  long samples = 0;           // training samples
  long steps_per_epoch = 0;
  std::string sample_order;   // Minibatches::sample_order()
  double peak_lr = 0;         // --lr after --lr-scaling
  std::string precision = "f32";  // --precision
};

// Rank 0, on --resume: a mid-epoch checkpoint continues only the same run
// (ranks, global batch, data and sample order), else throws Error; notes a
// changed learning-rate schedule, another --accumulate-steps and, at an
// epoch's end, another rank count.
void check_continuation(const ResumePoint& point, const Config& config, const RunShape& run);

}  // namespace nn_dist
