// --monitor's names and Keras' EarlyStopping decision (keras/callbacks.py:
// _is_improvement is monitor_op(current - min_delta, best) with min_delta's
// sign flipped for 'min'; wait += 1, reset to 0 on an improvement).
#include "nn_dist/optim/monitor.hpp"

#include <limits>

namespace nn_dist {

const NameTable<Monitor>& monitor_names() {
  static const NameTable<Monitor> table(
      "--monitor", {{Monitor::kValLoss, "val_loss"}, {Monitor::kValAccuracy, "val_accuracy"}, {Monitor::kLoss, "loss"}});
  return table;
}

Monitor parse_monitor(const std::string& name) { return monitor_names().parse(name); }

std::string monitor_name(Monitor monitor) { return monitor_names().name(monitor); }

bool monitor_maximizes(Monitor monitor) { return monitor == Monitor::kValAccuracy; }

bool monitor_needs_validation(Monitor monitor) { return monitor != Monitor::kLoss; }

EarlyStoppingState early_stopping_start(bool maximize) {
  EarlyStoppingState s;
  s.best = maximize ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  return s;
}

bool early_stopping_step(bool maximize, double min_delta, int64_t epoch, double value, EarlyStoppingState* s) {
  ++s->wait;
  const bool improved = maximize ? value - min_delta > s->best : value + min_delta < s->best;
  if (!improved) return false;
  s->best = value;
  s->best_epoch = epoch;
  s->wait = 0;
  return true;
}

}  // namespace nn_dist
