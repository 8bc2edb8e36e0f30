// Learning-rate schedules (constant, step, cosine, plateau), linear warmup and
// the scaling of --lr with the global batch, as pure functions of the step;
// the plateau's reductions as PyTorch's ReduceLROnPlateau makes them.
#include "nn_dist/optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

namespace {

constexpr double kPi = 3.14159265358979323846;

std::string number(double v) { return fmt("%.10g", v); }

std::string list(const std::vector<double>& values) {
  std::string s;
  for (double v : values) s += (s.empty() ? "" : ",") + number(v);
  return s.empty() ? "(none)" : s;
}

}  // namespace

const NameTable<LrSchedule>& lr_schedule_names() {
  static const NameTable<LrSchedule> table(
      "--lr-schedule", {{LrSchedule::kConstant, "constant"}, {LrSchedule::kStep, "step"}, {LrSchedule::kCosine, "cosine"},
                        {LrSchedule::kPlateau, "plateau"}});
  return table;
}

LrSchedule parse_lr_schedule(const std::string& name) { return lr_schedule_names().parse(name); }

std::string lr_schedule_name(LrSchedule schedule) { return lr_schedule_names().name(schedule); }

const NameTable<LrScaling>& lr_scaling_names() {
  static const NameTable<LrScaling> table(
      "--lr-scaling", {{LrScaling::kNone, "none"}, {LrScaling::kLinear, "linear"}, {LrScaling::kSqrt, "sqrt"}});
  return table;
}

LrScaling parse_lr_scaling(const std::string& name) { return lr_scaling_names().parse(name); }

std::string lr_scaling_name(LrScaling scaling) { return lr_scaling_names().name(scaling); }

std::vector<double> parse_decay_epochs(const std::string& text) {
  std::vector<double> epochs;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    double v = 0;
    if (!whole_number(item, &v) || !std::isfinite(v)) {
      throw Error("--lr-decay-epochs " + printable(text) + ": '" + printable(item) +
                  "' is not a number (expected e.g. --lr-decay-epochs 30,60,80)");
    }
    epochs.push_back(v);
  }
  if (epochs.empty() || text.back() == ',') {
    throw Error("--lr-decay-epochs '" + printable(text) + "': expected epochs separated by commas, e.g. 30,60,80");
  }
  return epochs;
}

void validate_schedule(const ScheduleOptions& o) {
  if (!(o.warmup_epochs >= 0) || !std::isfinite(o.warmup_epochs)) {
    throw Error("--warmup-epochs: must be a finite number not below 0, got " + number(o.warmup_epochs));
  }
  if (o.warmup_epochs > 0 && o.warmup_epochs >= static_cast<double>(o.epochs)) {
    throw Error("--warmup-epochs " + number(o.warmup_epochs) + ": must be below --epochs " + std::to_string(o.epochs));
  }
  if (!(o.decay_factor > 0 && o.decay_factor <= 1)) {
    throw Error("--lr-decay-factor: must be above 0 and at most 1, got " + number(o.decay_factor));
  }
  if (o.schedule == LrSchedule::kStep && o.decay_epochs.empty()) {
    throw Error("--lr-schedule step: needs --lr-decay-epochs (the epochs at which the lr is multiplied by "
                "--lr-decay-factor, e.g. 30,60,80)");
  }
  for (std::size_t i = 0; i < o.decay_epochs.size(); ++i) {
    if (!(o.decay_epochs[i] > 0)) {
      throw Error("--lr-decay-epochs " + list(o.decay_epochs) + ": epoch " + number(o.decay_epochs[i]) +
                  " must be above 0");
    }
    if (i > 0 && !(o.decay_epochs[i] > o.decay_epochs[i - 1])) {
      throw Error("--lr-decay-epochs " + list(o.decay_epochs) + ": the epochs must increase (" +
                  number(o.decay_epochs[i]) + " comes after " + number(o.decay_epochs[i - 1]) + ")");
    }
  }
  if (!(o.lr_min >= 0) || !std::isfinite(o.lr_min)) {
    throw Error("--lr-min: must be a finite number not below 0, got " + number(o.lr_min));
  }
  if (o.reference_batch < 1) {
    throw Error("--lr-reference-batch: must be a positive number of samples, got " + std::to_string(o.reference_batch));
  }
  if (o.plateau_patience < 0) {
    throw Error("--plateau-patience: must be a number of epochs not below 0, got " + std::to_string(o.plateau_patience));
  }
  if (!(o.plateau_factor > 0 && o.plateau_factor < 1)) {
    throw Error("--plateau-factor: must be above 0 and below 1, got " + number(o.plateau_factor));
  }
  if (!(o.plateau_min_lr >= 0) || !std::isfinite(o.plateau_min_lr)) {
    throw Error("--plateau-min-lr: must be a finite number not below 0, got " + number(o.plateau_min_lr));
  }
}

double peak_lr(double lr, const ScheduleOptions& o, long global_batch) {
  const double ratio = static_cast<double>(global_batch) / static_cast<double>(o.reference_batch);
  switch (o.scaling) {
    case LrScaling::kLinear: return lr * ratio;
    case LrScaling::kSqrt: return lr * std::sqrt(ratio);
    case LrScaling::kNone: break;
  }
  return lr;
}

void check_lr_min(const ScheduleOptions& o, double peak) {
  if (o.schedule == LrSchedule::kCosine && o.lr_min > peak) {
    throw Error("--lr-min " + number(o.lr_min) + ": is above the peak lr " + number(peak) +
                " (the cosine would rise, not decay)");
  }
}

double lr_at(const ScheduleOptions& o, double peak, int64_t step, long steps_per_epoch) {
  const double spe = static_cast<double>(steps_per_epoch);
  const double t = static_cast<double>(step) / spe;  // the fractional epoch
  double warm = 1;
  if (o.warmup_epochs > 0) warm = std::min(1.0, static_cast<double>(step + 1) / (o.warmup_epochs * spe));
  switch (o.schedule) {
    case LrSchedule::kConstant:
      return peak * warm;  // exactly peak without warmup
    case LrSchedule::kStep: {
      int decays = 0;
      for (double e : o.decay_epochs) decays += e <= t ? 1 : 0;
      return peak * warm * std::pow(o.decay_factor, decays);
    }
    case LrSchedule::kCosine: {
      const double span = static_cast<double>(o.epochs) - o.warmup_epochs;
      const double p = std::clamp((t - o.warmup_epochs) / span, 0.0, 1.0);
      return warm * (o.lr_min + (peak - o.lr_min) * (1 + std::cos(kPi * p)) / 2);
    }
    case LrSchedule::kPlateau:
      return peak * warm;  // peak: the plateau's lr
  }
  return peak;
}

PlateauState plateau_start(double peak, bool maximize) {
  PlateauState s;
  s.lr = peak;
  s.best = maximize ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  return s;
}

bool plateau_step(const ScheduleOptions& o, bool maximize, double value, PlateauState* s) {
  // torch: is_better with threshold_mode 'rel', then num_bad_epochs > patience
  // reduces (cooldown 0), and a reduction smaller than eps is not made.
  constexpr double kEps = 1e-8;
  const bool better = maximize ? value > s->best * (o.plateau_threshold + 1.0)
                               : value < s->best * (1.0 - o.plateau_threshold);
  if (better) {
    s->best = value;
    s->bad_epochs = 0;
  } else {
    ++s->bad_epochs;
  }
  if (s->bad_epochs <= o.plateau_patience) return false;
  s->bad_epochs = 0;
  const double reduced = std::max(s->lr * o.plateau_factor, o.plateau_min_lr);
  if (!(s->lr - reduced > kEps)) return false;
  s->lr = reduced;
  return true;
}

bool schedule_in_use(const ScheduleOptions& o) {
  return o.schedule != LrSchedule::kConstant || o.warmup_epochs > 0 || o.scaling != LrScaling::kNone;
}

std::string describe_schedule(const ScheduleOptions& o, double lr, double peak, long global_batch) {
  std::string s = "peak lr " + number(peak);
  const std::string ratio = std::to_string(global_batch) + "/" + std::to_string(o.reference_batch);
  if (o.scaling == LrScaling::kLinear) s += " (--lr " + number(lr) + " x " + ratio + ", linear scaling)";
  if (o.scaling == LrScaling::kSqrt) s += " (--lr " + number(lr) + " x sqrt(" + ratio + "), sqrt scaling)";
  if (o.warmup_epochs > 0) s += "; linear warmup from ~0 over " + number(o.warmup_epochs) + " epoch(s)";
  switch (o.schedule) {
    case LrSchedule::kConstant: s += "; then constant"; break;
    case LrSchedule::kStep:
      s += "; times " + number(o.decay_factor) + " at epoch(s) " + list(o.decay_epochs);
      break;
    case LrSchedule::kCosine:
      s += "; cosine to " + number(o.lr_min) + " at epoch " + std::to_string(o.epochs);
      break;
    case LrSchedule::kPlateau:
      s += "; times " + number(o.plateau_factor) + " after " + std::to_string(o.plateau_patience) +
           " epoch(s) without improvement, down to " + number(o.plateau_min_lr);
      break;
  }
  return s;
}

std::string schedule_changes(const ScheduleOptions& saved, double saved_lr, double saved_peak,
                             const ScheduleOptions& now, double lr, double peak) {
  std::string out;
  const auto change = [&](const std::string& what, const std::string& before, const std::string& after) {
    if (before != after) out += (out.empty() ? "" : ", ") + what + " " + before + " -> " + after;
  };
  const auto either = [&](LrSchedule s) { return saved.schedule == s || now.schedule == s; };
  change("--lr-schedule", lr_schedule_name(saved.schedule), lr_schedule_name(now.schedule));
  change("--warmup-epochs", number(saved.warmup_epochs), number(now.warmup_epochs));
  if (either(LrSchedule::kStep)) {
    change("--lr-decay-epochs", list(saved.decay_epochs), list(now.decay_epochs));
    change("--lr-decay-factor", number(saved.decay_factor), number(now.decay_factor));
  }
  if (either(LrSchedule::kCosine)) {
    change("--lr-min", number(saved.lr_min), number(now.lr_min));
    change("--epochs", std::to_string(saved.epochs), std::to_string(now.epochs));
  }
  if (either(LrSchedule::kPlateau)) {
    change("--plateau-patience", std::to_string(saved.plateau_patience), std::to_string(now.plateau_patience));
    change("--plateau-factor", number(saved.plateau_factor), number(now.plateau_factor));
    change("--plateau-min-lr", number(saved.plateau_min_lr), number(now.plateau_min_lr));
  }
  change("--lr-scaling", lr_scaling_name(saved.scaling), lr_scaling_name(now.scaling));
  if (saved.scaling != LrScaling::kNone || now.scaling != LrScaling::kNone) {
    change("--lr-reference-batch", std::to_string(saved.reference_batch), std::to_string(now.reference_batch));
  }
  change("--lr", number(saved_lr), number(lr));
  change("peak lr", number(saved_peak), number(peak));
  return out;
}

}  // namespace nn_dist
