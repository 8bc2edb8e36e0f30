// Learning-rate schedules: the lr of a step as a pure function of the step's
// index, the steps per epoch and the flags, so a resumed run (from an epoch's
// end or the middle of one) takes exactly the lr an uninterrupted run takes.
// The plateau schedule adds a state stepped at epoch ends (PlateauState, saved
// in checkpoints). No MPI, no I/O; lr_at allocates nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/common/name_table.hpp"

namespace nn_dist {

enum class LrSchedule { kConstant, kStep, kCosine, kPlateau };
enum class LrScaling { kNone, kLinear, kSqrt };

// The names the flags and checkpoints use.
const NameTable<LrSchedule>& lr_schedule_names();
LrSchedule parse_lr_schedule(const std::string& name);  // throws Error naming --lr-schedule
std::string lr_schedule_name(LrSchedule schedule);
const NameTable<LrScaling>& lr_scaling_names();
LrScaling parse_lr_scaling(const std::string& name);    // throws Error naming --lr-scaling
std::string lr_scaling_name(LrScaling scaling);
// "30,60,80" -> {30, 60, 80}; throws Error naming --lr-decay-epochs.
std::vector<double> parse_decay_epochs(const std::string& text);

struct ScheduleOptions {
  LrSchedule schedule = LrSchedule::kConstant;
  double warmup_epochs = 0;          // linear ramp over the first W epochs (fractional allowed)
  std::vector<double> decay_epochs;  // step: multiply by decay_factor from each of these epochs on
  double decay_factor = 0.1;
  double lr_min = 0;                 // cosine: the lr at the end of `epochs`
  long epochs = 10;                  // cosine: the run's --epochs
  LrScaling scaling = LrScaling::kNone;
  long reference_batch = 256;        // the global batch --lr was chosen for
  // plateau: PyTorch's ReduceLROnPlateau defaults (threshold_mode rel, cooldown 0)
  long plateau_patience = 10;
  double plateau_factor = 0.1;
  double plateau_min_lr = 0;
  double plateau_threshold = 1e-4;

  bool operator==(const ScheduleOptions& o) const {
    return schedule == o.schedule && warmup_epochs == o.warmup_epochs && decay_epochs == o.decay_epochs &&
           decay_factor == o.decay_factor && lr_min == o.lr_min && epochs == o.epochs && scaling == o.scaling &&
           reference_batch == o.reference_batch && plateau_patience == o.plateau_patience &&
           plateau_factor == o.plateau_factor && plateau_min_lr == o.plateau_min_lr &&
           plateau_threshold == o.plateau_threshold;
  }
  bool operator!=(const ScheduleOptions& o) const { return !(*this == o); }
};

// Throws Error naming the flag: warmup not below 0 and below epochs, decay
// epochs positive and increasing, decay factor in (0, 1], lr_min >= 0,
// reference batch >= 1, plateau patience >= 0, factor in (0, 1), min lr >= 0.
void validate_schedule(const ScheduleOptions& options);

// The peak lr: lr x (global_batch / reference_batch) for linear scaling, x its
// square root for sqrt, lr itself for none.
double peak_lr(double lr, const ScheduleOptions& options, long global_batch);

// Throws Error naming --lr-min when it lies above the peak lr.
void check_lr_min(const ScheduleOptions& options, double peak);

// The lr of step `step` (0-based, counted from the start of training), with
// t = step / steps_per_epoch the fractional epoch and W the warmup epochs:
//   warmup w = min(1, (step + 1) / (W * steps_per_epoch)), 1 without warmup
//   constant: peak * w
//   step:     peak * w * decay_factor^(number of decay epochs <= t)
//   cosine:   w * (lr_min + (peak - lr_min) * (1 + cos(pi * p)) / 2),
//             p = clamp((t - W) / (epochs - W), 0, 1)
//   plateau:  PlateauState::lr * w (pass the state's lr as `peak`)
// Without warmup and scaling, constant returns exactly `peak`.
double lr_at(const ScheduleOptions& options, double peak, int64_t step, long steps_per_epoch);

// PyTorch's ReduceLROnPlateau (torch.optim.lr_scheduler, 1.13) with
// threshold_mode 'rel', cooldown 0 and eps 1e-8, over one lr: stepped once
// per epoch end with the monitored value. `lr` starts at the peak lr and is
// reduced in place as torch reduces a param group's lr, so the same value
// sequence gives the same lr bits. The step's lr is lr times the warmup.
struct PlateauState {
  double lr = 0;         // the lr after the reductions so far (before warmup)
  double best = 0;       // the best value so far (+-inf before the first epoch)
  long bad_epochs = 0;   // epochs since `best` without an improvement beyond the threshold
};

// The state before the first epoch: lr = peak, best = +inf (or -inf with maximize).
PlateauState plateau_start(double peak, bool maximize);
// One epoch end with `value`; maximize: the value is an accuracy (torch's mode 'max').
// Returns whether the lr was reduced.
bool plateau_step(const ScheduleOptions& options, bool maximize, double value, PlateauState* state);

// Whether the lr can differ from --lr (a schedule, warmup or scaling is in use).
bool schedule_in_use(const ScheduleOptions& options);

// One line for the start-up banner, e.g. "peak lr 0.4 (--lr 0.1 x 1024/256,
// linear scaling); 5 warmup epochs; cosine to 0 at epoch 90".
std::string describe_schedule(const ScheduleOptions& options, double lr, double peak, long global_batch);

// What differs between a checkpoint's schedule and this run's, as flags,
// e.g. "--lr-schedule step -> cosine, --warmup-epochs 0 -> 1"; "" if nothing.
// --epochs counts only for cosine, the only schedule that depends on it.
std::string schedule_changes(const ScheduleOptions& saved, double saved_lr, double saved_peak,
                             const ScheduleOptions& now, double lr, double peak);

}  // namespace nn_dist
