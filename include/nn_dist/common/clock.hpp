// The one clock nn_dist times itself with (monotonic: a wall-clock change
// never makes a step, an ETA or a --checkpoint-minutes interval negative),
// and the seconds between two of its readings.
#pragma once

#include <chrono>

namespace nn_dist {

using Clock = std::chrono::steady_clock;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace nn_dist
