// Command-line and INI options (Boost.Program_options) parsed into one
// validated Config that is passed down; no globals.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/math/activation.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/optim/monitor.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/optim/schedule.hpp"

namespace nn_dist {

struct Config {
  // data
  std::string data;                     // the first (or only) training file, for messages
  std::vector<std::string> data_files;  // every --data file (and those of @list files), in order: one dataset
  std::string val, x_dataset = "X", y_dataset = "y";
  double val_split = 0;                 // without --val: this fraction of the samples is held out
  double cache_mb = 0;                  // > 0: stream the shard, holding about this many MiB of samples
  double scale = 1;                     // every feature times this (e.g. 1/255), before --standardize
  bool standardize = false;  // per-feature (x - mean) / std from the training set, stored in checkpoints
  // model
  std::string hidden = "128,64";        // as given, for messages
  std::vector<long> hidden_widths{128, 64};  // parse_hidden(hidden): set both when building a Config by hand
  bool hidden_given = false;
  std::string activation = "relu";
  bool activation_given = false;
  std::string dropout = "0";                 // as given, for messages
  std::vector<double> dropout_rates{0};      // parse_dropout(dropout): one rate, or one per hidden layer
  double leaky_slope = kDefaultLeakySlope;  // leaky_relu's slope for z <= 0 (a checkpoint's own replaces it)
  bool leaky_slope_given = false;
  std::string loss = "auto";  // auto: softmax for integer labels, mse for float targets
  // training
  long batch_size = 32;         // per rank
  long global_batch_size = 0;   // 0: use batch_size
  // Micro-batches of batch_size per step: their gradients add up on each rank,
  // then one sum over the ranks and one update (global batch: K x batch x ranks).
  long accumulate_steps = 1;
  long epochs = 10;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;     // the lr of each step (--lr-schedule, --warmup-epochs, --lr-scaling, ...)
  // The value watched at epoch ends by --early-stopping and --lr-schedule plateau
  // (--monitor; default val_loss with validation data, else loss).
  Monitor monitor = Monitor::kLoss;
  long early_stopping = 0;     // patience in epochs; 0: off
  double min_delta = 0;        // an improvement beats the best by more than this
  bool restore_best = false;   // --checkpoint FILE ends with the best epoch's weights
  double clip_grad_norm = 0;    // > 0: clip the mean gradient to this global L2 norm (--clip-grad-norm)
  uint64_t seed = 1;
  bool shuffle = true;
  // --reproducible: the same bits at any rank count and layout (the order is
  // global, in blocks of block_size rows; the gradient is summed exactly).
  bool reproducible = false;
  long block_size = 32;
  std::string init, resume, checkpoint, metrics;  // resume "auto": the newest checkpoint, or a fresh start
  std::string checkpoint_dir;                      // numbered checkpoints (instead of --checkpoint)
  long checkpoint_every = 1;
  long keep_checkpoints = 3;                       // in checkpoint_dir
  long checkpoint_every_steps = 0;                 // 0: only at epoch ends (and by time)
  double checkpoint_minutes = 10;                  // 0: off; else at most this long between checkpoints
  double collective_timeout = 300;                 // seconds any wait for the other ranks may take
  // performance
  int threads = 1;
  GemmKernel gemm = GemmKernel::kAuto;
  Precision precision = Precision::kF32;  // of the products
  double bucket_mb = 1.0;
  bool overlap = true;
  AllreduceMode allreduce = AllreduceMode::kAuto;
  long max_steps = 0;  // 0: no limit (benchmarks stop early)
  bool profile = false;
  long warmup_steps = 10;
  bool quiet = false;
  std::string progress = "auto";  // auto | terminal | lines | off: progress within an epoch
  double log_every_seconds = 60;  // how often "lines" prints
  // the --config file, if any (an input: no output may overwrite it)
  std::string config_file;
  // the options as INI text, stored in checkpoints
  std::string options_text;
};

enum class ParseResult { kRun, kHelp };

// Parses argv (and --config FILE). Throws Error naming the flag or file at fault.
// On kHelp, help_text holds the option list with defaults.
ParseResult parse_config(int argc, const char* const* argv, Config* config, std::string* help_text);

}  // namespace nn_dist
