// The run's checkpoints: when one is due (epoch ends, --checkpoint-every,
// --checkpoint-every-steps, --checkpoint-minutes), and saving it: rank 0
// writes --checkpoint, or a new numbered file in --checkpoint-dir and prunes
// the run's older ones (and --early-stopping's best.h5, never pruned). The run
// id in every file ties the folder to one run.
#pragma once

#include <string>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/common/clock.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/run_files.hpp"

namespace nn_dist {

class Checkpointer {
 public:
  // config and files: the run's, which must outlive this object.
  Checkpointer(const Communicator& comm, const Config& config, const RunFiles& files);

  // Whether the run saves checkpoints at all (--checkpoint or --checkpoint-dir).
  bool enabled() const { return !config_.checkpoint.empty() || !config_.checkpoint_dir.empty(); }

  // Rank 0: the run's id is resumed_id (a continuation is the same run), or a
  // new one. With --checkpoint-dir, refuses a folder holding another run's
  // checkpoints or a file this run would write over (steps after first_step,
  // up to last_step), and removes its leftover temporary files. Collective.
  void start_run(const std::string& resumed_id, int64_t first_step, int64_t last_step);

  // --checkpoint-minutes: whether this rank's clock ran out by `now`. The
  // step's sum tells every rank whether any rank's did (time_due).
  bool clock_ran_out(Clock::time_point now) const {
    return config_.checkpoint_minutes > 0 && seconds_between(last_save_, now) >= 60 * config_.checkpoint_minutes;
  }
  void set_time_due(bool due) { time_due_ = due; }
  // The clock starts with training.
  void restart_clock() { last_save_ = Clock::now(); }

  // Whether a checkpoint is due after the step that made global_step.
  bool due(int64_t global_step) const {
    return enabled() &&
           (time_due_ || (config_.checkpoint_every_steps > 0 && global_step % config_.checkpoint_every_steps == 0));
  }
  // Whether one is due at the end of epoch `done` (1-based).
  bool due_at_epoch_end(int64_t done, bool stopping, int64_t global_step) const {
    return enabled() &&
           (done % config_.checkpoint_every == 0 || done == config_.epochs || stopping || due(global_step));
  }

  // Saves `state` (its run id set here) with the model's parameters and the
  // optimizer state. Collective: rank 0 writes, the others wait for it.
  void save(TrainingState state, const Mlp<float>& mlp, const float* params, Optimizer& optimizer);

  // --checkpoint-dir with --early-stopping: writes `state` as the folder's
  // best.h5 (atomically, never over another run's file). Collective.
  void save_best(TrainingState state, const Mlp<float>& mlp, const float* params, Optimizer& optimizer);

  // What a stop saved at global_step: "checkpoint ck.h5 written", or "no checkpoint (...)".
  std::string saved_where(int64_t global_step) const;

 private:
  // Rank 0: writes `state` to target (a file in --checkpoint-dir) unless it is another run's.
  void write_into_dir(const std::string& target, const TrainingState& state, const Mlp<float>& mlp,
                      const float* params, Optimizer& optimizer);
  // Rank 0: writes into --checkpoint-dir, then prunes the run's older checkpoints.
  void save_numbered(const TrainingState& state, const Mlp<float>& mlp, const float* params, Optimizer& optimizer);

  const Communicator& comm_;
  const Config& config_;
  const RunFiles& files_;
  std::string run_id_;  // rank 0: the run the checkpoints belong to (TrainingState::run_id)
  Clock::time_point last_save_ = Clock::now();
  bool time_due_ = false;  // the last step's sum: a rank's --checkpoint-minutes clock ran out
};

}  // namespace nn_dist
