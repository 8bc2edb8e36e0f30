// Synchronous data-parallel SGD: each step every rank runs forward/backward
// on its own minibatch (or adds up --accumulate-steps micro-batches), the
// gradient SUMS and (loss, correct, count) are summed over the ranks, and
// every rank applies the same update scaled by 1 / (global sample count), so
// uneven and short batches are weighted exactly.
// At epoch ends the monitored value steps early stopping and the plateau.
#include "nn_dist/train/trainer.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "nn_dist/common/text.hpp"
#include "nn_dist/optim/clip.hpp"
#include "nn_dist/optim/schedule.hpp"
#include "nn_dist/parallel/watchdog.hpp"
#include "nn_dist/train/input_transform.hpp"
#include "nn_dist/train/model_plan.hpp"

namespace nn_dist {

namespace {

// The feature of the first value of x (features, n) that is NaN or Inf, or -1.
long first_nonfinite_feature(const float* x, long features, long n) {
  for (long i = 0; i < features * n; ++i) {
    if (!std::isfinite(x[i])) return i % features;
  }
  return -1;
}

// The value --monitor names, from a complete epoch's result.
double monitored(const EpochResult& r, Monitor monitor) {
  switch (monitor) {
    case Monitor::kValLoss: return r.val_loss;
    case Monitor::kValAccuracy: return r.val_accuracy;
    case Monitor::kLoss: break;
  }
  return r.train_loss;
}

// --reproducible: x rounded to a multiple of 2^-24. Sums of such values
// below 2^29 are exact in float64, so the ranks' loss sums add up to the
// same bits in any order (a step's loss sum is far below 2^29).
double on_grid(double x) { return std::ldexp(std::nearbyint(std::ldexp(x, 24)), -24); }

// The sums over all ranks, in one allreduce.
EpochSums summed(const Communicator& comm, const EpochSums& sums) {
  double values[] = {sums.loss, sums.correct, sums.count};
  comm.sum(values, 3);
  return EpochSums{values[0], values[1], values[2]};
}

}  // namespace

Trainer::Trainer(const Communicator& comm, const Config& config)
    : comm_(comm),
      config_(config),
      checkpointer_(comm, config_, files_),
      reporter_(comm, config_),
      metrics_(comm) {
  if (config_.data_files.empty()) config_.data_files = {config_.data};  // a Config built by hand (tests)
  watchdog::set_timeout(config_.collective_timeout);
  Eigen::setNbThreads(config_.threads);
  comm_.agreed([&] { set_gemm_kernel(config_.gemm, config_.precision); });  // each rank checks its own node's CPU
  if (config_.reproducible) agree_gemm_kernel(comm_, config_);
  resolve_resume_auto(comm_, &config_);
  files_ = check_run_files(comm_, config_);
  ActivationFn activation;
  comm_.agreed([&] { activation = ActivationFn(parse_activation(config_.activation), config_.leaky_slope); });
  data_ = load_training_set(comm_, config_);
  comm_.agreed([&] {
    if (config_.monitor == Monitor::kValAccuracy && !is_classification(data_.loss)) {
      throw Error("--monitor val_accuracy: the loss is " + loss_name(data_.loss) +
                  ", which has no accuracy; monitor val_loss or loss");
    }
  });
  ResumePoint start = read_resume_point(comm_, config_, data_, activation);
  transform_ = input_transform(comm_, config_, data_, start.standardization);
  apply_input_transform(transform_, &data_);
  source_ = make_minibatches(comm_, config_, transform_, &data_);
  blocks_ = dynamic_cast<BlockSource*>(source_.get());
  // --reproducible loads a step's blocks at once (its micro-batches are whole blocks).
  loads_per_step_ = blocks_ != nullptr ? 1 : config_.accumulate_steps;
  loads_per_epoch_ = comm_.max(source_->steps());
  steps_per_epoch_ = (loads_per_epoch_ + loads_per_step_ - 1) / loads_per_step_;
  build_model(&start);
  checkpointer_.restart_clock();  // the --checkpoint-minutes clock starts with training
}

Trainer::~Trainer() = default;

void Trainer::build_model(ResumePoint* start) {
  model_ = allocate_model(comm_, config_, data_, start);
  set_up_dropout();
  initialise_parameters(start);
  checkpointer_.start_run(start->state.run_id, global_step_, last_step());
  start_gradient_sum(comm_, config_, data_, &model_);
  slices_.reserve(model_.sync->slices());
  metrics_.open(config_, files_.metrics);
  reporter_.banner(data_.info, *model_.mlp, *model_.sync, data_.batch, steps_per_epoch_, peak_lr_, global_batch_);
}

void Trainer::set_up_dropout() {
  Mlp<float>& mlp = *model_.mlp;
  comm_.agreed([&] { mlp.set_dropout(dropout_rates(config_.dropout_rates, mlp.layout().num_layers() - 1)); });
  dropout_ = std::any_of(config_.dropout_rates.begin(), config_.dropout_rates.end(), [](double p) { return p > 0; });
  comm_.agree(dropout_ && data_.streaming
                  ? "--dropout " + config_.dropout + ": not with streamed training data (--cache-mb): the masks are "
                    "keyed by each sample's row, which the stream does not keep"
                  : "");
  // A test hook: each rank writes the masks it applies (torch_parity.py applies them in torch).
  const char* path = std::getenv("NN_DIST_DROPOUT_MASKS");
  if (dropout_ && path != nullptr && *path != '\0') {
    mask_file_.reset(std::fopen((std::string(path) + "." + std::to_string(comm_.rank())).c_str(), "wb"));
  }
}

void Trainer::export_masks(long n, const int64_t* ids) {
  // Records of (step, layer, sample) as int64, then the layer's mask column as float32.
  const Mlp<float>& mlp = *model_.mlp;
  for (int l = 0; l + 1 < mlp.layout().num_layers(); ++l) {
    const float* mask = mlp.dropout_mask(l);
    if (mask == nullptr) continue;
    const long units = mlp.layout().sizes()[l + 1];
    for (long j = 0; j < n; ++j) {
      const int64_t head[3] = {global_step_, l, ids[j]};
      std::fwrite(head, sizeof(head), 1, mask_file_.get());
      std::fwrite(mask + j * units, sizeof(float), static_cast<std::size_t>(units), mask_file_.get());
    }
  }
  std::fflush(mask_file_.get());
}

void Trainer::initialise_parameters(ResumePoint* start) {
  double own_batch = static_cast<double>(data_.step_batch);
  comm_.sum(&own_batch, 1);
  global_batch_ = static_cast<long>(own_batch);
  peak_lr_ = nn_dist::peak_lr(config_.optimizer.lr, config_.schedule, global_batch_);
  comm_.agreed([&] { check_lr_min(config_.schedule, peak_lr_); });
  const bool from_checkpoint = !checkpoint_to_load(config_).empty();
  if (from_checkpoint) {
    const RunShape run{comm_.size(), global_batch_, config_.accumulate_steps, data_.info.samples, steps_per_epoch_,
                       source_->sample_order(), peak_lr_, precision_name(config_.precision)};
    comm_.agreed([&] {
      if (comm_.root()) check_continuation(*start, config_, run);
    });
  }
  share_initial_parameters(comm_, !from_checkpoint, start->activation.kind, config_.seed, &model_);
  start_epoch_ = start->epoch;
  global_step_ = start->global_step;
  resume_epoch_step_ = start->epoch_step;
  resume_epoch_sums_ = start->epoch_sums;
  names_ = start->names;
  config_.seed = start->seed;
  source_->set_seed(config_.seed);  // a resumed run keeps its shuffle stream
  start_watching(start);
}

void Trainer::start_watching(ResumePoint* start) {
  const bool maximize = monitor_maximizes(config_.monitor), same = start->monitor == config_.monitor;
  const bool plateau = config_.schedule.schedule == LrSchedule::kPlateau, stopping = config_.early_stopping > 0;
  early_stopping_ = start->has_early_stopping && same ? start->early_stopping : early_stopping_start(maximize);
  plateau_ = plateau_start(peak_lr_, maximize);
  if (start->has_plateau && same) {
    plateau_ = start->plateau;
    // Another peak lr (--lr-scaling with another global batch): the cuts carry over as a factor.
    if (start->lr_peak > 0 && start->lr_peak != peak_lr_) {
      plateau_.lr = std::max(plateau_.lr / start->lr_peak * peak_lr_, config_.schedule.plateau_min_lr);
    }
  }
  if (comm_.root() && !same && ((stopping && start->has_early_stopping) || (plateau && start->has_plateau))) {
    std::printf("note: the checkpoint watched %s, this run --monitor %s: early stopping and the plateau start "
                "afresh\n", monitor_name(start->monitor).c_str(), monitor_name(config_.monitor).c_str());
  }
  if (config_.restore_best && comm_.root()) {
    best_params_ = start->best_params.empty() ? FlatBuffer(layout().total(), 0.0f) : std::move(start->best_params);
  }
}

int64_t Trainer::last_step() const {
  // Up to the last of its epochs, or --max-steps.
  const int64_t epochs_left = std::max<int64_t>(0, config_.epochs - start_epoch_);
  const int64_t last = std::max(global_step_, global_step_ + epochs_left * steps_per_epoch_ - resume_epoch_step_);
  return config_.max_steps > 0 ? std::min<int64_t>(last, config_.max_steps) : last;
}

EpochResult Trainer::run() {
  EpochResult result;
  if (start_epoch_ >= config_.epochs) reporter_.nothing_to_do(start_epoch_);
  if (start_epoch_ < config_.epochs && resume_epoch_step_ == 0 &&
      early_stopping_done(early_stopping_, config_.early_stopping, start_epoch_)) {
    reporter_.already_stopped(start_epoch_, early_stopping_);
    return result;
  }
  checkpointer_.restart_clock();
  for (int64_t epoch = start_epoch_; epoch < config_.epochs; ++epoch) {
    const EpochEnd end = train_epoch(epoch, &result);
    if (end == EpochEnd::kStopped) return result;
    if (end == EpochEnd::kLast) break;
  }
  if (config_.profile) reporter_.profile(times_, *source_, data_.batch, *model_.sync);
  return result;
}

void Trainer::start_epoch(int64_t epoch) {
  epoch_ = epoch;
  source_->start_epoch(epoch);
  epoch_sums_ = EpochSums{};
}

Trainer::EpochEnd Trainer::train_epoch(int64_t epoch, EpochResult* result) {
  const auto start = Clock::now();
  start_epoch(epoch);
  long first = 0;
  if (epoch == start_epoch_ && resume_epoch_step_ > 0) {  // a mid-epoch resume: the steps still due
    first = resume_epoch_step_;
    epoch_sums_ = resume_epoch_sums_;
  }
  const double count_before = epoch_sums_.count;
  reporter_.start_epoch(epoch, first, steps_per_epoch_, start);
  bool complete = true, stopping = false;
  for (long s = first; s < steps_per_epoch_; ++s) {
    if (!train_step(s)) {
      complete = false;
      break;
    }
    reporter_.progress(s, epoch_sums_.count - count_before);
    if (s + 1 == steps_per_epoch_) {  // the epoch's end writes the checkpoint
      stopping = stop_.asked();
    } else if (stop_.asked()) {
      stop_on_signal(epoch, s + 1, false);
      return EpochEnd::kStopped;
    } else if (checkpointer_.due(global_step_)) {
      save_checkpoint(epoch, s + 1);
    }
  }
  const double seconds = seconds_between(start, Clock::now());
  if (epoch_sums_.count == 0) return EpochEnd::kLast;  // --max-steps reached before this epoch
  *result = epoch_result(epoch, seconds, count_before);
  const double lr_before = plateau_.lr;
  const bool best = complete && watch(result);
  const bool classify = is_classification(data_.loss);
  reporter_.epoch_line(*result, classify);
  if (plateau_.lr != lr_before) reporter_.lr_reduced(lr_before, plateau_.lr);
  metrics_.write(*result, classify);
  if (!complete) return EpochEnd::kLast;
  if (best) keep_best(epoch + 1);
  return finish_epoch(epoch + 1, stopping);
}

bool Trainer::watch(EpochResult* r) {
  const double value = monitored(*r, config_.monitor);
  const bool maximize = monitor_maximizes(config_.monitor);
  bool best = false;
  if (config_.early_stopping > 0) {
    best = early_stopping_step(maximize, config_.min_delta, r->epoch, value, &early_stopping_);
    r->best_epoch = early_stopping_.best_epoch;
  }
  if (config_.schedule.schedule == LrSchedule::kPlateau) plateau_step(config_.schedule, maximize, value, &plateau_);
  return best;
}

void Trainer::keep_best(int64_t done) {
  if (!config_.checkpoint_dir.empty()) {
    checkpointer_.save_best(training_state(done, 0), *model_.mlp, model_.params_data, *model_.optimizer);
  }
  if (config_.restore_best && comm_.root()) {
    std::copy(model_.params_data, model_.params_data + best_params_.size(), best_params_.begin());
  }
}

Trainer::EpochEnd Trainer::finish_epoch(int64_t done, bool stopping) {
  early_stopped_ = done < config_.epochs && early_stopping_done(early_stopping_, config_.early_stopping, done);
  const bool saved = checkpointer_.due_at_epoch_end(done, stopping || early_stopped_, global_step_);
  if (saved) save_checkpoint(done, 0);
  if (early_stopped_) {
    reporter_.early_stop(done, early_stopping_);
    return EpochEnd::kLast;
  }
  if (stopping && done < config_.epochs) {
    stop_on_signal(done, 0, saved);
    return EpochEnd::kStopped;
  }
  return EpochEnd::kNext;
}

EpochResult Trainer::epoch_result(int64_t epoch, double seconds, double count_before) {
  EpochResult r;
  r.epoch = epoch + 1;
  r.train_loss = epoch_sums_.loss / epoch_sums_.count;
  r.train_accuracy = epoch_sums_.correct / epoch_sums_.count;
  r.samples_per_sec = (epoch_sums_.count - count_before) / seconds;
  r.seconds = seconds;
  r.lr = step_lr_;
  r.grad_norm = config_.clip_grad_norm > 0 ? grad_norm_ : -1;
  r.has_val = data_.has_val;
  if (r.has_val) evaluate(&r.val_loss, &r.val_accuracy);
  return r;
}

void Trainer::evaluate(double* loss, double* accuracy) {
  const Matrix<float>& x = data_.val_x;
  const Targets& targets = data_.val_targets;
  EpochSums sums;
  Mlp<float>& mlp = *model_.mlp;
  // --reproducible: in whole blocks (each rank's part starts at a block), the
  // loss sums on the grid of on_grid(): the same sums on any rank count.
  const long n = x.cols(), batch = blocks_ != nullptr ? config_.block_size : mlp.max_batch();
  for (long begin = 0; begin < n; begin += batch) {
    const long m = std::min(batch, n - begin);
    mlp.forward(model_.params_data, x.data() + begin * x.rows(), m);
    const LossSums s = mlp.loss_only(
        targets.labels.empty() ? nullptr : targets.labels.data() + begin,
        targets.labels.empty() ? targets.values.data() + begin * targets.values.rows() : nullptr);
    sums.loss += blocks_ != nullptr ? on_grid(s.loss) : s.loss;
    sums.correct += s.correct;
    sums.count += static_cast<double>(m);
  }
  sums = summed(comm_, sums);
  *loss = sums.loss / sums.count;
  *accuracy = sums.correct / sums.count;
}

void Trainer::save_checkpoint(int64_t epoch, int64_t epoch_step) {
  TrainingState state = training_state(epoch, epoch_step);
  const float* params = model_.params_data;
  if (config_.restore_best && comm_.root() && early_stopping_.best_epoch > 0) {
    state.best_params = best_params_.data();  // kept for a resumed run
    // The run's last file holds the best epoch's weights (Keras' restore_best_weights).
    if (epoch_step == 0 && (epoch >= config_.epochs || early_stopped_)) params = best_params_.data();
  }
  checkpointer_.save(std::move(state), *model_.mlp, params, *model_.optimizer);
}

TrainingState Trainer::training_state(int64_t epoch, int64_t epoch_step) const {
  TrainingState state;
  state.epoch = epoch;
  state.epoch_step = epoch_step;
  if (epoch_step > 0) state.epoch_sums = epoch_sums_;
  state.global_step = global_step_;
  state.seed = config_.seed;
  state.ranks = comm_.size();
  state.global_batch = global_batch_;
  state.accumulate_steps = config_.accumulate_steps;
  state.samples = data_.info.samples;
  state.sample_order = source_->sample_order();
  state.precision = precision_name(config_.precision);
  state.options = config_.options_text;
  state.has_schedule = true;
  state.schedule = config_.schedule;
  state.lr = config_.optimizer.lr;
  state.lr_peak = peak_lr_;
  state.standardization = transform_;
  state.names = names_;
  state.monitor = config_.monitor;
  state.has_early_stopping = config_.early_stopping > 0;
  state.early_stopping = early_stopping_;
  state.has_plateau = config_.schedule.schedule == LrSchedule::kPlateau;
  state.plateau = plateau_;
  return state;
}

void Trainer::stop_on_signal(int64_t epoch, int64_t epoch_step, bool saved) {
  const bool checkpointed = checkpointer_.enabled();
  if (!saved && checkpointed) save_checkpoint(epoch, epoch_step);
  stop_exit_code_ = stop_.exit_code(checkpointed);
  if (!comm_.root()) return;
  const StopRequest::Where where{global_step_, epoch, epoch_step, steps_per_epoch_};
  const std::string line = stop_.describe(comm_.size(), where, checkpointer_.saved_where(global_step_), checkpointed);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

bool Trainer::train_step(long step) {
  if (config_.max_steps > 0 && global_step_ >= config_.max_steps) return false;
  // The step's index counts from the start of training in this run's epochs:
  // the global step, unless an epoch-end resume changed the steps per epoch.
  // The plateau's lr replaces the peak: its cuts times the warmup.
  const double peak = config_.schedule.schedule == LrSchedule::kPlateau ? plateau_.lr : peak_lr_;
  step_lr_ = lr_at(config_.schedule, peak, epoch_ * steps_per_epoch_ + step, steps_per_epoch_);
  model_.optimizer->set_lr(step_lr_);
  StepMarks marks;
  marks.start = Clock::now();
  long n = 0;                   // --reproducible: this rank's samples of the step (all of them stay loaded)
  long nonfinite_feature = -1;  // micro-batches: found as soon as this rank's loss was not finite
  if (blocks_ != nullptr) {
    n = source_->load(step);
    marks.loaded = Clock::now();
    // The blocks alternate forward and backward: --profile gets their sums.
    const Clock::duration forward = step_blocks(step, n, marks.loaded);
    marks.forward_done = marks.loaded + forward;
    marks.backward_done = Clock::now();
    // The next batch is gathered now, while slower ranks may still be in backprop.
    if (step + 1 < steps_per_epoch_) source_->prefetch(step + 1);
    marks.prefetched = Clock::now();
  } else {
    accumulate(step, &marks, &nonfinite_feature);
  }
  double optimizer_seconds = 0;
  const double* sum = sum_and_update(&optimizer_seconds);
  stop_.read(sum);
  checkpointer_.set_time_due(sum[kStatCheckpointDue] > 0);
  if (!std::isfinite(sum[kStatLoss])) {
    // The blocks path still holds the step's whole batch.
    if (n > 0) nonfinite_feature = first_nonfinite_feature(source_->x(), data_.info.features, n);
    fail_not_finite(nonfinite_feature, sum[kStatLoss]);
  }
  if (blocks_ != nullptr && !loss_grid_warned_ && std::fabs(sum[kStatLoss]) >= std::ldexp(1.0, 29)) {
    warn_loss_off_grid(sum[kStatLoss]);
  }
  model_.optimizer->finish_step();
  ++global_step_;
  epoch_sums_.loss += sum[kStatLoss];
  epoch_sums_.correct += sum[kStatCorrect];
  epoch_sums_.count += sum[kStatCount];
  marks.done = Clock::now();
  if (global_step_ > config_.warmup_steps) {
    times_.add(marks, model_.sync->test_seconds(), optimizer_seconds, sum[kStatCount]);
  }
  return true;
}

void Trainer::own_stats(Clock::time_point now, double* stats) {
  // Besides the loss sums, the step's sum carries whether this rank was
  // asked to stop and whether its checkpoint clock ran out: every rank learns
  // both at the same step, with no collective of their own.
  StopRequest::add_own(stats);
  stats[kStatCheckpointDue] = checkpointer_.clock_ran_out(now);
}

void Trainer::accumulate(long step, StepMarks* marks, long* nonfinite_feature) {
  GradientSync& sync = *model_.sync;
  sync.reset_test_seconds();
  Mlp<float>& mlp = *model_.mlp;
  float* grad = sync.backward_buffer();
  double stats[kStepStats] = {};
  bool written = false;  // grad holds this step's sums so far
  Clock::duration data{}, forward{}, backward{};
  const long first = step * loads_per_step_, end = std::min(first + loads_per_step_, loads_per_epoch_);
  for (long load = first; load < end; ++load) {
    const bool last = load + 1 == end;
    auto at = Clock::now();
    const auto lap = [&at](Clock::duration* part) {
      const auto now = Clock::now();
      *part += now - at;
      at = now;
    };
    const long n = source_->load(load);
    lap(&data);
    if (n > 0) {
      // The masks are keyed by the step and each sample's row: the same as in one batch of the step.
      const DropoutDraw draw{DropoutKey{config_.seed, epoch_, step}, source_->sample_ids()};
      mlp.forward(model_.params_data, source_->x(), n, dropout_ ? &draw : nullptr);
      if (mask_file_) export_masks(n, source_->sample_ids());
      const LossSums sums = mlp.loss_and_delta(source_->labels(), source_->values());
      stats[kStatLoss] += sums.loss;
      stats[kStatCorrect] += sums.correct;
      stats[kStatCount] += static_cast<double>(n);
      if (!std::isfinite(sums.loss) && *nonfinite_feature < 0) {
        *nonfinite_feature = first_nonfinite_feature(source_->x(), data_.info.features, n);
      }
    }
    if (last) {
      own_stats(at, stats);
      sync.start_stats(stats);
    }
    lap(&forward);
    // Only the last backprop tells the sum its pieces: a bucket must not
    // start before every micro-batch has added to it.
    if (n > 0) {
      mlp.backward(model_.params_data, source_->x(), grad, last ? &sync : nullptr, nullptr,
                   backward_pass(!written, last));
      written = true;
    }
    if (last && n == 0) {  // this rank's gradient is final already
      if (!written) std::fill(grad, grad + model_.grad.size(), 0.0f);
      sync.all_pieces_done();
    }
    if (last) sync.publish();
    lap(&backward);
    // The next batch is gathered now, while slower ranks may still be in backprop.
    if (load + 1 < loads_per_epoch_) source_->prefetch(load + 1);
    lap(&data);
  }
  // --profile's parts, summed over the micro-batches, laid end to end.
  marks->loaded = marks->start + data;
  marks->forward_done = marks->loaded + forward;
  marks->backward_done = marks->forward_done + backward;
  marks->prefetched = Clock::now();
}

Clock::duration Trainer::step_blocks(long step, long n, Clock::time_point now) {
  double stats[kStepStats] = {};
  own_stats(now, stats);
  GradientSync& sync = *model_.sync;
  sync.reset_test_seconds();
  Mlp<float>& mlp = *model_.mlp;
  const long features = data_.info.features, outputs = mlp.layout().sizes().back();
  const int32_t* labels = source_->labels();
  const float* values = source_->values();
  Clock::duration forward{};
  for (int j = 0; j < blocks_->blocks(); ++j) {
    const auto start = Clock::now();
    const long begin = blocks_->block_begin(j), rows = blocks_->block_rows(j);
    const float* x = source_->x() + begin * features;
    const int64_t* ids = source_->sample_ids() + begin;
    const DropoutDraw draw{DropoutKey{config_.seed, epoch_, step}, ids};
    mlp.forward(model_.params_data, x, rows, dropout_ ? &draw : nullptr);
    if (mask_file_) export_masks(rows, ids);
    const LossSums sums = mlp.loss_and_delta(labels != nullptr ? labels + begin : nullptr,
                                             values != nullptr ? values + begin * outputs : nullptr);
    stats[kStatLoss] += on_grid(sums.loss);
    stats[kStatCorrect] += sums.correct;
    forward += Clock::now() - start;
    sync.start_block(j);
    mlp.backward(model_.params_data, x, sync.block_buffer(j), &sync);
  }
  stats[kStatCount] = static_cast<double>(n);
  sync.set_blocks(blocks_->blocks());
  sync.start_stats(stats);
  sync.publish();
  return forward;
}

const double* Trainer::sum_and_update(double* optimizer_seconds) {
  watchdog::set_step(global_step_ + 1);
  watchdog::Wait wait("summing the gradients");
  const double* sum = model_.sync->wait_stats();
  // A loss that is not finite leaves the parameters as they were (fail_not_finite follows).
  const bool finite = std::isfinite(sum[kStatLoss]);
  if (config_.clip_grad_norm > 0) {
    sum_clip_and_update(finite, sum[kStatCount], optimizer_seconds);
    return sum;
  }
  const float scale = static_cast<float>(1.0 / sum[kStatCount]);
  model_.sync->wait([&](std::size_t begin, std::size_t end, const float* first, const float* second) {
    if (!finite) return;
    const auto start = Clock::now();
    update(first, second, scale, begin, end);
    *optimizer_seconds += seconds_between(start, Clock::now());
  });
  return sum;
}

void Trainer::update(const float* first, const float* second, float scale, std::size_t begin, std::size_t end) {
  Mlp<float>& mlp = *model_.mlp;
  if (!mlp.packs_weights()) {
    model_.optimizer->update(model_.params_data, first, second, scale, begin, end);
    return;
  }
  // bf16: each chunk packed while the update's writes are still in cache.
  constexpr std::size_t kChunk = 8192;
  for (std::size_t b = begin; b < end; b += kChunk) {
    const std::size_t e = std::min(end, b + kChunk);
    model_.optimizer->update(model_.params_data, first, second, scale, b, e);
    mlp.pack_weights(model_.params_data, b, e);
  }
}

void Trainer::sum_clip_and_update(bool finite, double count, double* optimizer_seconds) {
  // The slices are kept (they stay valid until the step ends) and their
  // squares added in order; a sharded update adds the ranks' partial squares
  // through the sum's shared memory. Every rank gets the same norm with no
  // collective of its own, then updates its slices.
  slices_.clear();
  SquareSums squares;
  GradientSync& sync = *model_.sync;
  auto keep = [&](std::size_t begin, std::size_t end, const float* first, const float* second) {
    slices_.push_back({begin, end, first, second});
    add_squares(first, second, begin, end, &squares);
  };
  auto clip_and_update = [&] {
    grad_norm_ = std::sqrt(sync.sum_squares(squares.total())) / count;  // of the mean gradient, as torch sees it
    if (!finite) return;
    const double factor = clip_factor(grad_norm_, config_.clip_grad_norm);
    // Unclipped, the same scale (and bits) as without --clip-grad-norm.
    const float scale = static_cast<float>(factor < 1 ? factor / count : 1.0 / count);
    const auto start = Clock::now();
    for (const SummedSlice& s : slices_) {
      update(s.first, s.second, scale, s.begin, s.end);
    }
    *optimizer_seconds += seconds_between(start, Clock::now());
  };
  sync.wait(keep, clip_and_update);
}

void Trainer::warn_loss_off_grid(double loss) {
  // Every rank sees the same sum: each knows, rank 0 says it once.
  loss_grid_warned_ = true;
  if (!comm_.root()) return;
  std::fprintf(stderr, "warning: --reproducible: a step's loss sum (%g) is at least 2^29, beyond which the ranks' "
                       "float64 sum of it can round differently at another rank count: the loss metrics' last bits "
                       "(and what --monitor loss decides) may then differ\n", loss);
}

void Trainer::fail_not_finite(long nonfinite_feature, double loss) const {
  // The data holds no NaN or Inf (checked when read): a feature that is
  // one now was pushed beyond float's range by --scale or a standardisation,
  // and no learning rate helps. Every rank is here (the loss is the sum's).
  const long feature = comm_.max(nonfinite_feature);
  if (feature >= 0) {
    const bool scaled = config_.scale != 1;
    throw AgreedError((scaled ? "--scale " + fmt("%g", config_.scale) : std::string("the standardisation")) +
                      " takes feature " + std::to_string(feature) + " of the training data beyond float's range (" +
                      fmt("%g", std::numeric_limits<float>::max()) + ") at step " + std::to_string(global_step_ + 1) +
                      (scaled ? ": give a smaller --scale" : ": the data's range is too wide for float"));
  }
  const std::string kept = !config_.checkpoint.empty() ? "; the last checkpoint " + config_.checkpoint + " is unchanged"
                           : !config_.checkpoint_dir.empty()
                               ? "; the checkpoints in " + config_.checkpoint_dir + " are unchanged"
                               : "";
  throw AgreedError("training diverged: the loss is " + fmt("%g", loss) + " at step " +
                    std::to_string(global_step_ + 1) + " (try a smaller --lr)" + kept);
}

}  // namespace nn_dist
