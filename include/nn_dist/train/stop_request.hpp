// A stop asked for by a signal (signals.hpp), as all ranks learn it: each
// rank adds what it received to the sum every step already makes, so every
// rank reads the same request after the same step, and the job stops there,
// with a checkpoint when it has somewhere to write one.
#pragma once

#include <cstdint>
#include <string>

#include "nn_dist/common/clock.hpp"

namespace nn_dist {

class StopRequest {
 public:
  // This rank's part of the step's sum: whether it received a stop signal,
  // the seconds since, and which (kStatStopRanks, kStatStopSeconds,
  // kStatStopSignals of `stats`).
  static void add_own(double* stats);
  // What the step's sum says: the same on every rank.
  void read(const double* sums);
  bool asked() const { return ranks_ > 0; }
  // The exit code: kResumeExitCode ("checkpointed, resume me") with a
  // checkpoint, else 128 + the signal (SIGTERM's if the ranks got different ones).
  int exit_code(bool checkpointed) const;
  // Rank 0's line: which signal reached how many of the ranks, where the run
  // stopped (global_step, after step epoch_step of epoch `epoch`, 0-based; at
  // an epoch's end epoch_step 0 and epoch the epochs done), what was saved,
  // how long after the signal, the exit code.
  struct Where {
    int64_t global_step = 0, epoch = 0, epoch_step = 0;
    long steps_per_epoch = 0;
  };
  std::string describe(int ranks, const Where& where, const std::string& saved, bool checkpointed) const;

 private:
  int signal() const;  // the signal, if every rank that received one received the same; else 0
  double ranks_ = 0;    // ranks with a stop signal
  double seconds_ = 0;  // their summed seconds since it, when the step was summed
  double signals_ = 0;  // their summed signal numbers
  Clock::time_point seen_;  // when the step's sum said so
};

}  // namespace nn_dist
