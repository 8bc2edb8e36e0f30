// The run's start read once: rank 0 takes from the checkpoint, in order, its
// input transform, its model (checked against the data and flags), and its
// tensors and training state, then shares the description in one broadcast.
#include "nn_dist/train/resume_point.hpp"

#include <cstdio>
#include <cstring>
#include <type_traits>

#include "nn_dist/train/model_plan.hpp"
#include "nn_dist/train/run_files.hpp"

namespace nn_dist {

namespace {

// Rank 0: the checkpoint's /preprocess, which the flags must not contradict.
void read_transform(const Config& config, const TrainingSet& set, const std::string& path, ResumePoint* point) {
  const std::string what = checkpoint_flag(config);
  point->standardization = read_checkpoint_standardization(path, what, set.info.features);
  if (point->standardization.empty() && (config.standardize || config.scale != 1)) {
    const std::string flag = config.standardize ? "--standardize" : "--scale";
    throw Error(flag + ": " + what + " was trained on features that were not standardised or scaled; "
                "drop " + flag + " to continue it");
  }
  if (!point->standardization.empty() && !config.standardize && !config.quiet) {
    std::printf("note: applying the standardisation stored in %s (/preprocess)\n", path.c_str());
  }
}

// --leaky-slope with another activation would change nothing: refused.
// whose: where the activation comes from, for the message.
void check_leaky_slope(const Config& config, const ActivationFn& f, const std::string& whose) {
  if (config.leaky_slope_given && f.kind != Activation::kLeakyRelu) {
    throw Error("--leaky-slope: only used with activation leaky_relu (" + whose + ")");
  }
}

// Rank 0: the checkpoint's model, which must fit the data, the loss and the
// flags given; the model keeps the feature and class names either gives.
void read_model(const Config& config, const TrainingSet& set, const std::string& path, ResumePoint* point) {
  const std::string what = checkpoint_flag(config);
  const std::vector<long>& planned = point->sizes;
  const CheckpointModel m = read_checkpoint_model(path, what);
  const ActivationFn act(parse_activation(m.activation), m.leaky_slope);
  const Loss loss = parse_loss(m.loss);
  if (m.sizes.front() != planned.front()) {
    throw Error(what + ": the checkpoint's input width " + std::to_string(m.sizes.front()) +
                " does not fit the data's " + std::to_string(planned.front()) + " features");
  }
  require_same_names(set.info.names, set.info.what, m.names, what);
  point->names = names_or(set.info.names, m.names);
  if (m.sizes.back() != planned.back()) {
    throw Error(what + ": the checkpoint's output width " + std::to_string(m.sizes.back()) +
                " does not fit the data's " + std::to_string(planned.back()) + " outputs");
  }
  if (config.hidden_given && m.sizes != planned) {
    throw Error(what + ": the checkpoint's layers " + sizes_string(m.sizes) + " differ from --hidden (" +
                sizes_string(planned) + ")");
  }
  if (config.activation_given && act.kind != point->activation.kind) {
    throw Error(what + ": the checkpoint uses activation " + m.activation + ", not --activation " + config.activation);
  }
  check_leaky_slope(config, act, what + ": the checkpoint uses activation " + m.activation);
  if (config.leaky_slope_given && act.leaky_slope != config.leaky_slope) {
    throw Error(what + ": the checkpoint uses leaky_relu with slope " + fmt("%g", act.leaky_slope) +
                ", not --leaky-slope " + fmt("%g", config.leaky_slope));
  }
  if (loss != set.loss) {
    throw Error(what + ": the checkpoint was trained with loss " + m.loss + ", this data and --loss give " +
                loss_name(set.loss));
  }
  point->sizes = m.sizes;
  point->activation = act;
}

// Rank 0: the parameters, and on --resume the optimizer state and where training stopped.
void read_tensors(const Config& config, const std::string& path, ResumePoint* point) {
  const std::string what = checkpoint_flag(config);
  const Layout layout(point->sizes);
  point->params.assign(layout.total(), 0.0f);
  read_checkpoint_params(path, what, layout, point->params.data());
  if (config.resume.empty()) {
    const std::string saved = read_checkpoint_precision(path, what), mine = precision_name(config.precision);
    if (!saved.empty() && saved != mine) {
      std::printf("note: %s: trained with %s products; this run starts from its f32 weights with %s products\n",
                  what.c_str(), saved.c_str(), mine.c_str());
    }
    return;
  }
  point->optimizer = std::make_unique<Optimizer>(config.optimizer, layout.total());
  point->state = read_checkpoint_state(path, what, layout, *point->optimizer);
  const TrainingState& state = point->state;
  point->epoch = state.epoch;
  point->global_step = state.global_step;
  point->epoch_step = state.epoch_step;
  if (state.epoch_step > 0) point->epoch_sums = state.epoch_sums;
  point->seed = state.seed;
  point->has_early_stopping = state.has_early_stopping;
  point->has_plateau = state.has_plateau;
  point->monitor = state.monitor;
  point->early_stopping = state.early_stopping;
  point->plateau = state.plateau;
  point->lr_peak = state.lr_peak;
  if (config.restore_best) {
    point->best_params.assign(layout.total(), 0.0f);
    if (!read_checkpoint_best(path, what, layout, point->best_params.data())) point->best_params.clear();
  }
}

// The fields every rank needs, in one order for packing and unpacking.
template <typename Io>
void transfer(Io& io, ResumePoint* p) {
  io(p->sizes);
  io(p->activation);
  io(p->standardization.mean);
  io(p->standardization.scale);
  io(p->epoch);
  io(p->global_step);
  io(p->epoch_step);
  io(p->epoch_sums);
  io(p->seed);
  io(p->has_early_stopping);
  io(p->has_plateau);
  io(p->monitor);
  io(p->early_stopping);
  io(p->plateau);
  io(p->lr_peak);
}

// Plain values and vectors of them to bytes, and back.
struct Packer {
  std::string bytes;
  void put(const void* data, std::size_t size) { bytes.append(static_cast<const char*>(data), size); }
  template <typename T>
  void operator()(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    put(&v, sizeof v);
  }
  template <typename T>
  void operator()(const std::vector<T>& v) {
    const uint64_t n = v.size();
    put(&n, sizeof n);
    put(v.data(), n * sizeof(T));
  }
};

struct Unpacker {
  const std::string& bytes;
  std::size_t at = 0;
  void take(void* data, std::size_t size) {
    std::memcpy(data, bytes.data() + at, size);
    at += size;
  }
  template <typename T>
  void operator()(T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    take(&v, sizeof v);
  }
  template <typename T>
  void operator()(std::vector<T>& v) {
    uint64_t n = 0;
    take(&n, sizeof n);
    v.resize(n);
    take(v.data(), n * sizeof(T));
  }
};

// Rank 0's description to every rank, in one broadcast.
void share(const Communicator& comm, ResumePoint* point) {
  std::string bytes;
  if (comm.root()) {
    Packer packer;
    transfer(packer, point);
    bytes = std::move(packer.bytes);
  }
  comm.broadcast(&bytes);
  if (comm.root()) return;
  Unpacker unpacker{bytes};
  transfer(unpacker, point);
}

}  // namespace

ResumePoint read_resume_point(const Communicator& comm, const Config& config, const TrainingSet& set,
                              const ActivationFn& activation) {
  ResumePoint point;
  point.sizes = planned_sizes(config, set);
  point.activation = activation;
  point.seed = config.seed;
  point.names = set.info.names;
  const std::string path = checkpoint_to_load(config);
  if (path.empty()) {  // every rank: the same config, so the same branch
    comm.agreed([&] { check_leaky_slope(config, activation, "this run has --activation " + config.activation); });
    return point;
  }
  comm.agreed([&] {
    if (!comm.root()) return;
    read_transform(config, set, path, &point);
    read_model(config, set, path, &point);
    // Before the tensors are read: an absurd width in a damaged file is
    // refused with a line, not a failed allocation.
    require_model_memory(comm, config, set, point.sizes, point.activation.kind, /*from_checkpoint=*/true);
    read_tensors(config, path, &point);
  });
  share(comm, &point);
  return point;
}

namespace {

// Flags that may change on resume, each named in a note: the schedule, the products' precision.
void note_changed_flags(const TrainingState& state, const Config& config, const RunShape& run,
                        const std::string& what) {
  if (state.has_schedule) {  // files written before schedules were recorded have none
    const std::string changed = schedule_changes(state.schedule, state.lr, state.lr_peak, config.schedule,
                                                 config.optimizer.lr, run.peak_lr);
    if (!changed.empty()) {
      std::printf("note: %s: the learning-rate schedule differs from the checkpoint's (%s); continuing with this "
                  "run's flags\n",
                  what.c_str(), changed.c_str());
    }
  }
  const std::string saved_precision = state.precision.empty() ? "f32" : state.precision;
  if (saved_precision != run.precision) {
    std::printf("note: %s: saved by a run whose products were %s, continued in %s: the parameters and optimizer "
                "state carry over as they are (f32 in both), but the bits differ from an uninterrupted run\n",
                what.c_str(), saved_precision.c_str(), run.precision.c_str());
  }
}

}  // namespace

void check_continuation(const ResumePoint& point, const Config& config, const RunShape& run) {
  if (config.resume.empty()) return;
  const TrainingState& state = point.state;
  const std::string what = checkpoint_flag(config);
  if (config.restore_best && state.has_early_stopping && state.early_stopping.best_epoch > 0 &&
      point.best_params.empty()) {
    throw Error(what + ": holds no best weights (/best: the run was saved without --restore-best), so --restore-best "
                "cannot end with them: resume it without --restore-best");
  }
  note_changed_flags(state, config, run, what);
  // --reproducible at the same block order: the steps do not depend on the
  // rank count, so any count continues the run bit for bit.
  const bool any_ranks = config.reproducible && state.sample_order == run.sample_order;
  // Another --accumulate-steps is taken as another --batch-size is: a step is
  // its global batch however it was cut, so only the global batch is checked
  // below. Cut otherwise, the same samples add up in another order (except
  // --reproducible's exact sums).
  const auto note_accumulation = [&] {
    if (state.accumulate_steps == run.accumulate_steps || config.reproducible) return;
    std::printf("note: %s: saved by a run with --accumulate-steps %lld, continued with %ld: the gradients add up in "
                "another order, so the bits differ from an uninterrupted run\n",
                what.c_str(), static_cast<long long>(state.accumulate_steps), run.accumulate_steps);
  };
  if (state.epoch_step == 0) {
    note_accumulation();
    if (state.ranks != run.ranks && !any_ranks) {
      std::printf("note: resuming on %d ranks a run saved on %lld: the parameters, optimizer state and step "
                  "count carry over; the shards and shuffles differ, so the bits differ from an uninterrupted "
                  "run\n",
                  run.ranks, static_cast<long long>(state.ranks));
    }
    return;
  }
  const std::string saved = what + ": was saved in the middle of epoch " + std::to_string(state.epoch + 1) +
                            " (after step " + std::to_string(state.epoch_step) + ")";
  const bool same = (state.ranks == run.ranks || any_ranks) && state.global_batch == run.global_batch &&
                    state.samples == run.samples && state.epoch_step < run.steps_per_epoch;
  if (!same) {
    throw Error(saved + " by " + std::to_string(state.ranks) + " ranks, global batch " +
                std::to_string(state.global_batch) + ", " + std::to_string(state.samples) + " samples; this run has " +
                std::to_string(run.ranks) + " ranks, global batch " + std::to_string(run.global_batch) + ", " +
                std::to_string(run.samples) +
                " samples. A mid-epoch checkpoint continues only the same run (run it as saved, or resume from an "
                "epoch-end checkpoint)");
  }
  // Checkpoints written before the order was recorded continue as before, unchecked.
  if (!state.sample_order.empty() && state.sample_order != run.sample_order) {
    throw Error(saved + " with the samples " + state.sample_order + "; this run takes them " + run.sample_order +
                " (--no-shuffle and --cache-mb decide it), so the rest of the epoch would train some samples twice "
                "and skip others: resume it with the flags it was saved with, or resume from an epoch-end checkpoint");
  }
  note_accumulation();
}

}  // namespace nn_dist
