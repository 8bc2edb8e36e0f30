// Synchronous data-parallel SGD: each step every rank runs forward/backward
// on its own minibatch, the gradient SUMS and (loss, correct, count) are
// summed over the ranks, and every rank applies the same update scaled by
// 1 / (global sample count), so uneven and short batches are weighted exactly.
#include "nn_dist/train/trainer.hpp"

#include <unistd.h>

#include <Eigen/Core>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "nn_dist/common/clock.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/io/checkpoint_dir.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/model/init.hpp"
#include "nn_dist/optim/schedule.hpp"
#include "nn_dist/parallel/watchdog.hpp"
#include "nn_dist/train/memory.hpp"
#include "nn_dist/train/signals.hpp"
#include "nn_dist/train/stream.hpp"
#include "nn_dist/train/terminal.hpp"

namespace nn_dist {

namespace {

// New columns go at the end: scripts cut the others by position.
constexpr const char* kMetricsHeader =
    "epoch,train_loss,train_accuracy,val_loss,val_accuracy,samples_per_sec,epoch_seconds,lr";

// The feature of the first value of x (features, n) that is NaN or Inf, or -1.
long first_nonfinite_feature(const float* x, long features, long n) {
  for (long i = 0; i < features * n; ++i) {
    if (!std::isfinite(x[i])) return i % features;
  }
  return -1;
}

// Agreed, broadcast description of a checkpoint's model (read on rank 0).
struct SavedModel {
  int64_t activation = 0;
  std::vector<long> sizes;
};

}  // namespace

Trainer::Trainer(const Communicator& comm, const Config& config) : comm_(comm), config_(config) {
  if (config_.data_files.empty()) config_.data_files = {config_.data};  // a Config built by hand (tests)
  watchdog::set_timeout(config_.collective_timeout);
  Eigen::setNbThreads(config_.threads);
  comm_.agreed([&] { set_gemm_kernel(config_.gemm); });  // each rank checks its own node's CPU
  check_files();
  load_data();
  build_model();
  last_checkpoint_ = Clock::now();  // the --checkpoint-minutes clock starts with training
  terminal_ = config_.progress == "terminal" || (config_.progress == "auto" && output_reaches_terminal());
}

Trainer::~Trainer() = default;

void Trainer::resolve_resume_auto() {
  if (config_.resume != "auto") return;
  std::string chosen;
  comm_.agreed([&] {
    if (!comm_.root()) return;
    // A folder that cannot be examined or listed is an error, never "no checkpoint yet".
    if (!config_.checkpoint_dir.empty()) {
      const std::string what = "--checkpoint-dir " + config_.checkpoint_dir;
      std::vector<std::string> warnings;
      if (path_exists(config_.checkpoint_dir, what)) {
        chosen = newest_valid_checkpoint(config_.checkpoint_dir, what, &warnings);
      }
      for (const std::string& w : warnings) {
        std::fprintf(stderr, "warning: --resume auto: skipping an unreadable checkpoint: %s\n", printable(w, 300).c_str());
      }
    } else if (path_exists(config_.checkpoint, "--checkpoint " + config_.checkpoint)) {
      chosen = config_.checkpoint;
    }
    if (!config_.quiet) {
      std::printf("nn_dist: --resume auto: %s\n",
                  chosen.empty() ? "no checkpoint yet, starting fresh" : ("resuming from " + chosen).c_str());
      std::fflush(stdout);  // in the log even if the job is killed soon after
    }
  });
  comm_.broadcast(&chosen);
  config_.resume = chosen;  // "" starts fresh
}

void Trainer::check_files() {
  resolve_resume_auto();
  // Every rank reads the data where it runs; rank 0 alone reads checkpoints
  // (--config was checked where it was parsed) and writes the outputs.
  std::vector<NamedPath> every_rank{{"--val", config_.val}};
  for (const std::string& file : config_.data_files) every_rank.push_back({"--data", file});
  const std::vector<NamedPath> root_only{{"--init", config_.init}, {"--resume", config_.resume}};
  std::vector<NamedPath>& inputs = inputs_;
  inputs = every_rank;
  inputs.insert(inputs.end(), root_only.begin(), root_only.end());
  inputs.push_back({"--config", config_.config_file});
  const std::vector<NamedPath> outputs{{"--checkpoint", config_.checkpoint}, {"--metrics", config_.metrics}};
  const auto require_inputs = [](const std::vector<NamedPath>& list) {
    for (const NamedPath& in : list) {
      if (!in.path.empty()) require_input_file(in.path, in.flag + " " + in.path);
    }
  };
  comm_.agreed([&] {
    require_inputs(every_rank);
    if (!comm_.root()) return;
    require_inputs(root_only);
    if (!config_.checkpoint.empty()) {
      checkpoint_path_ = require_output_file(config_.checkpoint, "--checkpoint " + config_.checkpoint);
    }
    if (!config_.checkpoint_dir.empty()) {
      checkpoint_dir_ = require_output_folder(config_.checkpoint_dir, "--checkpoint-dir " + config_.checkpoint_dir);
    }
    if (!config_.metrics.empty()) metrics_path_ = require_output_file(config_.metrics, "--metrics " + config_.metrics);
    // The documented continuation: --resume X --checkpoint X rewrites X.
    require_distinct_files(inputs, outputs, {{"--checkpoint", "--resume"}});
    if (!checkpoint_dir_.empty()) {
      require_no_checkpoint_names(checkpoint_dir_, "--checkpoint-dir " + config_.checkpoint_dir,
                                  {{"--metrics", metrics_path_}});
    }
    // A --checkpoint-dir's leftovers are removed once the folder is known to be this run's (check_checkpoint_dir).
    if (!checkpoint_path_.empty()) note_removed(remove_stale_temporaries(checkpoint_path_));
  });
}

void Trainer::note_removed(const std::vector<std::string>& stale) const {
  for (const std::string& file : stale) {
    std::printf("note: removed %s, left by an earlier run that was killed while writing a checkpoint\n",
                printable(file, 200).c_str());
  }
}

void Trainer::check_checkpoint_dir() {
  comm_.agreed([&] {
    if (!comm_.root() || checkpoint_dir_.empty()) return;
    // The steps this run may write a checkpoint at: up to the last of its epochs, or --max-steps.
    const int64_t epochs_left = std::max<int64_t>(0, config_.epochs - start_epoch_);
    int64_t last = std::max(global_step_, global_step_ + epochs_left * steps_per_epoch_ - resume_epoch_step_);
    if (config_.max_steps > 0) last = std::min<int64_t>(last, config_.max_steps);
    claim_checkpoint_dir(checkpoint_dir_, "--checkpoint-dir " + config_.checkpoint_dir, run_id_, global_step_, last);
    note_removed(remove_stale_temporaries(checkpoint_dir_, is_checkpoint_name));
  });
}

void Trainer::load_data() {
  const int p = comm_.size(), r = comm_.rank();
  Shard shard;
  Targets targets;
  comm_.agreed([&] {
    activation_ = parse_activation(config_.activation);
    parse_hidden(config_.hidden);
    train_info_ = inspect_datasets(config_.data_files, "--data", config_.x_dataset, config_.y_dataset);
    if (train_info_.samples < p) {
      throw Error(train_info_.what + ": " + std::to_string(train_info_.samples) +
                  " sample(s) cannot be split over " + std::to_string(p) + " ranks (need at least one per rank)");
    }
    if (config_.loss == "auto") {
      loss_ = train_info_.integer_targets ? Loss::kSoftmax : Loss::kMse;
    } else {
      loss_ = parse_loss(config_.loss);
    }
    if (config_.global_batch_size > 0 && config_.global_batch_size < p) {
      throw Error("--global-batch-size " + std::to_string(config_.global_batch_size) + ": must be at least the " +
                  std::to_string(p) + " ranks");
    }
  });
  const double per_rank = memory_per_rank(comm_.node_size());
  long offset = 0, count = 0;
  shard_range(train_info_.samples, p, r, &offset, &count);
  // Streaming only when asked for: a shard too big for memory is an error
  // that suggests it (streaming a file whose size is absurd would start a
  // pass of days rather than fail).
  const double cache_mb = config_.cache_mb;
  streaming_ = cache_mb > 0;
  stream_offset_ = offset;
  stream_count_ = count;
  // Setup passes read blocks of a quarter of the cache: within the memory bound too.
  if (streaming_) {
    stream_scan_rows_ = std::max(1L, static_cast<long>(cache_mb * (1 << 20) / 4 / stream_row_bytes(train_info_, loss_)));
  }
  comm_.agreed([&] {
    if (streaming_ && config_.val_split > 0) {
      throw Error("--val-split: cannot hold out samples from a streamed dataset (--cache-mb); give --val");
    }
    if (streaming_) {  // one pass: every value and label checked now, so reads in training cannot fail
      scan_shard(train_info_, offset, count, loss_, stream_scan_rows_, [&](const Shard&, const Targets& t) {
        targets.max_label = std::max(targets.max_label, t.max_label);
      });
      return;
    }
    try {
      require_memory(shard_bytes(train_info_, count), per_rank, comm_.node_size(),
                     train_info_.what + ": this rank's " + std::to_string(count) + " samples x " +
                         std::to_string(train_info_.features) + " features");
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; or stream the data, holding a part in memory: --cache-mb " +
                  std::to_string(std::max(16L, static_cast<long>(per_rank / 4 / (1 << 20)))));
    }
    shard = read_shard(train_info_, offset, count, /*compact=*/true);
    targets = make_targets(train_info_, shard, loss_);
  });
  classes_ = comm_.max(targets.max_label) + 1;
  classes_ = std::max<long>(classes_, static_cast<long>(train_info_.names.labels.size()));  // named, if not all seen
  names_ = train_info_.names;
  if (config_.val_split > 0) hold_out_validation(&shard, &targets);

  if (!config_.val.empty()) {
    Shard vshard;
    comm_.agreed([&] {
      const std::string what = "--val " + config_.val;
      DatasetInfo info = inspect_dataset(config_.val, what, config_.x_dataset, config_.y_dataset);
      if (info.features != train_info_.features) {
        throw Error(what + ": has " + std::to_string(info.features) + " features but the training data has " +
                    std::to_string(train_info_.features));
      }
      require_same_names(info.names, what, train_info_.names, train_info_.what);
      if (loss_ == Loss::kMse && info.target_width != train_info_.target_width) {
        throw Error(what + ": has " + std::to_string(info.target_width) + " target columns but the training data has " +
                    std::to_string(train_info_.target_width));
      }
      long offset = 0, count = 0;
      shard_range(info.samples, p, r, &offset, &count);
      require_memory(shard_bytes(info, count), per_rank, comm_.node_size(),
                     what + ": this rank's " + std::to_string(count) + " samples x " + std::to_string(info.features) +
                         " features");
      vshard = read_shard(info, offset, count);
      val_targets_ = make_targets(info, vshard, loss_);
      if (loss_ == Loss::kSoftmax && val_targets_.max_label >= classes_) {
        throw Error(what + ": label " + std::to_string(val_targets_.max_label) +
                    " is not a class of the training data (0.." + std::to_string(classes_ - 1) + ")");
      }
    });
    val_x_ = std::move(vshard.x);
    has_val_ = true;
  }

  standardize_inputs(&shard);
  const long g = config_.global_batch_size;
  const long requested = g > 0 ? g / p + (r < g % p ? 1 : 0) : config_.batch_size;
  // A batch larger than the shard is the whole shard (full-batch steps): the
  // same sums, without buffers for samples that do not exist.
  const long batch = std::min(requested, streaming_ ? count : shard.count);
  if (comm_.root() && batch < requested && !config_.quiet) {
    std::printf("note: %s %ld is more than the %ld samples of rank 0: every step uses each rank's whole shard\n",
                g > 0 ? "--global-batch-size" : "--batch-size", g > 0 ? g : config_.batch_size, batch);
  }
  if (streaming_) {
    StreamShape shape;
    comm_.agreed([&] {
      shape = stream_shape(cache_mb * (1 << 20), stream_row_bytes(train_info_, loss_), batch, count);
    });
    source_ = std::make_unique<StreamSource>(train_info_, offset, count, loss_, standardization_, batch,
                                             config_.shuffle, config_.seed, r, shape);
    if (comm_.root() && !config_.quiet) {
      const auto* stream = static_cast<const StreamSource*>(source_.get());
      std::printf("nn_dist: streaming: %.0f MiB of samples per rank at most, windows of %ld rows read in blocks of %ld "
                  "(%s)\n",
                  cache_mb, shape.window_rows, shape.block_rows,
                  stream->mapped() ? "X mapped, read in place" : "X copied: chunked, filtered or converted storage");
    }
  } else if (!shard.compact.empty()) {
    CompactColumns compact{std::move(shard.compact), train_info_.x_width, train_info_.features, shard.count,
                           standardization_};
    source_ = std::make_unique<BatchSource>(std::move(compact), std::move(targets), batch, config_.shuffle,
                                            config_.seed, r);
  } else {
    source_ = std::make_unique<BatchSource>(std::move(shard.x), std::move(targets), batch, config_.shuffle,
                                            config_.seed, r);
  }
  steps_per_epoch_ = comm_.max(source_->steps());
}

void Trainer::hold_out_validation(Shard* shard, Targets* targets) {
  // Sample i of the dataset is held out when a hash of (seed, i) falls below
  // the fraction: the same samples at any rank count, and no class order
  // in the files matters. Targets are split alongside the features.
  const long n = shard->count, d = train_info_.features;
  std::vector<char> held(static_cast<std::size_t>(n));
  long held_count = 0;
  for (long j = 0; j < n; ++j) {
    const uint64_t h = mix_seed(config_.seed, static_cast<uint64_t>(shard->offset + j), 0x7a11d5u);
    held[j] = static_cast<double>(h >> 11) * 0x1.0p-53 < config_.val_split;
    held_count += held[j];
  }
  const long kept = n - held_count;
  const bool compact = !shard->compact.empty();
  const std::size_t width = compact ? static_cast<std::size_t>(train_info_.x_width) : 0;
  const long d_all = compact ? train_info_.features : d;
  Matrix<float> train_x(compact ? 0 : d_all, compact ? 0 : kept), hold_x(d_all, held_count);
  std::vector<unsigned char> train_compact(compact ? width * static_cast<std::size_t>(d_all * kept) : 0);
  Targets train_t, hold_t;
  const bool labels = !targets->labels.empty();
  if (!labels) {
    train_t.values.resize(targets->values.rows(), kept);
    hold_t.values.resize(targets->values.rows(), held_count);
  }
  for (long j = 0, a = 0, b = 0; j < n; ++j) {
    Targets& t = held[j] ? hold_t : train_t;
    const long at = held[j] ? b++ : a++;
    if (!compact) {
      (held[j] ? hold_x : train_x).col(at) = shard->x.col(j);
    } else if (!held[j]) {
      const std::size_t column = width * static_cast<std::size_t>(d_all);
      std::memcpy(train_compact.data() + column * at, shard->compact.data() + column * j, column);
    } else {  // validation is kept as float32: float(v), exactly the stored value
      for (long f = 0; f < d_all; ++f) {
        hold_x(f, at) = static_cast<float>(
            compact_value(*shard, train_info_.x_width, static_cast<std::size_t>(j * d_all + f)));
      }
    }
    if (labels) {
      t.labels.push_back(targets->labels[j]);
      t.max_label = std::max<long>(t.max_label, targets->labels[j]);
    } else {
      t.values.col(at) = targets->values.col(j);
    }
  }
  double counts[2] = {static_cast<double>(kept), static_cast<double>(held_count)};
  comm_.sum(counts, 2);
  const long fewest = comm_.min(kept);
  comm_.agree(fewest > 0 && counts[1] > 0
                  ? ""
                  : "--val-split " + fmt("%g", config_.val_split) + ": leaves " +
                        (counts[1] == 0 ? std::string("no validation sample") : "a rank without training samples") +
                        " out of " + std::to_string(train_info_.samples) + " samples");
  if (comm_.root() && !config_.quiet) {
    std::printf("nn_dist: --val-split %g: %.0f of the %ld samples held out for validation, %.0f for training\n",
                config_.val_split, counts[1], train_info_.samples, counts[0]);
  }
  train_info_.samples = static_cast<long>(counts[0]);
  shard->x = std::move(train_x);
  shard->compact = std::move(train_compact);
  shard->count = kept;
  *targets = std::move(train_t);
  val_x_ = std::move(hold_x);
  val_targets_ = std::move(hold_t);
  has_val_ = true;
}

void Trainer::standardize_inputs(Shard* shard) {
  const long d = train_info_.features;
  // The stored values, whichever form they are kept in.
  const bool compact = !shard->compact.empty();
  // Calls f(feature, value) for every stored value of this rank's samples:
  // from the shard in memory, or (streaming) from one more pass over the file.
  const auto each_value = [&](auto&& f) {
    const auto visit = [&](const Shard& s) {
      const bool bytes = !s.compact.empty();
      for (long j = 0; j < s.count; ++j) {
        for (long i = 0; i < d; ++i) {
          f(i, !bytes ? static_cast<double>(s.x(i, j))
                      : compact_value(s, train_info_.x_width, static_cast<std::size_t>(j * d + i)));
        }
      }
    };
    if (streaming_) {
      scan_shard(train_info_, stream_offset_, stream_count_, loss_, stream_scan_rows_,
                 [&](const Shard& b, const Targets&) { visit(b); });
    } else {
      visit(*shard);
    }
  };
  const std::string ckpt = checkpoint_to_load();
  Standardization& st = standardization_;
  int64_t saved = 0;
  comm_.agreed([&] {
    if (!comm_.root() || ckpt.empty()) return;
    st = read_checkpoint_standardization(ckpt, checkpoint_flag(), d);
    saved = st.empty() ? 0 : 1;
    if (!saved && (config_.standardize || config_.scale != 1)) {
      const std::string flag = config_.standardize ? "--standardize" : "--scale";
      throw Error(flag + ": " + checkpoint_flag() + " was trained on features that were not standardised or scaled; "
                  "drop " + flag + " to continue it");
    }
  });
  comm_.broadcast(&saved, 1);
  if (saved) {
    st.mean.resize(d);
    st.scale.resize(d);
    comm_.broadcast(st.mean.data(), static_cast<int>(d));
    comm_.broadcast(st.scale.data(), static_cast<int>(d));
    if (comm_.root() && !config_.standardize && !config_.quiet) {
      std::printf("note: applying the standardisation stored in %s (/preprocess)\n", ckpt.c_str());
    }
  } else if (config_.standardize) {
    // Two passes in float64, each summed over the ranks: the means, then the
    // squared deviations from them (the population standard deviation, NumPy's std).
    const double n = static_cast<double>(train_info_.samples);
    std::vector<double> sums(d, 0.0), squares(d, 0.0);
    each_value([&](long f, double v) { sums[f] += v; });
    comm_.sum(sums.data(), static_cast<int>(d));
    st.mean.resize(d);
    for (long f = 0; f < d; ++f) st.mean[f] = sums[f] / n;
    each_value([&](long f, double v) {
      const double dev = v - st.mean[f];
      squares[f] += dev * dev;
    });
    comm_.sum(squares.data(), static_cast<int>(d));
    st.scale.resize(d);
    std::string constant;
    long constants = 0;
    for (long f = 0; f < d; ++f) {
      const double sd = std::sqrt(squares[f] / n);
      // Constant up to rounding: centred, not scaled (dividing would blow up noise).
      const bool flat = !(sd > 1e-12 * std::max(1.0, std::fabs(st.mean[f])));
      st.scale[f] = flat ? 1.0 / config_.scale : sd;  // --scale still applies to a constant feature
      if (flat && ++constants <= 10) constant += (constant.empty() ? "" : ", ") + std::to_string(f);
    }
    if (comm_.root() && constants > 0) {
      std::fprintf(stderr, "warning: --standardize: %ld of the %ld features of --data %s are constant (feature%s %s%s): "
                           "centred, not scaled\n",
                   constants, d, printable(config_.data, 200).c_str(), constants > 1 ? "s" : "", constant.c_str(),
                   constants > 10 ? ", ..." : "");
    }
  } else if (config_.scale != 1) {  // --scale alone: x * s, written as (x - 0) / (1 / s)
    st.mean.assign(d, 0.0);
    st.scale.assign(d, 1.0 / config_.scale);
  }
  if (!compact && !streaming_) apply_standardization(st, &shard->x);  // else converted per batch
  if (has_val_) apply_standardization(st, &val_x_);
}

void Trainer::require_model_memory(const std::vector<long>& sizes, long max_batch, bool from_checkpoint) const {
  const int states = static_cast<int>(optimizer_state_names(config_.optimizer).size());
  const ModelMemory need = model_memory(sizes, max_batch, states);
  const std::string model =
      "the model " + sizes_string(sizes) + " (" + fmt("%.3g", need.parameter_count) + " parameters)";
  std::string what;
  if (loss_ == Loss::kSoftmax && sizes.back() > 2 && sizes.back() == *std::max_element(sizes.begin(), sizes.end())) {
    what = "--data " + config_.data + ": label " + std::to_string(sizes.back() - 1) + " makes " +
           std::to_string(sizes.back()) + " classes; " + model;
  } else if (need.activation_bytes > need.parameter_bytes) {
    const bool global = config_.global_batch_size > 0;
    what = std::string(global ? "--global-batch-size " : "--batch-size ") +
           std::to_string(global ? config_.global_batch_size : config_.batch_size) + ": batches of " +
           std::to_string(max_batch) + " samples through " + model;
  } else if (from_checkpoint && !config_.hidden_given) {
    what = checkpoint_flag() + ": " + model;
  } else {
    what = "--hidden " + config_.hidden + ": " + model;
  }
  require_memory(need.total(), memory_per_rank(comm_.node_size()), comm_.node_size(), what);
}

void Trainer::build_model() {
  const std::vector<long> sizes = model_sizes();
  allocate_model(sizes);
  initialise_parameters();
  check_checkpoint_dir();
  start_gradient_sum();
  open_metrics();
  print_banner();
}

std::vector<long> Trainer::model_sizes() {
  long outputs = 0;
  switch (loss_) {
    case Loss::kSoftmax: outputs = classes_; break;
    case Loss::kLogistic: outputs = 1; break;
    case Loss::kMse: outputs = train_info_.target_width; break;
  }
  std::vector<long> sizes{train_info_.features};
  for (long h : parse_hidden(config_.hidden)) sizes.push_back(h);
  sizes.push_back(outputs);
  const std::string ckpt = checkpoint_to_load();
  if (ckpt.empty()) return sizes;

  // --init / --resume: rank 0 reads the checkpoint's description, every rank
  // agrees on its errors, and the architecture is broadcast.
  const std::string what = checkpoint_flag();
  SavedModel saved;
  comm_.agreed([&] {
    if (!comm_.root()) return;
    CheckpointModel m = read_checkpoint_model(ckpt, what);
    const Activation act = parse_activation(m.activation);
    const Loss loss = parse_loss(m.loss);
    if (m.sizes.front() != sizes.front()) {
      throw Error(what + ": the checkpoint's input width " + std::to_string(m.sizes.front()) +
                  " does not fit the data's " + std::to_string(sizes.front()) + " features");
    }
    check_checkpoint_names(m.names, what);
    if (m.sizes.back() != outputs) {
      throw Error(what + ": the checkpoint's output width " + std::to_string(m.sizes.back()) +
                  " does not fit the data's " + std::to_string(outputs) + " outputs");
    }
    if (config_.hidden_given && m.sizes != sizes) {
      throw Error(what + ": the checkpoint's layers " + sizes_string(m.sizes) + " differ from --hidden (" +
                  sizes_string(sizes) + ")");
    }
    if (config_.activation_given && act != activation_) {
      throw Error(what + ": the checkpoint uses activation " + m.activation + ", not --activation " +
                  config_.activation);
    }
    if (loss != loss_) {
      throw Error(what + ": the checkpoint was trained with loss " + m.loss + ", this data and --loss give " +
                  loss_name(loss_));
    }
    saved.activation = static_cast<int64_t>(act);
    saved.sizes = m.sizes;
  });
  int64_t header[2] = {static_cast<int64_t>(saved.sizes.size()), saved.activation};
  comm_.broadcast(header, 2);
  std::vector<int64_t> widths(saved.sizes.begin(), saved.sizes.end());
  widths.resize(header[0]);
  comm_.broadcast(widths.data(), static_cast<int>(header[0]));
  activation_ = static_cast<Activation>(header[1]);
  return std::vector<long>(widths.begin(), widths.end());
}

std::string Trainer::checkpoint_to_load() const { return !config_.resume.empty() ? config_.resume : config_.init; }

std::string Trainer::checkpoint_flag() const {
  return (!config_.resume.empty() ? "--resume " : "--init ") + checkpoint_to_load();
}

void Trainer::allocate_model(const std::vector<long>& sizes) {
  const long max_batch = std::max<long>(source_->batch(), 256);  // training and evaluation batches
  comm_.agreed([&] { require_model_memory(sizes, max_batch, !checkpoint_to_load().empty()); });
  mlp_ = std::make_unique<Mlp<float>>(Layout(sizes), activation_, loss_, max_batch);
  const Layout& layout = mlp_->layout();
  params_.assign(layout.total(), 0.0f);
  grad_.assign(layout.total(), 0.0f);
  optimizer_ = std::make_unique<Optimizer>(config_.optimizer, layout.total());
}

void Trainer::initialise_parameters() {
  // Rank 0 reads the checkpoint (or draws the initial weights) and broadcasts
  // parameters, optimizer state and progress: every rank starts with the same bits.
  const Layout& layout = mlp_->layout();
  const std::string ckpt = checkpoint_to_load();
  const std::string what = checkpoint_flag();
  double own_batch = static_cast<double>(source_->batch());
  comm_.sum(&own_batch, 1);
  global_batch_ = static_cast<long>(own_batch);
  peak_lr_ = nn_dist::peak_lr(config_.optimizer.lr, config_.schedule, global_batch_);
  comm_.agreed([&] { check_lr_min(config_.schedule, peak_lr_); });
  int64_t progress[4] = {0, 0, static_cast<int64_t>(config_.seed), 0};  // epoch, step, seed, step in the epoch
  if (!ckpt.empty()) {
    comm_.agreed([&] {
      if (!comm_.root()) return;
      read_checkpoint_params(ckpt, what, layout, params_.data());
      if (!config_.resume.empty()) {
        TrainingState state = read_checkpoint_state(ckpt, what, layout, *optimizer_);
        progress[0] = state.epoch;
        progress[1] = state.global_step;
        progress[2] = static_cast<int64_t>(state.seed);
        progress[3] = state.epoch_step;
        run_id_ = state.run_id;  // a continuation is the same run
        note_schedule_changes(state);
        if (state.epoch_step > 0) {
          check_mid_epoch_resume(state, global_batch_);
          std::copy(state.epoch_sums, state.epoch_sums + 3, resume_epoch_sums_);
        } else if (state.ranks != comm_.size()) {
          std::printf("note: resuming on %d ranks a run saved on %lld: the parameters, optimizer state and step "
                      "count carry over; the shards and shuffles differ, so the bits differ from an uninterrupted "
                      "run\n",
                      comm_.size(), static_cast<long long>(state.ranks));
        }
      }
    });
  } else if (comm_.root()) {
    init_parameters(layout, activation_, config_.seed, params_.data());
  }
  if (comm_.root() && run_id_.empty()) run_id_ = new_run_id();  // a fresh run, or one resumed from a file without an id
  comm_.broadcast(params_.data(), params_.size());
  comm_.broadcast(progress, 4);
  comm_.sum(resume_epoch_sums_, 3);  // rank 0's values (the others hold zeros)
  for (float* state : optimizer_->state()) comm_.broadcast(state, optimizer_->size());
  int64_t opt_step = optimizer_->step();
  comm_.broadcast(&opt_step, 1);
  optimizer_->set_step(opt_step);
  start_epoch_ = progress[0];
  global_step_ = progress[1];
  resume_epoch_step_ = progress[3];
  if (!config_.resume.empty()) config_.seed = static_cast<uint64_t>(progress[2]);
  source_->set_seed(config_.seed);  // a resumed run keeps its shuffle stream
}

void Trainer::check_mid_epoch_resume(const TrainingState& state, long global_batch) const {
  const std::string saved = checkpoint_flag() + ": was saved in the middle of epoch " +
                            std::to_string(state.epoch + 1) + " (after step " + std::to_string(state.epoch_step) + ")";
  const bool same = state.ranks == comm_.size() && state.global_batch == global_batch &&
                    state.samples == train_info_.samples && state.epoch_step < steps_per_epoch_;
  if (!same) {
    throw Error(saved + " by " + std::to_string(state.ranks) + " ranks, global batch " +
                std::to_string(state.global_batch) + ", " + std::to_string(state.samples) + " samples; this run has " +
                std::to_string(comm_.size()) + " ranks, global batch " + std::to_string(global_batch) + ", " +
                std::to_string(train_info_.samples) +
                " samples. A mid-epoch checkpoint continues only the same run (run it as saved, or resume from an "
                "epoch-end checkpoint)");
  }
  // Checkpoints written before the order was recorded continue as before, unchecked.
  if (!state.sample_order.empty() && state.sample_order != source_->sample_order()) {
    throw Error(saved + " with the samples " + state.sample_order + "; this run takes them " +
                source_->sample_order() + " (--no-shuffle and --cache-mb decide it), so the rest of the epoch would "
                "train some samples twice and skip others: resume it with the flags it was saved with, or resume "
                "from an epoch-end checkpoint");
  }
}

void Trainer::note_schedule_changes(const TrainingState& state) const {
  if (!state.has_schedule) return;  // written before schedules were recorded
  const std::string changed = schedule_changes(state.schedule, state.lr, state.lr_peak, config_.schedule,
                                               config_.optimizer.lr, peak_lr_);
  if (changed.empty()) return;
  std::printf("note: %s: the learning-rate schedule differs from the checkpoint's (%s); continuing with this run's "
              "flags\n",
              checkpoint_flag().c_str(), changed.c_str());
}

void Trainer::start_gradient_sum() {
  watchdog::Wait wait("setting up the gradient sum");
  sync_ = GradientSync::create(comm_, grad_.data(), grad_.size(), mlp_->pieces(),
                               static_cast<std::size_t>(config_.bucket_mb * 1024 * 1024), config_.overlap,
                               config_.allreduce, 1 + optimizer_->state().size());
  // The gradient sum decides where the parameters and optimizer state live
  // (e.g. once per node in shared memory); the trainer uses what it returns.
  params_data_ = sync_->place(&params_, optimizer_.get(), mlp_.get());
}

void Trainer::open_metrics() {
  comm_.agreed([&] {
    if (!comm_.root() || config_.metrics.empty()) return;
    const bool existed = std::filesystem::exists(metrics_path_);
    const bool append = !config_.resume.empty() && existed;
    if (append) {
      std::ifstream in(metrics_path_);
      std::string header;
      std::getline(in, header);
      if (header.rfind("epoch,", 0) == 0 && header != kMetricsHeader) {
        std::fprintf(stderr, "note: --metrics %s: its header is not this version's (%s); the rows appended now "
                             "have the columns %s\n",
                     printable(config_.metrics, 200).c_str(), printable(header, 200).c_str(), kMetricsHeader);
      }
    }
    try {
      metrics_.open(metrics_path_, append, "--metrics " + config_.metrics);
      if (!append) metrics_.write(std::string(kMetricsHeader) + "\n");
    } catch (const Error&) {
      metrics_.close();
      if (!existed) std::filesystem::remove(metrics_path_);  // leave no empty file behind
      throw;
    }
  });
}

void Trainer::print_banner() const {
  if (!comm_.root()) return;
  if (sync_->mode() == AllreduceMode::kNone && comm_.size() > 1) {
    std::fprintf(stderr, "note: --allreduce none: the ranks do not sum their gradients; each trains its own model "
                         "(a benchmark of the scaling ceiling, not data-parallel training)\n");
  }
  if (config_.quiet) return;
  const Layout& layout = mlp_->layout();
  std::printf("nn_dist: %d rank(s), %ld samples x %ld features, layers %s, %s hidden, %s loss, batch %ld/rank, "
              "%ld steps/epoch, %zu parameters, %s kernel\n",
              comm_.size(), train_info_.samples, train_info_.features, sizes_string(layout.sizes()).c_str(),
              activation_name(activation_).c_str(), loss_name(loss_).c_str(), source_->batch(), steps_per_epoch_,
              layout.num_parameters(), gemm_kernel_name(gemm_kernel()).c_str());
  if (comm_.size() > 1) {
    std::printf("nn_dist: gradient sum: %s (%s)\n", allreduce_mode_name(sync_->mode()).c_str(),
                sync_->reason().c_str());
  }
  if (schedule_in_use(config_.schedule)) {
    std::printf("nn_dist: learning rate: %s\n",
                describe_schedule(config_.schedule, config_.optimizer.lr, peak_lr_, global_batch_).c_str());
  }
  std::fflush(stdout);
}

bool Trainer::train_step(long step) {
  if (config_.max_steps > 0 && global_step_ >= config_.max_steps) return false;
  // The step's index counts from the start of training in this run's epochs:
  // the global step, unless an epoch-end resume changed the steps per epoch.
  step_lr_ = lr_at(config_.schedule, peak_lr_, epoch_ * steps_per_epoch_ + step, steps_per_epoch_);
  optimizer_->set_lr(step_lr_);
  const auto t0 = Clock::now();
  const long n = source_->load(step);
  const auto t1 = Clock::now();
  // Besides the loss sums, the step's sum carries whether this rank was
  // asked to stop and whether its checkpoint clock ran out: every rank learns
  // both at the same step, with no collective of their own.
  double stats[kStepStats] = {};
  const int signal = stop_signal();
  stats[kStatStopRanks] = signal != 0 ? 1.0 : 0.0;
  stats[kStatStopSeconds] = signal != 0 ? seconds_since_stop_signal() : 0.0;
  stats[kStatStopSignals] = signal;
  stats[kStatCheckpointDue] =
      config_.checkpoint_minutes > 0 && seconds_between(last_checkpoint_, t1) >= 60 * config_.checkpoint_minutes;
  if (n > 0) {
    mlp_->forward(params_data_, source_->x(), n);
    const LossSums sums = mlp_->loss_and_delta(source_->labels(), source_->values());
    stats[kStatLoss] = sums.loss;
    stats[kStatCorrect] = sums.correct;
    stats[kStatCount] = static_cast<double>(n);
  }
  sync_->start_stats(stats);
  const auto t2 = Clock::now();
  sync_->reset_test_seconds();
  float* local_grad = sync_->backward_buffer();
  if (n > 0) {
    mlp_->backward(params_data_, source_->x(), local_grad, sync_.get());
  } else {
    std::fill(local_grad, local_grad + grad_.size(), 0.0f);
    sync_->all_pieces_done();
  }
  sync_->publish();
  // The next batch is gathered now, while slower ranks may still be in backprop.
  const auto t3 = Clock::now();
  if (step + 1 < steps_per_epoch_) source_->prefetch(step + 1);
  const auto t3b = Clock::now();
  watchdog::set_step(global_step_ + 1);
  const double* sum = nullptr;
  double optimizer_seconds = 0;
  bool finite = true;
  {
    watchdog::Wait wait("summing the gradients");
    sum = sync_->wait_stats();
    finite = std::isfinite(sum[kStatLoss]);
    const double count = sum[kStatCount];
    sync_->wait([&](std::size_t begin, std::size_t end, const float* first, const float* second) {
      if (!finite) return;
      const auto u0 = Clock::now();
      optimizer_->update(params_data_, first, second, static_cast<float>(1.0 / count), begin, end);
      optimizer_seconds += seconds_between(u0, Clock::now());
    });
  }
  const double count = sum[kStatCount];
  stop_ranks_ = sum[kStatStopRanks];
  stop_seconds_ = sum[kStatStopSeconds];
  stop_signals_ = sum[kStatStopSignals];
  time_due_ = sum[kStatCheckpointDue] > 0;
  if (stop_ranks_ > 0) stop_seen_ = Clock::now();
  if (!finite) {
    // The data holds no NaN or Inf (checked when read): a feature that is
    // one now was pushed beyond float's range by --scale or a standardisation,
    // and no learning rate helps. Every rank is here (the loss is the sum's).
    const long feature = comm_.max(n > 0 ? first_nonfinite_feature(source_->x(), train_info_.features, n) : -1L);
    if (feature >= 0) {
      const bool scaled = config_.scale != 1;
      throw AgreedError((scaled ? "--scale " + fmt("%g", config_.scale) : std::string("the standardisation")) +
                        " takes feature " + std::to_string(feature) + " of the training data beyond float's range (" +
                        fmt("%g", std::numeric_limits<float>::max()) + ") at step " + std::to_string(global_step_ + 1) +
                        (scaled ? ": give a smaller --scale" : ": the data's range is too wide for float"));
    }
    throw AgreedError("training diverged: the loss is " + fmt("%g", sum[kStatLoss]) + " at step " +
                      std::to_string(global_step_ + 1) + " (try a smaller --lr)" +
                      (!config_.checkpoint.empty()       ? "; the last checkpoint " + config_.checkpoint + " is unchanged"
                       : !config_.checkpoint_dir.empty() ? "; the checkpoints in " + config_.checkpoint_dir + " are unchanged"
                                                         : ""));
  }
  optimizer_->finish_step();
  ++global_step_;
  epoch_sums_[0] += sum[kStatLoss];
  epoch_sums_[1] += sum[kStatCorrect];
  epoch_sums_[2] += count;
  const auto t4 = Clock::now();
  if (global_step_ > config_.warmup_steps) {
    times_.data += seconds_between(t0, t1) + seconds_between(t3, t3b);
    times_.forward += seconds_between(t1, t2);
    times_.backward += seconds_between(t2, t3) - sync_->test_seconds();
    times_.sync_test += sync_->test_seconds();
    times_.sync_wait += seconds_between(t3b, t4) - optimizer_seconds;
    times_.optimizer += optimizer_seconds;
    times_.total += seconds_between(t0, t4);
    times_.steps += 1;
    times_.samples += count;
  }
  return true;
}

void Trainer::evaluate(double* loss, double* accuracy) {
  double sums[3] = {0, 0, 0};
  const long n = val_x_.cols(), batch = mlp_->max_batch();
  for (long begin = 0; begin < n; begin += batch) {
    const long m = std::min(batch, n - begin);
    mlp_->forward(params_data_, val_x_.data() + begin * val_x_.rows(), m);
    const LossSums s = mlp_->loss_only(
        val_targets_.labels.empty() ? nullptr : val_targets_.labels.data() + begin,
        val_targets_.labels.empty() ? val_targets_.values.data() + begin * val_targets_.values.rows() : nullptr);
    sums[0] += s.loss;
    sums[1] += s.correct;
    sums[2] += static_cast<double>(m);
  }
  comm_.sum(sums, 3);
  *loss = sums[0] / sums[2];
  *accuracy = sums[1] / sums[2];
}

bool Trainer::checkpoint_due() const {
  if (!checkpointing()) return false;
  return time_due_ || (config_.checkpoint_every_steps > 0 && global_step_ % config_.checkpoint_every_steps == 0);
}

void Trainer::save_checkpoint(int64_t epoch, int64_t epoch_step) {
  // Rank 0 bounds its own write by the timeout (hung I/O); the others know
  // from the step's sum that it writes, and wait up to twice as long.
  watchdog::Wait wait(comm_.root() ? "writing a checkpoint" : "waiting for rank 0 to write a checkpoint",
                      comm_.root() ? 1.0 : 2.0);
  comm_.agreed([&] {
    if (!comm_.root()) return;
    TrainingState state;
    state.epoch = epoch;
    state.epoch_step = epoch_step;
    if (epoch_step > 0) std::copy(epoch_sums_, epoch_sums_ + 3, state.epoch_sums);
    state.global_step = global_step_;
    state.seed = config_.seed;
    state.ranks = comm_.size();
    state.global_batch = global_batch_;
    state.samples = train_info_.samples;
    state.sample_order = source_->sample_order();
    state.options = config_.options_text;
    state.has_schedule = true;
    state.schedule = config_.schedule;
    state.lr = config_.optimizer.lr;
    state.lr_peak = peak_lr_;
    state.standardization = standardization_;
    state.names = names_;
    state.run_id = run_id_;
    if (checkpoint_dir_.empty()) {
      write_checkpoint(checkpoint_path_, mlp_->layout(), activation_, loss_, params_data_, *optimizer_, state,
                       "--checkpoint " + config_.checkpoint);
      return;
    }
    const std::string what = "--checkpoint-dir " + config_.checkpoint_dir;
    const std::string target = checkpoint_dir_ + "/" + checkpoint_file_name(global_step_);
    require_distinct_files(inputs_, {{"--checkpoint-dir", target}}, {{"--checkpoint-dir", "--resume"}});
    require_own_or_absent(target, what, run_id_);
    write_checkpoint(target, mlp_->layout(), activation_, loss_, params_data_, *optimizer_, state, what);
    // The run's own older checkpoints go (the one resumed from too); no other input, no other run's file.
    std::vector<NamedPath> protect;
    for (const NamedPath& in : inputs_) {
      if (in.flag != "--resume") protect.push_back(in);
    }
    prune_checkpoints(checkpoint_dir_, what, run_id_, global_step_, config_.keep_checkpoints, protect);
  });
  last_checkpoint_ = Clock::now();
  time_due_ = false;
}

void Trainer::stop_on_signal(int64_t epoch, int64_t epoch_step, bool saved) {
  if (!saved && checkpointing()) save_checkpoint(epoch, epoch_step);
  // The signal, if every rank that received one received the same.
  const double mean = stop_signals_ / stop_ranks_;
  const int signal = mean == std::floor(mean) ? static_cast<int>(mean) : 0;
  stop_exit_code_ = checkpointing() ? kResumeExitCode : 128 + (signal != 0 ? signal : SIGTERM);
  if (!comm_.root()) return;
  const double age = stop_seconds_ / stop_ranks_ + seconds_between(stop_seen_, Clock::now());
  const std::string where = "step " + std::to_string(global_step_) + " (" +
                            (epoch_step == 0 ? "the end of epoch " + std::to_string(epoch)
                                             : "step " + std::to_string(epoch_step) + " of " +
                                                   std::to_string(steps_per_epoch_) + " in epoch " +
                                                   std::to_string(epoch + 1)) +
                            ")";
  const std::string saved_where =
      !checkpointing()          ? "no checkpoint (no --checkpoint or --checkpoint-dir was given)"
      : checkpoint_dir_.empty() ? "checkpoint " + config_.checkpoint + " written"
                                : "checkpoint " + config_.checkpoint_dir + "/" + checkpoint_file_name(global_step_) +
                                      " written";
  std::printf("nn_dist: %s reached %g of %d rank(s); stopped after %s; %s; exiting %.2f s after the signal with "
              "code %d%s\n",
              signal_name(signal), stop_ranks_, comm_.size(), where.c_str(), saved_where.c_str(),
              age, stop_exit_code_, checkpointing() ? " (resume me: --resume auto or --resume FILE)" : "");
  std::fflush(stdout);
}
void Trainer::show_progress(int64_t epoch, long step, long first, Clock::time_point epoch_start, double count_before) {
  if (!comm_.root() || config_.quiet || config_.progress == "off") return;
  if (step + 1 >= steps_per_epoch_) return;  // the epoch's last step: its epoch line follows at once
  const auto now = Clock::now();
  const double interval = terminal_ ? 0.5 : config_.log_every_seconds;
  if (seconds_between(last_progress_, now) < interval) return;
  last_progress_ = now;
  const double elapsed = seconds_between(epoch_start, now);
  const double rate = (epoch_sums_[2] - count_before) / std::max(elapsed, 1e-9);
  const long done = step + 1;
  const double eta = elapsed / static_cast<double>(done - first) * static_cast<double>(steps_per_epoch_ - done);
  char line[200];
  std::snprintf(line, sizeof line, "epoch %lld/%ld  step %ld/%ld (%.0f%%)  %.0f samples/s  ETA %.*f s",
                static_cast<long long>(epoch + 1), config_.epochs, done, steps_per_epoch_,
                100.0 * static_cast<double>(done) / static_cast<double>(steps_per_epoch_), rate, eta < 10 ? 1 : 0,
                eta);
  if (terminal_) {
    std::printf("\r\033[K%s", line);  // one line, rewritten in place
    progress_shown_ = true;
  } else {
    std::printf("progress: %s\n", line);
  }
  std::fflush(stdout);
}

void Trainer::report(const EpochResult& r) {
  if (!comm_.root()) return;
  if (progress_shown_) {  // the epoch line replaces the progress line
    std::printf("\r\033[K");
    progress_shown_ = false;
  }
  const bool classify = is_classification(loss_);
  if (!config_.quiet) {
    std::string line = "epoch " + std::to_string(r.epoch) + "/" + std::to_string(config_.epochs) + "  loss " +
                       fmt("%.5f", r.train_loss);
    if (classify) line += "  acc " + fmt("%.4f", r.train_accuracy);
    if (r.has_val) {
      line += "  val_loss " + fmt("%.5f", r.val_loss);
      if (classify) line += "  val_acc " + fmt("%.4f", r.val_accuracy);
    }
    line += "  " + fmt("%.0f", r.samples_per_sec) + " samples/s  " + fmt("%.2f", r.seconds) + " s";
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
}

void Trainer::write_metrics(const EpochResult& r) {
  // Agreed: a full disk under the metrics file stops every rank, not just rank 0.
  comm_.agreed([&] {
    if (!comm_.root() || !metrics_.is_open()) return;
    const bool classify = is_classification(loss_);
    metrics_.write(std::to_string(r.epoch) + ',' + fmt("%.8g", r.train_loss) + ',' +
                   (classify ? fmt("%.6f", r.train_accuracy) : "") + ',' + (r.has_val ? fmt("%.8g", r.val_loss) : "") +
                   ',' + (r.has_val && classify ? fmt("%.6f", r.val_accuracy) : "") + ',' +
                   fmt("%.1f", r.samples_per_sec) + ',' + fmt("%.4f", r.seconds) + ',' + fmt("%.10g", r.lr) + '\n');
  });
}

void Trainer::start_epoch(int64_t epoch) {
  epoch_ = epoch;
  source_->start_epoch(epoch);
  epoch_sums_[0] = epoch_sums_[1] = epoch_sums_[2] = 0;
}

EpochResult Trainer::run() {
  EpochResult result;
  if (start_epoch_ >= config_.epochs && comm_.root()) {
    std::printf("nothing to do: the checkpoint has completed %lld of --epochs %ld\n",
                static_cast<long long>(start_epoch_), config_.epochs);
  }
  last_checkpoint_ = Clock::now();
  for (int64_t epoch = start_epoch_; epoch < config_.epochs; ++epoch) {
    const auto t0 = Clock::now();
    start_epoch(epoch);
    long first = 0;
    if (epoch == start_epoch_ && resume_epoch_step_ > 0) {  // a mid-epoch resume: the steps still due
      first = resume_epoch_step_;
      std::copy(resume_epoch_sums_, resume_epoch_sums_ + 3, epoch_sums_);
    }
    const double count_before = epoch_sums_[2];
    bool complete = true, stopping = false, saved = false;
    last_progress_ = t0;
    for (long s = first; s < steps_per_epoch_; ++s) {
      if (!train_step(s)) {
        complete = false;
        break;
      }
      show_progress(epoch, s, first, t0, count_before);
      if (s + 1 == steps_per_epoch_) {  // the epoch's end writes the checkpoint
        stopping = stop_ranks_ > 0;
      } else if (stop_ranks_ > 0) {
        stop_on_signal(epoch, s + 1, false);
        return result;
      } else if (checkpoint_due()) {
        save_checkpoint(epoch, s + 1);
      }
    }
    const double seconds = seconds_between(t0, Clock::now());
    if (epoch_sums_[2] == 0) break;  // --max-steps reached before this epoch
    result.epoch = epoch + 1;
    result.train_loss = epoch_sums_[0] / epoch_sums_[2];
    result.train_accuracy = epoch_sums_[1] / epoch_sums_[2];
    result.samples_per_sec = (epoch_sums_[2] - count_before) / seconds;
    result.seconds = seconds;
    result.lr = step_lr_;
    result.has_val = has_val_;
    if (has_val_) evaluate(&result.val_loss, &result.val_accuracy);
    report(result);
    write_metrics(result);
    if (!complete) break;
    const int64_t done = epoch + 1;
    if (checkpointing() && (done % config_.checkpoint_every == 0 || done == config_.epochs || stopping ||
                            checkpoint_due())) {
      save_checkpoint(done, 0);
      saved = true;
    }
    if (stopping && done < config_.epochs) {
      stop_on_signal(done, 0, saved);
      return result;
    }
  }
  if (config_.profile) print_profile();
  return result;
}

void Trainer::print_profile() const {
  if (!comm_.root()) return;
  const StepTimes& t = times_;
  if (t.steps == 0) {
    std::printf("profile: no steps measured (raise --max-steps above --warmup-steps %ld)\n", config_.warmup_steps);
    return;
  }
  const double ms = 1000.0 / static_cast<double>(t.steps);
  const double sps = t.samples / t.total;
  std::printf("\nper-step time over %ld steps (ms, mean)\n", t.steps);
  const std::pair<const char*, double> rows[] = {{"data", t.data},           {"forward", t.forward},
                                                 {"backward", t.backward},   {"sync (test)", t.sync_test},
                                                 {"sync (wait)", t.sync_wait}, {"optimizer", t.optimizer},
                                                 {"step", t.total}};
  for (const auto& [name, v] : rows) std::printf("  %-12s %9.4f  %5.1f%%\n", name, v * ms, 100 * v / t.total);
  std::printf("  samples/s    %9.0f\n", sps);
  if (const auto* stream = dynamic_cast<const StreamSource*>(source_.get())) {
    std::printf("  streaming: rank 0 read %.1f MB in %.3f s of its reader thread (%.0f MB/s)\n",
                stream->read_bytes() / 1e6, stream->read_seconds(),
                stream->read_bytes() / 1e6 / std::max(stream->read_seconds(), 1e-9));
  }
  std::printf(
      "BENCH_JSON {\"ranks\":%d,\"threads\":%d,\"batch_per_rank\":%ld,\"allreduce\":\"%s\",\"overlap\":%s,"
      "\"buckets\":%zu,\"steps\":%ld,"
      "\"samples_per_sec\":%.1f,\"step_ms\":%.4f,\"data_ms\":%.4f,\"forward_ms\":%.4f,\"backward_ms\":%.4f,"
      "\"sync_test_ms\":%.4f,\"sync_wait_ms\":%.4f,\"optimizer_ms\":%.4f}\n",
      comm_.size(), config_.threads, source_->batch(), allreduce_mode_name(sync_->mode()).c_str(),
      config_.overlap ? "true" : "false", sync_->num_buckets(),
      t.steps, sps, t.total * ms, t.data * ms, t.forward * ms, t.backward * ms, t.sync_test * ms, t.sync_wait * ms,
      t.optimizer * ms);
  std::fflush(stdout);
}

// The names meet here, apart from the rest of the setup: a checkpoint's
// features and classes must be the data's where both name them.
void Trainer::check_checkpoint_names(const DataNames& saved, const std::string& what) {
  require_same_names(train_info_.names, train_info_.what, saved, what);
  names_ = names_or(train_info_.names, saved);
}

}  // namespace nn_dist
