// nn_corelat: how long a cache line takes to go from one core to another and
// back (two threads pinned to two CPUs bounce a counter), and how long one
// core takes to read 2 MB (the standard model's gradient) that the other
// core has just written. Data-parallel ranks on one node pay these costs
// every step; on a virtual machine they can change from minute to minute
// with where the host runs the vCPUs, so benchmarks record them beside
// their timings.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "nn_dist/common/error.hpp"

namespace {

using Clock = std::chrono::steady_clock;

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

// Median round trip of a counter bounced between the two CPUs, in ns.
double round_trip_ns(int cpu_a, int cpu_b, long trips) {
  alignas(64) std::atomic<long> flag{0};
  std::thread peer([&] {
    pin(cpu_b);
    for (long i = 1; i < 2 * trips; i += 2) {
      while (flag.load(std::memory_order_acquire) != i) {
      }
      flag.store(i + 1, std::memory_order_release);
    }
  });
  pin(cpu_a);
  const auto t0 = Clock::now();
  for (long i = 0; i < 2 * trips; i += 2) {
    flag.store(i + 1, std::memory_order_release);
    while (flag.load(std::memory_order_acquire) != i + 2) {
    }
  }
  const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / trips;
  peer.join();
  return ns;
}

// Median time for cpu_a to sum `bytes` of floats that cpu_b has just written, in us.
double remote_read_us(int cpu_a, int cpu_b, std::size_t bytes, int rounds) {
  std::vector<float> data(bytes / sizeof(float), 1.0f);
  std::atomic<int> turn{0};
  std::vector<double> times;
  std::thread writer([&] {
    pin(cpu_b);
    for (int r = 0; r < rounds; ++r) {
      while (turn.load(std::memory_order_acquire) != 2 * r) {
      }
      for (float& v : data) v += 1.0f;
      turn.store(2 * r + 1, std::memory_order_release);
    }
  });
  pin(cpu_a);
  volatile float sink = 0;
  for (int r = 0; r < rounds; ++r) {
    while (turn.load(std::memory_order_acquire) != 2 * r + 1) {
    }
    const auto t0 = Clock::now();
    float sums[16] = {};
    for (std::size_t i = 0; i + 16 <= data.size(); i += 16) {
      for (int j = 0; j < 16; ++j) sums[j] += data[i + j];
    }
    times.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    sink = sink + sums[0];
    turn.store(2 * r + 2, std::memory_order_release);
  }
  writer.join();
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int cpu_a = 0, cpu_b = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::printf("usage: nn_corelat [--cpus A,B]   (default 0,1)\n"
                  "Prints the round trip of a cache line between CPUs A and B, and the time A takes to read\n"
                  "2 MB that B has just written, as text and as one CORELAT_JSON line.\n");
      return 0;
    }
    if (flag == "--cpus" && i + 1 < argc) {
      if (std::sscanf(argv[++i], "%d,%d", &cpu_a, &cpu_b) != 2) {
        std::fprintf(stderr, "nn_corelat: error: --cpus wants two CPU numbers, like 0,1\n");
        return nn_dist::kUsageExitCode;
      }
    } else {
      std::fprintf(stderr, "nn_corelat: error: unknown option %s (usage: nn_corelat [--cpus A,B])\n", flag.c_str());
      return nn_dist::kUsageExitCode;
    }
  }
  if (!pin(cpu_a) || !pin(cpu_b)) {
    std::fprintf(stderr, "nn_corelat: error: --cpus %d,%d: cannot run on both CPUs\n", cpu_a, cpu_b);
    return nn_dist::kUsageExitCode;
  }
  const double rtt = round_trip_ns(cpu_a, cpu_b, 100000);
  const double read = remote_read_us(cpu_a, cpu_b, 2 << 20, 21);
  std::printf("cores %d and %d: round trip %.0f ns; reading 2 MB the other core wrote: %.0f us\n", cpu_a, cpu_b, rtt,
              read);
  std::printf("CORELAT_JSON {\"cpus\":[%d,%d],\"round_trip_ns\":%.1f,\"remote_read_2mb_us\":%.1f}\n", cpu_a, cpu_b,
              rtt, read);
  return 0;
}
