// The stop request carried by the step's sum: what each rank adds, what the
// sum means, and the line and exit code the job stops with.
#include "nn_dist/train/stop_request.hpp"

#include <csignal>
#include <cmath>

#include "nn_dist/common/text.hpp"
#include "nn_dist/parallel/gradient_sync.hpp"
#include "nn_dist/train/signals.hpp"

namespace nn_dist {

void StopRequest::add_own(double* stats) {
  const int signal = stop_signal();
  stats[kStatStopRanks] = signal != 0 ? 1.0 : 0.0;
  stats[kStatStopSeconds] = signal != 0 ? seconds_since_stop_signal() : 0.0;
  stats[kStatStopSignals] = signal;
}

void StopRequest::read(const double* sums) {
  ranks_ = sums[kStatStopRanks];
  seconds_ = sums[kStatStopSeconds];
  signals_ = sums[kStatStopSignals];
  if (ranks_ > 0) seen_ = Clock::now();
}

int StopRequest::signal() const {
  const double mean = signals_ / ranks_;
  return mean == std::floor(mean) ? static_cast<int>(mean) : 0;
}

int StopRequest::exit_code(bool checkpointed) const {
  if (checkpointed) return kResumeExitCode;
  const int s = signal();
  return 128 + (s != 0 ? s : SIGTERM);
}

std::string StopRequest::describe(int ranks, const Where& w, const std::string& saved, bool checkpointed) const {
  const double age = seconds_ / ranks_ + seconds_between(seen_, Clock::now());
  const std::string in_epoch = w.epoch_step == 0 ? "the end of epoch " + std::to_string(w.epoch)
                                                 : "step " + std::to_string(w.epoch_step) + " of " +
                                                       std::to_string(w.steps_per_epoch) + " in epoch " +
                                                       std::to_string(w.epoch + 1);
  const std::string where = "step " + std::to_string(w.global_step) + " (" + in_epoch + ")";
  return std::string("nn_dist: ") + signal_name(signal()) + " reached " + fmt("%g", ranks_) + " of " +
         std::to_string(ranks) + " rank(s); stopped after " + where + "; " + saved + "; exiting " + fmt("%.2f", age) +
         " s after the signal with code " + std::to_string(exit_code(checkpointed)) +
         (checkpointed ? " (resume me: --resume auto or --resume FILE)" : "");
}

}  // namespace nn_dist
