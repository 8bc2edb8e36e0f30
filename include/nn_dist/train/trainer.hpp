// The training loop: setup agreed across ranks (files, data, where the run
// starts, the model), then epochs of synchronous data-parallel SGD steps,
// validation, metrics and checkpoints. Each job has its part (run_files,
// training_set, input_transform, resume_point, model_plan, model_state,
// checkpointer, stop_request, reporter, metrics_file); the trainer wires them
// and keeps the epoch and the step.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/common/clock.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/block_source.hpp"
#include "nn_dist/train/checkpointer.hpp"
#include "nn_dist/train/data.hpp"
#include "nn_dist/train/metrics_file.hpp"
#include "nn_dist/train/model_state.hpp"
#include "nn_dist/train/reporter.hpp"
#include "nn_dist/train/resume_point.hpp"
#include "nn_dist/train/run_files.hpp"
#include "nn_dist/train/stop_request.hpp"
#include "nn_dist/train/training_set.hpp"

namespace nn_dist {

class Trainer {
 public:
  // Every setup error is agreed: all ranks throw the same AgreedError.
  Trainer(const Communicator& comm, const Config& config);
  ~Trainer();

  // Runs the remaining epochs (or --max-steps), or until a stop signal (see
  // stop_exit_code()). Returns the last complete epoch's result.
  EpochResult run();
  // After run(): the exit code a stop signal asks for (kResumeExitCode once
  // the checkpoint is written; 128 + the signal without a checkpoint path),
  // or 0 if the run was not stopped.
  int stop_exit_code() const { return stop_exit_code_; }

  // One epoch by hand (tests): start_epoch, then train_step for 0..steps_per_epoch()-1.
  void start_epoch(int64_t epoch);
  // One synchronous step (one update: --accumulate-steps micro-batches) on
  // step `step` of the epoch; false once --max-steps is reached.
  bool train_step(long step);
  long steps_per_epoch() const { return steps_per_epoch_; }
  double peak_lr() const { return peak_lr_; }  // --lr after --lr-scaling

  const Layout& layout() const { return model_.mlp->layout(); }
  // A copy of the current parameters.
  FlatBuffer params() const { return FlatBuffer(model_.params_data, model_.params_data + layout().total()); }
  int64_t global_step() const { return global_step_; }

 private:
  enum class EpochEnd { kNext, kLast, kStopped };  // go on; the run's last epoch; stopped by a signal

  // The model from the start point, in steps: its buffers, every rank with
  // rank 0's first parameters, the checkpoint folder claimed, the gradient
  // sum, the metrics file, the banner.
  void build_model(ResumePoint* start);
  void initialise_parameters(ResumePoint* start);
  // --early-stopping's and the plateau's states: the checkpoint's, or fresh.
  void start_watching(ResumePoint* start);
  // --dropout: the rates of the model's hidden layers (errors agreed), and the mask export hook.
  void set_up_dropout();
  void export_masks(long n, const int64_t* ids);  // after forward(): the masks of its n samples
  int64_t last_step() const;  // the last step this run may take

  EpochEnd train_epoch(int64_t epoch, EpochResult* result);
  // After a complete epoch (done: 1-based): its checkpoint, and a stop.
  EpochEnd finish_epoch(int64_t done, bool stopping);
  EpochResult epoch_result(int64_t epoch, double seconds, double count_before);
  // A complete epoch's monitored value steps early stopping and the plateau
  // (every rank alike: the value is a sum over the ranks). Returns whether it is the best so far.
  bool watch(EpochResult* r);
  // The epoch (done: 1-based) was the best so far: best.h5 (--checkpoint-dir), or --restore-best's copy.
  void keep_best(int64_t done);
  // The state to save after `epoch_step` steps of epoch `epoch` (see save_checkpoint).
  TrainingState training_state(int64_t epoch, int64_t epoch_step) const;
  void evaluate(double* loss, double* accuracy);
  // Saves the state after `epoch_step` steps of epoch `epoch` (0-based); at
  // an epoch's end, epoch + 1 and 0. Collective: rank 0 writes.
  void save_checkpoint(int64_t epoch, int64_t epoch_step);
  // The stop a signal asked for: checkpoint (unless done), message, exit code.
  void stop_on_signal(int64_t epoch, int64_t epoch_step, bool saved);

  // The step's parts (train_step).
  void own_stats(Clock::time_point now, double* stats);  // this rank's stop and checkpoint values
  // The step's micro-batches (--accumulate-steps; one without it), each
  // loaded, forward and backward, the first's gradient overwriting the
  // buffer and the others' added to it in their backprop. Sets marks'
  // parts (summed), and *nonfinite_feature once a loss is not finite.
  void accumulate(long step, StepMarks* marks, long* nonfinite_feature);
  // --reproducible: forward, loss and backward block by block, each block's
  // gradient into its own buffer (the same on any rank), then the exact sum.
  // Returns the time spent forward (the rest of it was backward).
  Clock::duration step_blocks(long step, long n, Clock::time_point now);
  const double* sum_and_update(double* optimizer_seconds);
  // --clip-grad-norm: the whole sum first (its norm), then the clipped update.
  void sum_clip_and_update(bool finite, double count, double* optimizer_seconds);
  // The optimizer's update of [begin, end) from the gradient sums (first,
  // plus second if not null) times scale; with bf16 products, the weights'
  // packing for them too (Mlp::pack_weights).
  void update(const float* first, const float* second, float scale, std::size_t begin, std::size_t end);
  // nonfinite_feature: one of this rank's features beyond float's range, or -1.
  [[noreturn]] void fail_not_finite(long nonfinite_feature, double loss) const;
  // --reproducible: a step's loss sum too large for on_grid()'s exact sums (once).
  void warn_loss_off_grid(double loss);

  const Communicator& comm_;
  Config config_;
  RunFiles files_;
  TrainingSet data_;                 // the validation set stays here; the shard moves into source_
  Standardization transform_;        // the input transform (saved in checkpoints); empty: raw features
  DataNames names_;                  // rank 0: the names the model is trained with (saved in checkpoints)
  std::unique_ptr<Minibatches> source_;
  BlockSource* blocks_ = nullptr;    // --reproducible: source_ as the block source; else null
  long steps_per_epoch_ = 0;
  long loads_per_step_ = 1;   // the source's batches per step: --accumulate-steps (--reproducible: 1)
  long loads_per_epoch_ = 0;  // the most any rank loads in an epoch
  ModelState model_;
  int64_t start_epoch_ = 0, global_step_ = 0;
  int64_t resume_epoch_step_ = 0;  // a mid-epoch resume continues the first epoch here ...
  EpochSums resume_epoch_sums_;    // ... with the sums of its steps before
  long global_batch_ = 0;          // samples per step over all ranks (every micro-batch)
  double peak_lr_ = 0;             // --lr scaled for global_batch_ (--lr-scaling)
  double step_lr_ = 0;             // the lr of the last step taken
  double grad_norm_ = 0;           // --clip-grad-norm: the last step's gradient norm before clipping
  struct SummedSlice {             // a slice of the summed gradient, as GradientSync::wait hands it over
    std::size_t begin, end;
    const float* first;
    const float* second;
  };
  std::vector<SummedSlice> slices_;  // --clip-grad-norm: capacity for every slice of a step, reserved once
  int64_t epoch_ = 0;              // the epoch being trained (0-based), for the schedule
  EpochSums epoch_sums_;           // over the epoch's steps so far
  // --early-stopping and --lr-schedule plateau: their states after the last complete epoch.
  EarlyStoppingState early_stopping_;
  PlateauState plateau_;
  bool early_stopped_ = false;     // early stopping ends the run after this epoch
  FlatBuffer best_params_;         // rank 0, --restore-best: the best epoch's parameters
  StopRequest stop_;               // what the last step's sum said
  int stop_exit_code_ = 0;
  StepTimes times_;
  bool dropout_ = false;  // some hidden layer drops units in training
  bool loss_grid_warned_ = false;  // --reproducible: warn_loss_off_grid has spoken
  struct CloseFile {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, CloseFile> mask_file_;  // NN_DIST_DROPOUT_MASKS (a test hook), or null
  Checkpointer checkpointer_;
  Reporter reporter_;
  MetricsFile metrics_;
};

}  // namespace nn_dist
