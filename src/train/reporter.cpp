// Rank 0's output while training. The formats are read by people and by
// scripts (scale.py reads BENCH_JSON, tests read the epoch lines): columns
// and keys are only ever added at the end.
#include "nn_dist/train/reporter.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

#include "nn_dist/common/text.hpp"
#include "nn_dist/optim/schedule.hpp"
#include "nn_dist/train/stream.hpp"
#include "nn_dist/train/terminal.hpp"

namespace nn_dist {

Reporter::Reporter(const Communicator& comm, const Config& config) : comm_(comm), config_(config) {
  terminal_ = config.progress == "terminal" || (config.progress == "auto" && output_reaches_terminal());
}

void Reporter::banner(const DatasetInfo& data, const Mlp<float>& mlp, const GradientSync& sync, long batch,
                      long steps_per_epoch, double peak_lr, long global_batch) const {
  if (!comm_.root()) return;
  if (sync.mode() == AllreduceMode::kNone && comm_.size() > 1) {
    std::fprintf(stderr, "note: --allreduce none: the ranks do not sum their gradients; each trains its own model "
                         "(a benchmark of the scaling ceiling, not data-parallel training)\n");
  }
  if (config_.quiet) return;
  const Layout& layout = mlp.layout();
  std::string activation = activation_name(mlp.activation().kind);
  if (mlp.activation().kind == Activation::kLeakyRelu) activation += " (slope " + fmt("%g", mlp.activation().leaky_slope) + ")";
  const long k = config_.accumulate_steps;
  const std::string accumulated = k > 1 ? " x " + std::to_string(k) + " accumulated" : "";
  std::printf("nn_dist: %d rank(s), %ld samples x %ld features, layers %s, %s hidden, %s loss, batch %ld/rank%s, "
              "%ld steps/epoch, %zu parameters, %s kernel%s\n",
              comm_.size(), data.samples, data.features, sizes_string(layout.sizes()).c_str(),
              activation.c_str(), loss_name(mlp.loss()).c_str(), batch, accumulated.c_str(), steps_per_epoch,
              layout.num_parameters(), gemm_kernel_name(gemm_kernel()).c_str(),
              gemm_precision() == Precision::kBf16 ? " (bf16 products, f32 sums)" : "");
  if (comm_.size() > 1) {
    std::printf("nn_dist: gradient sum: %s (%s)\n", allreduce_mode_name(sync.mode()).c_str(), sync.reason().c_str());
  }
  if (schedule_in_use(config_.schedule)) {
    std::printf("nn_dist: learning rate: %s\n",
                describe_schedule(config_.schedule, config_.optimizer.lr, peak_lr, global_batch).c_str());
  }
  std::fflush(stdout);
}

void Reporter::nothing_to_do(int64_t epochs_done) const {
  if (!comm_.root()) return;
  std::printf("nothing to do: the checkpoint has completed %lld of --epochs %ld\n",
              static_cast<long long>(epochs_done), config_.epochs);
}

void Reporter::start_epoch(int64_t epoch, long first, long steps_per_epoch, Clock::time_point start) {
  epoch_ = epoch;
  first_ = first;
  steps_per_epoch_ = steps_per_epoch;
  epoch_start_ = last_progress_ = start;
}

void Reporter::progress(long step, double samples) {
  if (!comm_.root() || config_.quiet || config_.progress == "off") return;
  if (step + 1 >= steps_per_epoch_) return;  // the epoch's last step: its epoch line follows at once
  const auto now = Clock::now();
  const double interval = terminal_ ? 0.5 : config_.log_every_seconds;
  if (seconds_between(last_progress_, now) < interval) return;
  last_progress_ = now;
  const double elapsed = seconds_between(epoch_start_, now);
  const double rate = samples / std::max(elapsed, 1e-9);
  const long done = step + 1;
  const double eta = elapsed / static_cast<double>(done - first_) * static_cast<double>(steps_per_epoch_ - done);
  char line[200];
  std::snprintf(line, sizeof line, "epoch %lld/%ld  step %ld/%ld (%.0f%%)  %.0f samples/s  ETA %.*f s",
                static_cast<long long>(epoch_ + 1), config_.epochs, done, steps_per_epoch_,
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

void Reporter::epoch_line(const EpochResult& r, bool classify) {
  if (!comm_.root()) return;
  if (progress_shown_) {  // the epoch line replaces the progress line
    std::printf("\r\033[K");
    progress_shown_ = false;
  }
  if (config_.quiet) return;
  std::string line =
      "epoch " + std::to_string(r.epoch) + "/" + std::to_string(config_.epochs) + "  loss " + fmt("%.5f", r.train_loss);
  if (classify) line += "  acc " + fmt("%.4f", r.train_accuracy);
  if (r.has_val) {
    line += "  val_loss " + fmt("%.5f", r.val_loss);
    if (classify) line += "  val_acc " + fmt("%.4f", r.val_accuracy);
  }
  line += "  " + fmt("%.0f", r.samples_per_sec) + " samples/s  " + fmt("%.2f", r.seconds) + " s";
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void Reporter::lr_reduced(double from, double to) const {
  if (!comm_.root() || config_.quiet) return;
  std::printf("plateau: lr %s -> %s (%s did not improve for more than %ld epoch(s))\n", fmt("%.6g", from).c_str(),
              fmt("%.6g", to).c_str(), monitor_name(config_.monitor).c_str(), config_.schedule.plateau_patience);
  std::fflush(stdout);
}

void Reporter::early_stop(int64_t done, const EarlyStoppingState& state) const {
  if (!comm_.root()) return;
  std::printf("early stopping: %s did not improve by more than %s for %ld epoch(s); stopped after epoch %lld of "
              "%ld, best epoch %lld (%s %s)%s\n",
              monitor_name(config_.monitor).c_str(), fmt("%g", config_.min_delta).c_str(), state.wait,
              static_cast<long long>(done), config_.epochs, static_cast<long long>(state.best_epoch),
              monitor_name(config_.monitor).c_str(), fmt("%.6g", state.best).c_str(),
              config_.restore_best ? ("; " + config_.checkpoint + " holds its weights").c_str() : "");
  std::fflush(stdout);
}

void Reporter::already_stopped(int64_t epochs_done, const EarlyStoppingState& state) const {
  if (!comm_.root()) return;
  std::printf("nothing to do: early stopping ended this run after epoch %lld (best epoch %lld); raise "
              "--early-stopping to continue it\n",
              static_cast<long long>(epochs_done), static_cast<long long>(state.best_epoch));
}

void Reporter::profile(const StepTimes& t, const Minibatches& source, long batch, const GradientSync& sync) const {
  if (!comm_.root()) return;
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
  std::printf("  products     %s kernel, %s\n", gemm_kernel_name(gemm_kernel()).c_str(),
              precision_name(gemm_precision()).c_str());
  if (const auto* stream = dynamic_cast<const StreamSource*>(&source)) {
    std::printf("  streaming: rank 0 read %.1f MB in %.3f s of its %s (%.0f MB/s)\n", stream->read_bytes() / 1e6,
                stream->read_seconds(), stream->in_step() ? "training thread" : "reader thread",
                stream->read_bytes() / 1e6 / std::max(stream->read_seconds(), 1e-9));
  }
  std::printf(
      "BENCH_JSON {\"ranks\":%d,\"threads\":%d,\"batch_per_rank\":%ld,\"allreduce\":\"%s\",\"overlap\":%s,"
      "\"buckets\":%zu,\"steps\":%ld,\"kernel\":\"%s\",\"precision\":\"%s\","
      "\"samples_per_sec\":%.1f,\"step_ms\":%.4f,\"data_ms\":%.4f,\"forward_ms\":%.4f,\"backward_ms\":%.4f,"
      "\"sync_test_ms\":%.4f,\"sync_wait_ms\":%.4f,\"optimizer_ms\":%.4f,\"accumulate_steps\":%ld}\n",
      comm_.size(), config_.threads, batch, allreduce_mode_name(sync.mode()).c_str(),
      config_.overlap ? "true" : "false", sync.num_buckets(), t.steps,
      gemm_kernel_name(gemm_kernel()).c_str(), precision_name(gemm_precision()).c_str(), sps, t.total * ms, t.data * ms,
      t.forward * ms, t.backward * ms, t.sync_test * ms, t.sync_wait * ms, t.optimizer * ms, config_.accumulate_steps);
  std::fflush(stdout);
}

}  // namespace nn_dist
