// Counts heap allocations (malloc and friends, so operator new and Eigen's
// aligned_malloc too) made by this process while a counter is alive.
#pragma once

#include <cstddef>

namespace nn_dist::testing {

class AllocationCounter {
 public:
  AllocationCounter();
  ~AllocationCounter();
  std::size_t count() const;
};

}  // namespace nn_dist::testing
