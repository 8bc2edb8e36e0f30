// The training loop: setup agreed across ranks (data, model, checkpoint),
// then epochs of synchronous data-parallel SGD steps, validation, metrics
// and checkpoints.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/train/data.hpp"

namespace nn_dist {

struct EpochResult {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_accuracy = 0;
  double val_loss = 0, val_accuracy = 0;
  bool has_val = false;
  double samples_per_sec = 0, seconds = 0;
  double lr = 0;  // the lr of the epoch's last step
};

// Seconds spent in each part of the step, summed over the steps measured.
struct StepTimes {
  double data = 0, forward = 0, backward = 0, sync_test = 0, sync_wait = 0, optimizer = 0, total = 0;
  long steps = 0;
  double samples = 0;  // over all ranks
};

class Trainer {
 public:
  // Every setup error is agreed: all ranks throw the same AgreedError.
  Trainer(const Communicator& comm, const Config& config);
  ~Trainer();

  // Runs the remaining epochs (or --max-steps), or until a stop signal (see
  // stopped()). Returns the last complete epoch's result.
  EpochResult run();
  // After run(): the exit code a stop signal asks for (kResumeExitCode once
  // the checkpoint is written; 128 + the signal without a checkpoint path),
  // or 0 if the run was not stopped.
  int stop_exit_code() const { return stop_exit_code_; }

  // One epoch by hand (tests): start_epoch, then train_step for 0..steps_per_epoch()-1.
  void start_epoch(int64_t epoch);
  // One synchronous step on batch `step` of the epoch; false once --max-steps is reached.
  bool train_step(long step);
  long steps_per_epoch() const { return steps_per_epoch_; }
  double peak_lr() const { return peak_lr_; }  // --lr after --lr-scaling

  const Layout& layout() const { return mlp_->layout(); }
  // A copy of the current parameters.
  FlatBuffer params() const { return FlatBuffer(params_data_, params_data_ + layout().total()); }
  int64_t global_step() const { return global_step_; }

 private:
  // --resume auto becomes the newest readable checkpoint's path, or "" (a fresh start).
  void resolve_resume_auto();
  // Inputs are readable regular files; outputs can be written and overwrite no input.
  void check_files();
  void load_data();
  // --val-split: moves the held-out samples of this rank's shard into the validation set.
  void hold_out_validation(Shard* shard, Targets* targets);
  // The input transform: a checkpoint's /preprocess, or --standardize's
  // statistics (computed over all ranks) and --scale. Applied in place to
  // float shards and val_x_; compact shards convert per batch.
  void standardize_inputs(Shard* shard);
  // Throws Error naming the flag or label that makes the model too big for this node.
  void require_model_memory(const std::vector<long>& sizes, long max_batch, bool from_checkpoint) const;
  // The model, in steps: its layer widths (from the data and flags, or the
  // checkpoint's), its memory, its first parameters, where they live (the
  // gradient sum decides), the metrics file, the banner.
  void build_model();
  std::vector<long> model_sizes();
  std::string checkpoint_to_load() const;  // --resume or --init, or ""
  std::string checkpoint_flag() const;     // how errors name it: "--resume ck.h5"
  void allocate_model(const std::vector<long>& sizes);
  void initialise_parameters();
  // Rank 0, --checkpoint-dir: refuses a folder holding another run's
  // checkpoints or a file this run would write over (checkpoint_dir.hpp).
  void check_checkpoint_dir();
  // Rank 0: one note per leftover temporary file removed.
  void note_removed(const std::vector<std::string>& stale) const;
  void start_gradient_sum();
  void open_metrics();
  void print_banner() const;
  void evaluate(double* loss, double* accuracy);
  bool checkpointing() const { return !config_.checkpoint.empty() || !config_.checkpoint_dir.empty(); }
  // Whether a mid-epoch checkpoint is due after this step (--checkpoint-every-steps, --checkpoint-minutes).
  bool checkpoint_due() const;
  // Saves the state after `epoch_step` steps of epoch `epoch` (0-based); at
  // an epoch's end, epoch + 1 and 0. Collective: rank 0 writes.
  void save_checkpoint(int64_t epoch, int64_t epoch_step);
  // Mid-epoch resume needs the same ranks, global batch, data and sample order; refuses otherwise.
  void check_mid_epoch_resume(const TrainingState& state, long global_batch) const;
  // Rank 0, on --resume: one note naming the lr flags that differ from the checkpoint's.
  void note_schedule_changes(const TrainingState& state) const;
  // Rank 0, on --init/--resume: refuses a checkpoint whose feature or class
  // names differ from the data's; the model keeps the names either gives.
  void check_checkpoint_names(const DataNames& saved, const std::string& what);
  // The stop a signal asked for: checkpoint (unless done), message, exit code.
  void stop_on_signal(int64_t epoch, int64_t epoch_step, bool saved);
  void report(const EpochResult& r);
  // Rank 0: progress within the epoch (see --log-every-seconds).
  // step: the one just taken; first: the epoch's first step in this run (a resume starts later).
  void show_progress(int64_t epoch, long step, long first, std::chrono::steady_clock::time_point epoch_start,
                     double count_before);
  void write_metrics(const EpochResult& r);
  void print_profile() const;

  const Communicator& comm_;
  Config config_;
  Activation activation_ = Activation::kRelu;
  Loss loss_ = Loss::kSoftmax;
  DatasetInfo train_info_;
  std::unique_ptr<Minibatches> source_;
  Matrix<float> val_x_;
  Standardization standardization_;  // empty: raw features
  DataNames names_;                  // the names the model is trained with (saved in checkpoints)
  bool streaming_ = false;            // --cache-mb (or a shard too big for memory): StreamSource
  long stream_offset_ = 0, stream_count_ = 0;  // this rank's rows
  long stream_scan_rows_ = 4096;               // rows per read in the setup passes
  Targets val_targets_;
  bool has_val_ = false;
  long classes_ = 0;
  long steps_per_epoch_ = 0;
  std::unique_ptr<Mlp<float>> mlp_;
  FlatBuffer params_, grad_;
  float* params_data_ = nullptr;  // params_, or the node's shared copy (see GradientSync::shared_buffer)
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<GradientSync> sync_;
  int64_t start_epoch_ = 0, global_step_ = 0;
  int64_t resume_epoch_step_ = 0;             // a mid-epoch resume continues the first epoch here
  double resume_epoch_sums_[3] = {0, 0, 0};   // ... with the sums of its steps before
  long global_batch_ = 0;                     // samples per step over all ranks
  double peak_lr_ = 0;                        // --lr scaled for global_batch_ (--lr-scaling)
  double step_lr_ = 0;                        // the lr of the last step taken
  int64_t epoch_ = 0;                         // the epoch being trained (0-based), for the schedule
  double epoch_sums_[3] = {0, 0, 0};  // loss, correct, count over the epoch
  // What the last step's sum said: ranks with a stop signal, their summed
  // seconds since it, and whether a rank's checkpoint clock ran out.
  double stop_ranks_ = 0, stop_seconds_ = 0, stop_signals_ = 0;
  bool time_due_ = false;
  std::chrono::steady_clock::time_point last_checkpoint_, stop_seen_;
  int stop_exit_code_ = 0;
  bool terminal_ = false;                                   // rank 0's stdout is a terminal
  std::chrono::steady_clock::time_point last_progress_;
  bool progress_shown_ = false;                             // a self-updating line is on the terminal
  StepTimes times_;
  std::string checkpoint_path_, metrics_path_;  // rank 0: the outputs, symlinks resolved
  std::string checkpoint_dir_;                  // rank 0: --checkpoint-dir, resolved
  std::string run_id_;                          // rank 0: the run the checkpoints belong to (TrainingState::run_id)
  std::vector<NamedPath> inputs_;               // every input file, which no output may replace
  TextFileWriter metrics_;
};

}  // namespace nn_dist
