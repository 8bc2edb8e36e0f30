// --metrics: one CSV row per epoch, written by rank 0. A --resume continues
// an existing file (rows appended, its header kept); otherwise the file is
// created or truncated. Errors are agreed: a full disk stops every rank.
#pragma once

#include <string>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/reporter.hpp"

namespace nn_dist {

class MetricsFile {
 public:
  explicit MetricsFile(const Communicator& comm) : comm_(comm) {}
  // path: --metrics resolved (RunFiles::metrics); nothing without --metrics. Collective.
  void open(const Config& config, const std::string& path);
  // One row. Collective.
  void write(const EpochResult& r, bool classify);

 private:
  const Communicator& comm_;
  TextFileWriter file_;  // rank 0
};

}  // namespace nn_dist
