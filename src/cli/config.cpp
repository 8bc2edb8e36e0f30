// Boost.Program_options front end: flags, --config INI files (flags win),
// defaults shown by --help, and validation with one clear message per error.
#include "nn_dist/cli/config.hpp"

#include <boost/program_options.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/model/dropout.hpp"
#include "nn_dist/model/gemm.hpp"

namespace po = boost::program_options;

namespace nn_dist {

namespace {

// The options read as text, checked and converted into Config after parsing.
struct TextOptions {
  std::vector<std::string> data;
  std::string scale = "1";
  std::string optimizer, overlap, allreduce, config_file, gemm, precision;
  std::string lr_schedule, lr_scaling, lr_decay_epochs, monitor;
  long long seed = 1;
  bool no_shuffle = false;
};

po::options_description data_options(Config& c, TextOptions& t) {
  po::options_description data("Data", 100);
  data.add_options()
      ("data", po::value(&t.data), "training set (HDF5 with X: samples x features, y: labels or targets); "
       "repeat for several files read as one dataset, or give @list.txt (one file per line)")
      ("val", po::value(&c.val), "validation set in the same format, evaluated after every epoch")
      ("val-split", po::value(&c.val_split)->default_value(0),
       "without --val: hold out this fraction of the training samples (a fixed, seeded choice) for validation")
      ("x-dataset", po::value(&c.x_dataset)->default_value(c.x_dataset), "name of the feature dataset")
      ("y-dataset", po::value(&c.y_dataset)->default_value(c.y_dataset), "name of the label/target dataset")
      ("cache-mb", po::value(&c.cache_mb)->default_value(0),
       "stream the training data, holding at most about this many MiB of samples per rank (0: all in memory, "
       "unless a shard would not fit)")
      ("scale", po::value(&t.scale)->default_value("1"),
       "multiply every feature by this, e.g. 1/255 for bytes (stored in checkpoints like --standardize)")
      ("standardize", po::bool_switch(&c.standardize),
       "scale each feature to mean 0, standard deviation 1 over the training set (stored in checkpoints)");
  return data;
}

po::options_description model_options(Config& c) {
  po::options_description model("Model", 100);
  model.add_options()
      ("hidden", po::value(&c.hidden)->default_value(c.hidden), "hidden widths, comma-separated; 'none' for no hidden layer")
      ("activation", po::value(&c.activation)->default_value(c.activation), "hidden activation: relu|tanh|sigmoid|identity|gelu|gelu_tanh|silu|leaky_relu")
      ("leaky-slope", po::value(&c.leaky_slope)->default_value(c.leaky_slope), "leaky_relu: the slope for inputs below 0")
      ("dropout", po::value(&c.dropout)->default_value(c.dropout),
       "dropout rate of the hidden layers' outputs in training (inverted, as nn.Dropout): one, or one per hidden "
       "layer, e.g. 0.2,0.5")
      ("loss", po::value(&c.loss)->default_value(c.loss), "softmax|logistic|mse; auto: softmax for integer y, mse for float y")
      ("init", po::value(&c.init), "start from the /model group of this checkpoint");
  return model;
}

po::options_description training_options(Config& c, TextOptions& t) {
  po::options_description train("Training", 100);
  train.add_options()
      ("epochs", po::value(&c.epochs)->default_value(c.epochs), "total epochs (including resumed ones)")
      ("batch-size", po::value(&c.batch_size)->default_value(c.batch_size),
       "samples per rank per step (per micro-batch with --accumulate-steps)")
      ("global-batch-size", po::value(&c.global_batch_size)->default_value(0), "samples per step over all ranks (overrides --batch-size)")
      ("accumulate-steps", po::value(&c.accumulate_steps)->default_value(c.accumulate_steps),
       "micro-batches of --batch-size per step: each rank adds their gradients, then one sum over the ranks and "
       "one update (global batch: this x --batch-size x ranks)")
      ("optimizer", po::value(&t.optimizer)->default_value("sgd"), "sgd|adam|adamw")
      ("lr", po::value(&c.optimizer.lr)->default_value(c.optimizer.lr, "0.05"),
       "learning rate (with --lr-scaling: the lr for --lr-reference-batch samples per step)")
      ("lr-schedule", po::value(&t.lr_schedule)->default_value("constant"),
       "constant|step|cosine|plateau: step multiplies the lr by --lr-decay-factor at each of --lr-decay-epochs; "
       "cosine falls from the peak lr after warmup to --lr-min at the end of --epochs; plateau cuts it when "
       "--monitor stops improving")
      ("lr-decay-epochs", po::value(&t.lr_decay_epochs), "--lr-schedule step: epochs at which the lr decays, e.g. 30,60,80")
      ("lr-decay-factor", po::value(&c.schedule.decay_factor)->default_value(c.schedule.decay_factor, "0.1"),
       "--lr-schedule step: the factor at each decay epoch")
      ("lr-min", po::value(&c.schedule.lr_min)->default_value(c.schedule.lr_min), "--lr-schedule cosine: the final lr")
      ("warmup-epochs", po::value(&c.schedule.warmup_epochs)->default_value(c.schedule.warmup_epochs),
       "linear warmup from ~0 to the peak lr over this many epochs, step by step (fractions allowed, e.g. 0.5)")
      ("lr-scaling", po::value(&t.lr_scaling)->default_value("none"),
       "none|linear|sqrt: peak lr = --lr x (global batch / --lr-reference-batch), or x its square root")
      ("lr-reference-batch", po::value(&c.schedule.reference_batch)->default_value(c.schedule.reference_batch),
       "--lr-scaling: the global batch that --lr was chosen for")
      ("plateau-patience", po::value(&c.schedule.plateau_patience)->default_value(c.schedule.plateau_patience),
       "--lr-schedule plateau: epochs without improvement of --monitor before the lr is cut (PyTorch's "
       "ReduceLROnPlateau)")
      ("plateau-factor", po::value(&c.schedule.plateau_factor)->default_value(c.schedule.plateau_factor, "0.1"),
       "--lr-schedule plateau: the factor of each cut")
      ("plateau-min-lr", po::value(&c.schedule.plateau_min_lr)->default_value(c.schedule.plateau_min_lr),
       "--lr-schedule plateau: the lowest lr a cut goes to")
      ("early-stopping", po::value(&c.early_stopping)->default_value(0),
       "stop after this many epochs without improvement of --monitor (Keras' EarlyStopping; 0: off)")
      ("monitor", po::value(&t.monitor),
       "val_loss|val_accuracy|loss: the value --early-stopping and --lr-schedule plateau watch (default val_loss "
       "with validation data, else loss)")
      ("min-delta", po::value(&c.min_delta)->default_value(0),
       "--early-stopping: an improvement beats the best value by more than this")
      ("restore-best", po::bool_switch(&c.restore_best),
       "--early-stopping with --checkpoint: the file ends with the best epoch's weights, not the last")
      ("momentum", po::value(&c.optimizer.momentum)->default_value(c.optimizer.momentum), "SGD momentum")
      ("weight-decay", po::value(&c.optimizer.weight_decay)->default_value(c.optimizer.weight_decay), "L2 weight decay (adamw: decoupled, as torch.optim.AdamW)")
      ("clip-grad-norm", po::value(&c.clip_grad_norm)->default_value(0),
       "clip the gradient to this global L2 norm before each update, as torch's clip_grad_norm_ (0: off)")
      ("beta1", po::value(&c.optimizer.beta1)->default_value(c.optimizer.beta1, "0.9"), "Adam(W) beta1")
      ("beta2", po::value(&c.optimizer.beta2)->default_value(c.optimizer.beta2), "Adam(W) beta2")
      ("eps", po::value(&c.optimizer.eps)->default_value(c.optimizer.eps), "Adam(W) epsilon")
      ("seed", po::value(&t.seed)->default_value(1), "seed for initialisation and shuffling")
      ("no-shuffle", po::bool_switch(&t.no_shuffle), "keep file order (no per-epoch shuffle)")
      ("reproducible", po::bool_switch(&c.reproducible),
       "the same bits at any rank count and layout: a global order of --block-size row blocks, gradients summed "
       "exactly (64-bit fixed point); the global batch must be a multiple of --block-size x the ranks")
      ("block-size", po::value(&c.block_size)->default_value(c.block_size),
       "--reproducible: rows per block (the unit of the order and of the gradient sum)");
  return train;
}

po::options_description output_options(Config& c) {
  po::options_description output("Checkpoints and output", 100);
  output.add_options()
      ("checkpoint", po::value(&c.checkpoint), "checkpoint file written by rank 0 (atomically)")
      ("checkpoint-dir", po::value(&c.checkpoint_dir), "folder of numbered checkpoints ckpt-<step>.h5 (created if missing)")
      ("keep-checkpoints", po::value(&c.keep_checkpoints)->default_value(c.keep_checkpoints), "checkpoints kept in --checkpoint-dir")
      ("checkpoint-every", po::value(&c.checkpoint_every)->default_value(c.checkpoint_every), "epochs between checkpoints")
      ("checkpoint-every-steps", po::value(&c.checkpoint_every_steps)->default_value(0),
       "also checkpoint every N steps, mid-epoch (0: off)")
      ("checkpoint-minutes", po::value(&c.checkpoint_minutes)->default_value(c.checkpoint_minutes),
       "also checkpoint when this many minutes have passed since the last one (0: off)")
      ("resume", po::value(&c.resume), "continue the run saved in this checkpoint; auto: the newest in --checkpoint-dir "
       "(or --checkpoint if it exists), else start fresh")
      ("metrics", po::value(&c.metrics), "write per-epoch metrics to this CSV file")
      ("quiet", po::bool_switch(&c.quiet), "no per-epoch lines")
      ("progress", po::value(&c.progress)->default_value(c.progress),
       "progress within an epoch: terminal (one line that updates itself), lines (a plain line every "
       "--log-every-seconds), off; auto: terminal when the output reaches one (under mpirun: mpirun's stdout) and no "
       "batch system runs the job, else lines")
      ("log-every-seconds", po::value(&c.log_every_seconds)->default_value(c.log_every_seconds),
       "seconds between progress lines (--progress lines)");
  return output;
}

po::options_description performance_options(Config& c, TextOptions& t) {
  po::options_description perf("Performance", 100);
  perf.add_options()
      ("threads", po::value(&c.threads)->default_value(c.threads), "threads per rank: 1 (run one rank per core instead)")
      ("gemm", po::value(&t.gemm)->default_value("auto"),
       "matrix kernel: auto (the best this CPU runs for --precision)|avx512|avx2|eigen (f32; to test or compare the "
       "fallbacks)|amx|avx512_bf16 (bf16)")
      ("precision", po::value(&t.precision)->default_value("f32"),
       "f32|bf16: bf16 multiplies f32 values rounded to bf16 and sums in f32 (mixed precision: weights, gradients, "
       "optimizer and checkpoints stay f32); needs a CPU with AMX-BF16 or AVX512_BF16")
      ("bucket-mb", po::value(&c.bucket_mb)->default_value(c.bucket_mb), "gradient allreduce bucket size in MB")
      ("overlap", po::value(&t.overlap)->default_value("on"), "hierarchical sum: on, its buckets go across nodes as backprop finishes them; off, in one bucket after backprop (no effect on shared, mpi)")
      ("allreduce", po::value(&t.allreduce)->default_value("auto"),
       "gradient sum: auto|shared|hierarchical|mpi (auto: shared memory on one node, hierarchical "
       "(shared memory inside nodes, MPI_Allreduce between) on several, mpi if nodes differ in size); "
       "none: no sum, every rank trains its own model (a benchmark of the scaling ceiling)")
      ("max-steps", po::value(&c.max_steps)->default_value(0), "stop after this many steps (0: no limit; for benchmarks)")
      ("profile", po::bool_switch(&c.profile), "print the per-step time breakdown (table and JSON line)")
      ("warmup-steps", po::value(&c.warmup_steps)->default_value(c.warmup_steps), "steps left out of --profile timings")
      ("collective-timeout", po::value(&c.collective_timeout)->default_value(c.collective_timeout),
       "seconds a rank waits for the others (a stopped, dead or cut-off rank) before it aborts the job");
  return perf;
}

// Every option, in the sections --help shows; values land in c, or in t to be checked.
po::options_description option_table(Config& c, TextOptions& t) {
  po::options_description general("General", 100);
  general.add_options()
      ("help,h", "show this help")
      ("config", po::value(&t.config_file), "read options from this INI file (command-line flags win)");
  po::options_description all(100);
  all.add(data_options(c, t)).add(model_options(c)).add(training_options(c, t)).add(output_options(c));
  all.add(performance_options(c, t)).add(general);
  return all;
}

template <typename T>
void require_positive(T value, const char* flag) {
  if (!(value > 0) || !std::isfinite(static_cast<double>(value))) {
    std::ostringstream s;
    s << "--" << flag << ": must be a positive finite number, got " << value;
    throw Error(s.str());
  }
}

void require_nonnegative(double value, const char* flag) {
  if (!(value >= 0) || !std::isfinite(value)) {
    std::ostringstream s;
    s << "--" << flag << ": must be a finite number not below 0, got " << value;
    throw Error(s.str());
  }
}

// --scale: a number or a fraction A/B ("1/255").
double parse_scale(const std::string& text) {
  const std::size_t slash = text.find('/');
  const auto number = [&](const std::string& t) {
    double v = 0;
    if (!whole_number(t, &v)) throw Error("--scale: '" + printable(text) + "' is not a number or a fraction A/B");
    return v;
  };
  const double v = slash == std::string::npos ? number(text) : number(text.substr(0, slash)) / number(text.substr(slash + 1));
  if (!(std::isfinite(v) && v > 0)) throw Error("--scale: must be a positive finite number, got '" + printable(text) + "'");
  return v;
}

// Options given with an empty value, e.g. --checkpoint "" from an unset shell variable.
void reject_empty_paths(const po::variables_map& vm) {
  for (const char* name : {"val", "init", "resume", "checkpoint", "checkpoint-dir", "metrics", "config"}) {
    if (vm.count(name) && vm[name].as<std::string>().empty()) {
      throw Error(std::string("--") + name + ": the path is empty");
    }
  }
  if (vm.count("data")) {
    for (const std::string& path : vm["data"].as<std::vector<std::string>>()) {
      if (path.empty() || path == "@") throw Error("--data: the path is empty");
    }
  }
}

// A --config or @list file's text: a regular file of a sane size, with no
// binary bytes, so that an error never echoes binary data or a 10 MB line.
std::string config_text(const std::string& path, const std::string& what_given = "") {
  const std::string what = what_given.empty() ? "--config " + printable(path, 200) : what_given;
  require_input_file(path, what);
  constexpr std::size_t kMaxBytes = 1 << 20;
  std::ifstream in(path, std::ios::binary);
  std::string text;
  text.resize(kMaxBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (in.bad()) throw Error(what + ": cannot be read");
  if (text.size() > kMaxBytes) throw Error(what + ": is larger than 1 MiB; a config file holds lines 'name = value'");
  for (std::size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == 0 || (c < 0x20 && c != '\n' && c != '\r' && c != '\t')) {
      throw Error(what + ": is not a text file (byte " + printable(std::string(1, static_cast<char>(c))) +
                  " at offset " + std::to_string(i) + ")");
    }
  }
  // The byte-order mark some editors write first is not part of the first line.
  if (text.rfind("\xef\xbb\xbf", 0) == 0) text.erase(0, 3);
  return text;
}

// --data values, with each @LIST replaced by the files it names (one per
// line; blank lines and # comments skipped; relative paths from the list's folder).
std::vector<std::string> expand_data_lists(const std::vector<std::string>& given) {
  std::vector<std::string> files;
  for (const std::string& item : given) {
    if (item[0] != '@') {
      files.push_back(item);
      continue;
    }
    const std::string list = item.substr(1), what = "--data " + printable(item, 200);
    const std::string text = config_text(list, what);
    const std::filesystem::path folder = std::filesystem::path(list).parent_path();
    std::istringstream in(text);
    std::size_t before = files.size();
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::size_t a = line.find_first_not_of(" \t");
      if (a == std::string::npos || line[a] == '#') continue;
      std::string path = line.substr(a, line.find_last_not_of(" \t") - a + 1);
      if (std::filesystem::path(path).is_relative() && !folder.empty()) path = (folder / path).string();
      files.push_back(path);
    }
    if (files.size() == before) throw Error(what + ": names no files");
  }
  return files;
}

// The schedule's choices; a flag that only another schedule or scaling reads is an error, not ignored.
void parse_schedule(const po::variables_map& vm, const TextOptions& t, ScheduleOptions* schedule) {
  schedule->schedule = parse_lr_schedule(t.lr_schedule);
  schedule->scaling = parse_lr_scaling(t.lr_scaling);
  if (vm.count("lr-decay-epochs")) schedule->decay_epochs = parse_decay_epochs(t.lr_decay_epochs);
  const auto refuse_unless = [&](bool used, const char* flag, const char* needs) {
    if (!used && vm.count(flag) && !vm[flag].defaulted()) {
      throw Error(std::string("--") + flag + ": only used with " + needs + " (this run has --lr-schedule " +
                  lr_schedule_name(schedule->schedule) + ", --lr-scaling " + lr_scaling_name(schedule->scaling) + ")");
    }
  };
  const bool step = schedule->schedule == LrSchedule::kStep;
  refuse_unless(step, "lr-decay-epochs", "--lr-schedule step");
  refuse_unless(step, "lr-decay-factor", "--lr-schedule step");
  refuse_unless(schedule->schedule == LrSchedule::kCosine, "lr-min", "--lr-schedule cosine");
  refuse_unless(schedule->scaling != LrScaling::kNone, "lr-reference-batch", "--lr-scaling linear or sqrt");
  const bool plateau = schedule->schedule == LrSchedule::kPlateau;
  refuse_unless(plateau, "plateau-patience", "--lr-schedule plateau");
  refuse_unless(plateau, "plateau-factor", "--lr-schedule plateau");
  refuse_unless(plateau, "plateau-min-lr", "--lr-schedule plateau");
}

// --early-stopping, --monitor and what they need; a flag nothing reads is an error, not ignored.
void check_monitor_options(Config& c, const TextOptions& t, const po::variables_map& vm) {
  require_nonnegative(static_cast<double>(c.early_stopping), "early-stopping");
  const bool stopping = c.early_stopping > 0, plateau = c.schedule.schedule == LrSchedule::kPlateau;
  const bool has_val = !c.val.empty() || c.val_split > 0;
  if (!t.monitor.empty() && !stopping && !plateau) {
    throw Error("--monitor: only used with --early-stopping or --lr-schedule plateau");
  }
  c.monitor = t.monitor.empty() ? (has_val ? Monitor::kValLoss : Monitor::kLoss) : parse_monitor(t.monitor);
  if (monitor_needs_validation(c.monitor) && !has_val) {
    throw Error("--monitor " + monitor_name(c.monitor) + ": needs validation data (--val or --val-split)");
  }
  if (!vm["min-delta"].defaulted() && !stopping) throw Error("--min-delta: only used with --early-stopping");
  require_nonnegative(c.min_delta, "min-delta");
  if (c.restore_best && !stopping) throw Error("--restore-best: only used with --early-stopping");
  if (c.restore_best && c.checkpoint.empty()) {
    throw Error("--restore-best: needs --checkpoint FILE to write the best weights to (with --checkpoint-dir the "
                "best model is best.h5)");
  }
}

std::string ini_text(const po::variables_map& vm) {
  std::ostringstream out;
  for (const auto& [name, value] : vm) {
    if (name == "config" || name == "help") continue;
    const boost::any& v = value.value();
    out << name << " = ";
    if (auto list = boost::any_cast<std::vector<std::string>>(&v)) {  // one line per value
      for (std::size_t i = 0; i < list->size(); ++i) out << (i ? "\n" + name + " = " : "") << (*list)[i];
    } else if (auto s = boost::any_cast<std::string>(&v)) out << *s;
    else if (auto l = boost::any_cast<long>(&v)) out << *l;
    else if (auto ll = boost::any_cast<long long>(&v)) out << *ll;
    else if (auto i = boost::any_cast<int>(&v)) out << *i;
    else if (auto d = boost::any_cast<double>(&v)) out << *d;
    else if (auto b = boost::any_cast<bool>(&v)) out << (*b ? "true" : "false");
    out << "\n";
  }
  return out.str();
}

// The command line, then the --config file under it (flags win). Returns
// false for --help, with the help text in *help.
bool read_options(int argc, const char* const* argv, const po::options_description& table, po::variables_map* vm,
                  std::string* help) {
  const ProgramHelp program{"nn_dist", "data-parallel MLP training over MPI",
                            {"mpirun -np N nn_dist --data train.h5 [options]"},
                            " (write lists with commas, e.g. --hidden 64,32)"};
  const po::parsed_options parsed = parse_command_line(argc, argv, program, table);
  with_option_errors([&] { po::store(parsed, *vm); });
  if (vm->count("help")) {
    *help = help_text(program, table);
    return false;
  }
  reject_empty_paths(*vm);
  if (vm->count("config")) {
    const std::string path = (*vm)["config"].as<std::string>();
    std::istringstream in(config_text(path));
    try {
      po::store(po::parse_config_file(in, table), *vm);  // values already given on the command line stay
    } catch (const po::error& e) {
      throw Error("--config " + printable(path, 200) + ": " + printable(e.what(), 200));
    }
    reject_empty_paths(*vm);
  }
  with_option_errors([&] { po::notify(*vm); });
  return true;
}

// The training data, its scaling and how much of it a rank holds.
void check_data_options(Config& c, const TextOptions& t) {
  if (t.data.empty()) throw Error("--data: required (the training set, an HDF5 file)");
  c.data_files = expand_data_lists(t.data);
  c.scale = parse_scale(t.scale);
  require_nonnegative(c.cache_mb, "cache-mb");
  if (c.cache_mb > 1e9) {  // 1 PB a rank; beyond about 1e300 the byte count was Inf
    std::ostringstream s;
    s << "--cache-mb: at most 1000000000 (MiB per rank), got " << c.cache_mb;
    throw Error(s.str());
  }
}

// How progress within an epoch is shown.
void check_progress_options(const Config& c) {
  require_positive(c.log_every_seconds, "log-every-seconds");
  if (c.progress != "auto" && c.progress != "terminal" && c.progress != "lines" && c.progress != "off") {
    throw Error("--progress: unknown value '" + printable(c.progress) + "' (expected auto, terminal, lines or off)");
  }
}

// The validation set: a file, or a held-out fraction of the training set.
void check_validation_options(Config& c) {
  c.data = c.data_files.front();
  if (!(c.val_split >= 0 && c.val_split < 1)) throw Error("--val-split: must be at least 0 and below 1");
  if (c.val_split > 0 && !c.val.empty()) throw Error("--val-split and --val: give one, not both");
}

// The optimizer, its schedule and the steps of training.
void check_training_options(Config& c, const TextOptions& t, const po::variables_map& vm) {
  c.shuffle = !t.no_shuffle;
  c.hidden_given = !vm["hidden"].defaulted();
  c.activation_given = !vm["activation"].defaulted();
  c.leaky_slope_given = !vm["leaky-slope"].defaulted();
  require_positive(c.leaky_slope, "leaky-slope");
  c.overlap = parse_on_off(t.overlap, "--overlap");
  c.allreduce = parse_allreduce_mode(t.allreduce);
  c.optimizer.kind = parse_optimizer(t.optimizer);
  if (t.seed < 0) throw Error("--seed: must not be negative");
  c.seed = static_cast<uint64_t>(t.seed);
  require_positive(c.epochs, "epochs");
  require_positive(c.batch_size, "batch-size");
  require_nonnegative(static_cast<double>(c.global_batch_size), "global-batch-size");
  require_positive(c.accumulate_steps, "accumulate-steps");
  require_positive(c.optimizer.lr, "lr");
  parse_schedule(vm, t, &c.schedule);
  c.schedule.epochs = c.epochs;
  validate_schedule(c.schedule);
  require_nonnegative(c.optimizer.momentum, "momentum");
  require_nonnegative(c.optimizer.weight_decay, "weight-decay");
  require_nonnegative(c.clip_grad_norm, "clip-grad-norm");
  if (!(c.optimizer.beta1 >= 0 && c.optimizer.beta1 < 1)) throw Error("--beta1: must be in [0, 1)");
  if (!(c.optimizer.beta2 >= 0 && c.optimizer.beta2 < 1)) throw Error("--beta2: must be in [0, 1)");
  require_positive(c.optimizer.eps, "eps");
  require_positive(c.checkpoint_every, "checkpoint-every");
  require_positive(c.block_size, "block-size");
  check_monitor_options(c, t, vm);
}

// Threads, the matrix kernel, the gradient sum's buckets and the benchmark limits.
void check_performance_options(Config& c, const TextOptions& t) {
  require_positive(c.threads, "threads");
  if (c.threads > 1) {
    // Measured on 2 cores: 1 rank x 2 threads (Eigen's threaded product) 25-122k samples/s, 2 ranks x 1
    // thread 120-187k; nn_dist's own kernels are single-threaded and the ranks of a node share memory.
    throw Error("--threads " + std::to_string(c.threads) +
                ": threads inside a rank run far slower than the same cores as ranks; run one rank per core "
                "instead (e.g. mpirun -np " + std::to_string(c.threads) + " per rank you had, with --threads 1)");
  }
  c.gemm = parse_gemm_kernel(t.gemm);
  c.precision = parse_precision(t.precision);
  check_kernel_precision(c.gemm, c.precision);
  require_positive(c.bucket_mb, "bucket-mb");
  if (c.bucket_mb > 1e6) throw Error("--bucket-mb: at most 1000000 (1 TB), got " + std::to_string(c.bucket_mb));
  require_nonnegative(static_cast<double>(c.max_steps), "max-steps");
  require_nonnegative(static_cast<double>(c.warmup_steps), "warmup-steps");
}

// --reproducible: what its order and exact sum cannot follow, refused in one line.
void check_reproducible_options(const Config& c) {
  if (!c.reproducible) return;
  if (c.allreduce == AllreduceMode::kNone) {
    throw Error("--allreduce " + allreduce_mode_name(c.allreduce) + ": not with --reproducible (its exact sum runs "
                "as shared, hierarchical or mpi)");
  }
  if (c.val_split > 0) {
    throw Error("--val-split: not with --reproducible (each rank would hold out from its own shard, which depends "
                "on the rank count); give --val");
  }
}

// Where the run starts from and where its checkpoints go.
void check_checkpoint_options(const Config& c) {
  if (!c.init.empty() && !c.resume.empty()) throw Error("--init and --resume: give one, not both");
  if (!c.checkpoint.empty() && !c.checkpoint_dir.empty()) {
    throw Error("--checkpoint and --checkpoint-dir: give one, not both");
  }
  require_positive(c.keep_checkpoints, "keep-checkpoints");
  require_nonnegative(static_cast<double>(c.checkpoint_every_steps), "checkpoint-every-steps");
  require_nonnegative(c.checkpoint_minutes, "checkpoint-minutes");
  require_positive(c.collective_timeout, "collective-timeout");
  if (c.collective_timeout > 1e6) throw Error("--collective-timeout: at most 1000000 seconds");
  if (c.resume == "auto" && c.checkpoint.empty() && c.checkpoint_dir.empty()) {
    throw Error("--resume auto: needs --checkpoint-dir (or --checkpoint) to look for the newest checkpoint in");
  }
  check_reproducible_options(c);
  if (c.allreduce == AllreduceMode::kNone && !(c.checkpoint.empty() && c.checkpoint_dir.empty())) {
    throw Error("--allreduce none: the ranks train separate models (a benchmark), so there is no model for "
                "--checkpoint to save");
  }
}

}  // namespace

// The checks run in the order of the options they name, as they always have:
// where several flags are wrong, the first is reported.
ParseResult parse_config(int argc, const char* const* argv, Config* config, std::string* help_text) {
  Config& c = *config;
  TextOptions t;
  const po::options_description table = option_table(c, t);
  po::variables_map vm;
  if (!read_options(argc, argv, table, &vm, help_text)) return ParseResult::kHelp;
  check_data_options(c, t);
  check_progress_options(c);
  check_validation_options(c);
  check_training_options(c, t, vm);
  check_performance_options(c, t);
  check_checkpoint_options(c);
  c.hidden_widths = parse_hidden(c.hidden);
  c.dropout_rates = parse_dropout(c.dropout);
  c.config_file = t.config_file;
  c.options_text = ini_text(vm);
  return ParseResult::kRun;
}

}  // namespace nn_dist
