// Writing the run's checkpoints on rank 0, each bounded by the watchdog, and
// the folder of numbered checkpoints: claimed for this run before the first
// save, pruned after each.
#include "nn_dist/train/checkpointer.hpp"

#include "nn_dist/io/checkpoint_dir.hpp"
#include "nn_dist/parallel/watchdog.hpp"

namespace nn_dist {

Checkpointer::Checkpointer(const Communicator& comm, const Config& config, const RunFiles& files)
    : comm_(comm), config_(config), files_(files) {}

void Checkpointer::start_run(const std::string& resumed_id, int64_t first_step, int64_t last_step) {
  // A fresh run, or one resumed from a file without an id, gets a new one.
  if (comm_.root()) run_id_ = resumed_id.empty() ? new_run_id() : resumed_id;
  comm_.agreed([&] {
    if (!comm_.root() || files_.checkpoint_dir.empty()) return;
    const std::string what = "--checkpoint-dir " + config_.checkpoint_dir;
    claim_checkpoint_dir(files_.checkpoint_dir, what, run_id_, first_step, last_step);
    // Refused now, not at the first improvement: another run's best model is never replaced.
    if (config_.early_stopping > 0) require_own_or_absent(files_.checkpoint_dir + "/" + kBestCheckpointName, what, run_id_);
    note_removed(remove_stale_temporaries(files_.checkpoint_dir, [](const std::string& name) {
      return is_checkpoint_name(name) || name == kBestCheckpointName;
    }));
  });
}

void Checkpointer::save(TrainingState state, const Mlp<float>& mlp, const float* params, Optimizer& optimizer) {
  // Rank 0 bounds its own write by the timeout (hung I/O); the others know
  // from the step's sum that it writes, and wait up to twice as long.
  watchdog::Wait wait(comm_.root() ? "writing a checkpoint" : "waiting for rank 0 to write a checkpoint",
                      comm_.root() ? 1.0 : 2.0);
  comm_.agreed([&] {
    if (!comm_.root()) return;
    state.run_id = run_id_;
    if (files_.checkpoint_dir.empty()) {
      write_checkpoint(files_.checkpoint, mlp.layout(), mlp.activation(), mlp.loss(), params, optimizer, state,
                       "--checkpoint " + config_.checkpoint);
    } else {
      save_numbered(state, mlp, params, optimizer);
    }
  });
  restart_clock();
  time_due_ = false;
}

void Checkpointer::save_best(TrainingState state, const Mlp<float>& mlp, const float* params, Optimizer& optimizer) {
  watchdog::Wait wait(comm_.root() ? "writing best.h5" : "waiting for rank 0 to write best.h5", comm_.root() ? 1.0 : 2.0);
  comm_.agreed([&] {
    if (!comm_.root()) return;
    state.run_id = run_id_;
    write_into_dir(files_.checkpoint_dir + "/" + kBestCheckpointName, state, mlp, params, optimizer);
  });
}

void Checkpointer::write_into_dir(const std::string& target, const TrainingState& state, const Mlp<float>& mlp,
                                  const float* params, Optimizer& optimizer) {
  const std::string what = "--checkpoint-dir " + config_.checkpoint_dir;
  require_distinct_files(files_.inputs, {{"--checkpoint-dir", target}}, {{"--checkpoint-dir", "--resume"}});
  require_own_or_absent(target, what, run_id_);
  write_checkpoint(target, mlp.layout(), mlp.activation(), mlp.loss(), params, optimizer, state, what);
}

void Checkpointer::save_numbered(const TrainingState& state, const Mlp<float>& mlp, const float* params,
                                 Optimizer& optimizer) {
  const std::string what = "--checkpoint-dir " + config_.checkpoint_dir;
  write_into_dir(files_.checkpoint_dir + "/" + checkpoint_file_name(state.global_step), state, mlp, params, optimizer);
  // The run's own older checkpoints go (the one resumed from too); no other input, no other run's file.
  std::vector<NamedPath> protect;
  for (const NamedPath& in : files_.inputs) {
    if (in.flag != "--resume") protect.push_back(in);
  }
  prune_checkpoints(files_.checkpoint_dir, what, run_id_, state.global_step, config_.keep_checkpoints, protect);
}

std::string Checkpointer::saved_where(int64_t global_step) const {
  if (!enabled()) return "no checkpoint (no --checkpoint or --checkpoint-dir was given)";
  if (config_.checkpoint_dir.empty()) return "checkpoint " + config_.checkpoint + " written";
  return "checkpoint " + config_.checkpoint_dir + "/" + checkpoint_file_name(global_step) + " written";
}

}  // namespace nn_dist
