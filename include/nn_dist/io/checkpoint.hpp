// Checkpoint files (HDF5). /model holds W1, b1, ... as float32 (d_{l+1}, d_l)
// and (d_{l+1}) with attributes sizes, activation (leaky_relu: and leaky_slope), loss; /optimizer and
// /training hold what a bit-exact resume needs. Written atomically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/io/names.hpp"
#include "nn_dist/math/activation.hpp"
#include "nn_dist/math/loss.hpp"
#include "nn_dist/model/layout.hpp"
#include "nn_dist/model/standardization.hpp"
#include "nn_dist/optim/monitor.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/optim/schedule.hpp"

namespace nn_dist {

// The (loss, correct, count) sums over the steps of an epoch taken so far,
// summed over the ranks: an epoch's line divides them by count.
struct EpochSums {
  double loss = 0;     // summed per-sample losses
  double correct = 0;  // correctly classified samples (classification only)
  double count = 0;    // samples
};

struct TrainingState {
  int64_t epoch = 0;        // completed epochs
  int64_t global_step = 0;  // updates taken
  uint64_t seed = 0;        // shuffles are a function of (seed, epoch, rank)
  int64_t ranks = 1;
  std::string options;      // the run's options, INI text
  // Mid-epoch checkpoints: the steps taken in epoch `epoch` (0-based; 0 at an
  // epoch's end) and the sums over them; a resume continues that epoch at
  // step epoch_step. Files without them: 0.
  int64_t epoch_step = 0;
  EpochSums epoch_sums;
  int64_t global_batch = 0;  // samples per step over all ranks (0: not recorded)
  int64_t accumulate_steps = 1;  // micro-batches per step on each rank (files without it: 1)
  int64_t samples = 0;       // training samples (0: not recorded)
  std::string sample_order;  // Minibatches::sample_order() ("": not recorded)
  std::string precision;     // of the products: f32 or bf16 ("": not recorded, f32)
  // The learning-rate flags, --lr and the peak lr it scaled to (files written
  // before schedules were recorded have none: has_schedule false).
  bool has_schedule = false;
  ScheduleOptions schedule;
  double lr = 0, lr_peak = 0;
  // --standardize: written to /preprocess (mean, scale: float64, one per input feature).
  Standardization standardization;
  // The feature and class names the model was trained with: written to
  // /model/feature_names and /model/label_names, each when known.
  DataNames names;
  // --early-stopping and --lr-schedule plateau: the value they watch and their
  // states after the last complete epoch (written only when in use).
  bool has_early_stopping = false, has_plateau = false;
  Monitor monitor = Monitor::kLoss;
  EarlyStoppingState early_stopping;
  PlateauState plateau;
  // --restore-best: the best epoch's parameters (a layout's total), written
  // to /best beside /model so that a resumed run still has them; null: none.
  const float* best_params = nullptr;
  // The run the checkpoint belongs to: made when a run starts fresh, kept by
  // every --resume of it (see checkpoint_dir.hpp). "": files written before
  // runs had ids, or by other tools.
  std::string run_id;
};

struct CheckpointModel {
  std::vector<long> sizes;
  std::string activation;
  double leaky_slope = kDefaultLeakySlope;  // leaky_relu's, from the file (others: the default, unused)
  std::string loss;
  DataNames names;  // empty lists: unnamed (files written before names were recorded, or without them)
};

// Builds the whole checkpoint in memory, writes it to a temporary file beside
// path, fsyncs it, then renames it over path: path is either the old or the
// new file, and a full disk is one clear Error naming `what` (default
// "--checkpoint <path>") with the old file untouched.
void write_checkpoint(const std::string& path, const Layout& layout, const ActivationFn& hidden, Loss loss,
                      const float* params, Optimizer& optimizer, const TrainingState& state,
                      const std::string& what = "");

// Every checkpoint nn_dist writes starts with a 512-byte HDF5 user block
// (HDF5 readers skip it): a text header with the file's length and a 64-bit
// checksum of everything after the header. Throws Error naming `what` if the
// file is truncated or its bytes do not match the checksum. A file without
// the header (written by another tool, e.g. h5py) passes unchecked; returns
// whether the file carried one.
bool verify_checkpoint_file(const std::string& path, const std::string& what);

// The run id in a checkpoint's header ("" if the file has none or cannot be
// read). Only the header is read: even a truncated or damaged file names its run.
std::string checkpoint_run_id(const std::string& path);

// A new run's id: 16 hex digits from the system's random source.
std::string new_run_id();

// The readers check everything: every tensor's exact shape against 'sizes',
// floating-point type and finite values; every attribute's type and range;
// both HDF5 string forms. Each throws Error naming `what` and the item at fault.
// Reads /model's attributes and names; throws Error naming `what` if path is
// not a checkpoint or fails verify_checkpoint_file.
CheckpointModel read_checkpoint_model(const std::string& path, const std::string& what);
// Reads /model's tensors into params (layout.total() elements).
void read_checkpoint_params(const std::string& path, const std::string& what, const Layout& layout, float* params);
// Reads /preprocess (empty if the checkpoint has none); `features` is the
// model's input width, which mean and scale must match.
Standardization read_checkpoint_standardization(const std::string& path, const std::string& what, long features);
// Reads /best's tensors (--restore-best) into params; false if the file has none.
bool read_checkpoint_best(const std::string& path, const std::string& what, const Layout& layout, float* params);
// Reads /optimizer and /training for --resume.
// /training's `precision` (f32 or bf16), or "" when the file does not record one.
std::string read_checkpoint_precision(const std::string& path, const std::string& what);
TrainingState read_checkpoint_state(const std::string& path, const std::string& what, const Layout& layout,
                                    Optimizer& optimizer);

}  // namespace nn_dist
