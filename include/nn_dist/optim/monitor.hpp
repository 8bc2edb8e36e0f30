// The value watched at epoch ends (--monitor) and early stopping on it, as
// Keras' EarlyStopping(patience, min_delta) decides: a pure state stepped once
// per epoch, saved in checkpoints so a resumed run stops where an
// uninterrupted one does. No MPI, no I/O.
#pragma once

#include <cstdint>
#include <string>

#include "nn_dist/common/name_table.hpp"

namespace nn_dist {

enum class Monitor { kValLoss, kValAccuracy, kLoss };

const NameTable<Monitor>& monitor_names();
Monitor parse_monitor(const std::string& name);  // throws Error naming --monitor
std::string monitor_name(Monitor monitor);
// Whether larger is better (accuracy: Keras' mode 'max', torch's 'max').
bool monitor_maximizes(Monitor monitor);
// Whether the value needs validation data.
bool monitor_needs_validation(Monitor monitor);

struct EarlyStoppingState {
  double best = 0;         // the best value so far (+-inf before the first epoch)
  int64_t best_epoch = 0;  // its epoch (1-based); 0: none yet
  long wait = 0;           // epochs since the best without an improvement
};

// The state before the first epoch: best = +inf (or -inf with maximize).
EarlyStoppingState early_stopping_start(bool maximize);

// Epoch `epoch` (1-based) ended with `value`. An improvement is a value better
// than best by more than min_delta; it resets wait, else wait counts up.
// Returns whether the value improved (the epoch is the new best).
bool early_stopping_step(bool maximize, double min_delta, int64_t epoch, double value, EarlyStoppingState* state);

// Keras' stop: wait reached patience, after the first epoch.
inline bool early_stopping_done(const EarlyStoppingState& state, long patience, int64_t epoch) {
  return patience > 0 && state.wait >= patience && epoch > 1;
}

}  // namespace nn_dist
