// Memory estimates and the node's available memory (/proc/meminfo, cgroup v2).
#include "nn_dist/train/memory.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/gemm.hpp"

namespace nn_dist {

namespace {

// MemAvailable in bytes, or all physical memory where the kernel does not say.
double kernel_available() {
  std::ifstream in("/proc/meminfo");
  for (std::string key; in >> key;) {
    double kib = 0;
    in >> kib;
    if (key == "MemAvailable:") return kib * 1024.0;
    in.ignore(1 << 10, '\n');
  }
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// What this process's cgroup (v2) still allows, or a negative number for no limit.
double cgroup_available() {
  std::ifstream self("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(self, line)) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  if (path.empty()) return -1;
  std::ifstream max_in("/sys/fs/cgroup" + path + "/memory.max"), cur_in("/sys/fs/cgroup" + path + "/memory.current");
  std::string max_text;
  double current = 0;
  if (!(max_in >> max_text) || max_text == "max" || !(cur_in >> current)) return -1;
  return std::max(0.0, std::stod(max_text) - current);
}

}  // namespace

double memory_per_rank(int ranks_on_node) {
  double available = kernel_available();
  const double limit = cgroup_available();
  if (limit >= 0) available = std::min(available, limit);
  return available / std::max(1, ranks_on_node);
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

ModelMemory model_memory(const std::vector<long>& sizes, long max_batch, int optimizer_states, bool keeps_derivative,
                         const std::vector<double>& dropout, bool bf16) {
  ModelMemory m;
  double params = 0, widths = 0, hidden = 0, dropped = 0, widest = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    params += (static_cast<double>(sizes[l]) + 1) * static_cast<double>(sizes[l + 1]);
  }
  for (std::size_t l = 1; l < sizes.size(); ++l) widths += static_cast<double>(sizes[l]);
  for (std::size_t l = 1; l + 1 < sizes.size(); ++l) {
    hidden += static_cast<double>(sizes[l]);
    if (l - 1 < dropout.size() && dropout[l - 1] > 0) dropped += static_cast<double>(sizes[l]);
  }
  for (long d : sizes) widest = std::max(widest, static_cast<double>(d));
  // parameters, gradient sums, this rank's gradient (shared memory), the states,
  // and the checkpoint's copy in memory while it is written
  m.parameter_count = params;
  m.parameter_bytes = 4.0 * params * (4 + 2 * optimizer_states);
  // each layer's output, two deltas as wide as the widest layer, f'(z) of
  // each hidden layer where the activation keeps it, and a dropping layer's
  // mask and dropped output
  m.activation_bytes =
      4.0 * static_cast<double>(max_batch) * (widths + 2 * widest + (keeps_derivative ? hidden : 0) + 2 * dropped);
  if (bf16) {  // 2 bytes a packed value, padded as the products pad them
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      m.parameter_bytes += 2.0 * static_cast<double>(bf16_packed_a_elements(sizes[l + 1], sizes[l]));
    }
    m.activation_bytes += 2.0 * static_cast<double>(bf16_packed_a_elements(static_cast<long>(widest), max_batch));
  }
  return m;
}

void require_memory(double bytes, double per_rank, int ranks_on_node, const std::string& what) {
  if (bytes <= per_rank) return;
  std::ostringstream s;
  s << what << " needs about " << format_bytes(bytes) << " per rank, but this node can give each of its "
    << ranks_on_node << " rank(s) only " << format_bytes(per_rank);
  throw Error(s.str());
}

}  // namespace nn_dist
