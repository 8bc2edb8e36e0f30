// nn_dist's plateau logic (optim/schedule.hpp) on a value sequence, for
// plateau_torch_test.py to compare with torch's ReduceLROnPlateau. Reads
// "min|max PATIENCE FACTOR MIN_LR PEAK" and then one value per token on stdin;
// prints the lr after each value with 17 significant digits.
#include <cstdio>
#include <iostream>
#include <string>

#include "nn_dist/optim/schedule.hpp"

int main() {
  std::string mode;
  nn_dist::ScheduleOptions options;
  options.schedule = nn_dist::LrSchedule::kPlateau;
  double peak = 0;
  if (!(std::cin >> mode >> options.plateau_patience >> options.plateau_factor >> options.plateau_min_lr >> peak)) {
    std::fprintf(stderr, "plateau_probe: expected 'min|max PATIENCE FACTOR MIN_LR PEAK' on stdin\n");
    return 2;
  }
  const bool maximize = mode == "max";
  nn_dist::PlateauState state = nn_dist::plateau_start(peak, maximize);
  for (double value; std::cin >> value;) {
    nn_dist::plateau_step(options, maximize, value, &state);
    std::printf("%.17g\n", state.lr);
  }
  return 0;
}
