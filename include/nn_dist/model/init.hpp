// Initial parameters: He-normal weights for relu nets, Glorot-uniform
// otherwise, zero biases; a pure function of the seed.
#pragma once

#include <cstdint>

#include "nn_dist/math/activation.hpp"
#include "nn_dist/model/layout.hpp"

namespace nn_dist {

// A small, portable random generator (SplitMix64): the same stream on every
// platform and standard library, unlike std::*_distribution.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();            // [0, 1)
  double normal();             // N(0, 1), Box-Muller
  uint64_t below(uint64_t n);  // [0, n), unbiased

 private:
  uint64_t state_;
};

// Mixes several values into one seed.
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0);

// Fills params (layout.total() elements, padding zeroed).
void init_parameters(const Layout& layout, Activation hidden, uint64_t seed, float* params);

}  // namespace nn_dist
