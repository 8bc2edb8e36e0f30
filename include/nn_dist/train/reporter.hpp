// What rank 0 prints while training: the banner, progress within an epoch (a
// line that rewrites itself on a terminal, else a plain line every
// --log-every-seconds), one line per epoch, and --profile's table of step
// times with the BENCH_JSON line that scripts read. Other ranks print nothing.
#pragma once

#include <cstdint>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/common/clock.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/data.hpp"

namespace nn_dist {

struct EpochResult {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_accuracy = 0;
  double val_loss = 0, val_accuracy = 0;
  bool has_val = false;
  double samples_per_sec = 0, seconds = 0;
  double lr = 0;  // the lr of the epoch's last step
  int64_t best_epoch = -1;  // --early-stopping: the best epoch so far (1-based; -1: not tracked)
  double grad_norm = -1;  // --clip-grad-norm: the epoch's last step's gradient norm before clipping; else -1
};

// The moments that divide a step into the parts --profile reports.
struct StepMarks {
  Clock::time_point start, loaded, forward_done, backward_done, prefetched, done;
};

// Seconds spent in each part of the step, summed over the steps measured.
struct StepTimes {
  double data = 0, forward = 0, backward = 0, sync_test = 0, sync_wait = 0, optimizer = 0, total = 0;
  long steps = 0;
  double samples = 0;  // over all ranks

  // One step's parts (sync_test: seconds the sum was moved on during backprop;
  // optimizer: the updates made while the sums arrived; samples: over all ranks).
  void add(const StepMarks& m, double sync_test_seconds, double optimizer_seconds, double step_samples) {
    data += seconds_between(m.start, m.loaded) + seconds_between(m.backward_done, m.prefetched);
    forward += seconds_between(m.loaded, m.forward_done);
    backward += seconds_between(m.forward_done, m.backward_done) - sync_test_seconds;
    sync_test += sync_test_seconds;
    sync_wait += seconds_between(m.prefetched, m.done) - optimizer_seconds;
    optimizer += optimizer_seconds;
    total += seconds_between(m.start, m.done);
    steps += 1;
    samples += step_samples;
  }
};

class Reporter {
 public:
  // config: the run's, which must outlive this object.
  Reporter(const Communicator& comm, const Config& config);

  // The run in one line (and the gradient sum and the lr schedule in one
  // each); on stderr, a note that --allreduce none trains separate models.
  // batch: samples per rank per micro-batch (--accumulate-steps of them a step).
  void banner(const DatasetInfo& data, const Mlp<float>& mlp, const GradientSync& sync, long batch,
              long steps_per_epoch, double peak_lr, long global_batch) const;
  // A resumed run that has nothing left to train.
  void nothing_to_do(int64_t epochs_done) const;

  // Progress: the epoch (0-based) starts at `start` with step `first` (a
  // resume starts later), then after each step: `step` was just taken and
  // `samples` were trained in this epoch since `first`.
  void start_epoch(int64_t epoch, long first, long steps_per_epoch, Clock::time_point start);
  void progress(long step, double samples);

  void epoch_line(const EpochResult& r, bool classify);
  // --lr-schedule plateau cut the lr after an epoch.
  void lr_reduced(double from, double to) const;
  // --early-stopping ended the run after epoch `done` (1-based); also with --quiet.
  void early_stop(int64_t done, const EarlyStoppingState& state) const;
  // A resumed run that early stopping had already ended.
  void already_stopped(int64_t epochs_done, const EarlyStoppingState& state) const;
  // batch: samples per rank per micro-batch.
  void profile(const StepTimes& t, const Minibatches& source, long batch, const GradientSync& sync) const;

 private:
  const Communicator& comm_;
  const Config& config_;
  bool terminal_ = false;        // rank 0's output reaches a terminal
  bool progress_shown_ = false;  // a self-updating line is on the terminal
  int64_t epoch_ = 0;
  long first_ = 0, steps_per_epoch_ = 0;
  Clock::time_point epoch_start_, last_progress_;
};

}  // namespace nn_dist
