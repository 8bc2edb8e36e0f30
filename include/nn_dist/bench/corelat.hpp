// nn_corelat's measurements: how long a cache line takes to go from one core
// to another and back, and how long one core takes to read memory another
// core has just written -- what data-parallel ranks on one node pay each step.
#pragma once

#include <cstddef>

namespace nn_dist {

// Pins the calling thread to `cpu`; false if it may not run there.
bool pin_to_cpu(int cpu);

// Median round trip of a counter bounced between the two CPUs, in ns.
double round_trip_ns(int cpu_a, int cpu_b, long trips);

// Median time for cpu_a to sum `bytes` of floats that cpu_b has just written, in us.
double remote_read_us(int cpu_a, int cpu_b, std::size_t bytes, int rounds);

}  // namespace nn_dist
