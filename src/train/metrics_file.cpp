// The metrics CSV: its header, what a continued file keeps, one row per epoch.
#include "nn_dist/train/metrics_file.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "nn_dist/common/text.hpp"

namespace nn_dist {

namespace {

// New columns go at the end: scripts cut the others by position.
constexpr const char* kMetricsHeader =
    "epoch,train_loss,train_accuracy,val_loss,val_accuracy,samples_per_sec,epoch_seconds,lr,best_epoch,grad_norm";

// A continued file written by another version keeps its header: a note says
// which columns the new rows have.
void note_other_header(const Config& config, const std::string& path) {
  std::ifstream in(path);
  std::string header;
  std::getline(in, header);
  if (header.rfind("epoch,", 0) == 0 && header != kMetricsHeader) {
    std::fprintf(stderr, "note: --metrics %s: its header is not this version's (%s); the rows appended now "
                         "have the columns %s\n",
                 printable(config.metrics, 200).c_str(), printable(header, 200).c_str(), kMetricsHeader);
  }
}

}  // namespace

void MetricsFile::open(const Config& config, const std::string& path) {
  comm_.agreed([&] {
    if (!comm_.root() || config.metrics.empty()) return;
    const bool existed = std::filesystem::exists(path);
    const bool append = !config.resume.empty() && existed;
    if (append) note_other_header(config, path);
    try {
      file_.open(path, append, "--metrics " + config.metrics);
      if (!append) file_.write(std::string(kMetricsHeader) + "\n");
    } catch (const Error&) {
      file_.close();
      if (!existed) std::filesystem::remove(path);  // leave no empty file behind
      throw;
    }
  });
}

void MetricsFile::write(const EpochResult& r, bool classify) {
  comm_.agreed([&] {
    if (!comm_.root() || !file_.is_open()) return;
    file_.write(std::to_string(r.epoch) + ',' + fmt("%.8g", r.train_loss) + ',' +
                (classify ? fmt("%.6f", r.train_accuracy) : "") + ',' + (r.has_val ? fmt("%.8g", r.val_loss) : "") +
                ',' + (r.has_val && classify ? fmt("%.6f", r.val_accuracy) : "") + ',' +
                fmt("%.1f", r.samples_per_sec) + ',' + fmt("%.4f", r.seconds) + ',' + fmt("%.10g", r.lr) + ',' +
                (r.best_epoch >= 0 ? std::to_string(r.best_epoch) : "") + ',' +
                (r.grad_norm >= 0 ? fmt("%.8g", r.grad_norm) : "") + '\n');
  });
}

}  // namespace nn_dist
