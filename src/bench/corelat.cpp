// Two threads pinned to two CPUs: a counter bounced between them, and a
// buffer one writes and the other reads. On a virtual machine these times can
// change from minute to minute with where the host runs the vCPUs.
#include "nn_dist/bench/corelat.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "nn_dist/common/clock.hpp"

namespace nn_dist {

bool pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

// Median round trip of a counter bounced between the two CPUs, in ns.
double round_trip_ns(int cpu_a, int cpu_b, long trips) {
  alignas(64) std::atomic<long> flag{0};
  std::thread peer([&] {
    pin_to_cpu(cpu_b);
    for (long i = 1; i < 2 * trips; i += 2) {
      while (flag.load(std::memory_order_acquire) != i) {
      }
      flag.store(i + 1, std::memory_order_release);
    }
  });
  pin_to_cpu(cpu_a);
  const auto t0 = Clock::now();
  for (long i = 0; i < 2 * trips; i += 2) {
    flag.store(i + 1, std::memory_order_release);
    while (flag.load(std::memory_order_acquire) != i + 2) {
    }
  }
  const double ns = seconds_between(t0, Clock::now()) * 1e9 / trips;
  peer.join();
  return ns;
}

// Median time for cpu_a to sum `bytes` of floats that cpu_b has just written, in us.
double remote_read_us(int cpu_a, int cpu_b, std::size_t bytes, int rounds) {
  std::vector<float> data(bytes / sizeof(float), 1.0f);
  std::atomic<int> turn{0};
  std::vector<double> times;
  std::thread writer([&] {
    pin_to_cpu(cpu_b);
    for (int r = 0; r < rounds; ++r) {
      while (turn.load(std::memory_order_acquire) != 2 * r) {
      }
      for (float& v : data) v += 1.0f;
      turn.store(2 * r + 1, std::memory_order_release);
    }
  });
  pin_to_cpu(cpu_a);
  volatile float sink = 0;
  for (int r = 0; r < rounds; ++r) {
    while (turn.load(std::memory_order_acquire) != 2 * r + 1) {
    }
    const auto t0 = Clock::now();
    float sums[16] = {};
    for (std::size_t i = 0; i + 16 <= data.size(); i += 16) {
      for (int j = 0; j < 16; ++j) sums[j] += data[i + j];
    }
    times.push_back(seconds_between(t0, Clock::now()) * 1e6);
    sink = sink + sums[0];
    turn.store(2 * r + 2, std::memory_order_release);
  }
  writer.join();
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace nn_dist
