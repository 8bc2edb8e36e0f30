// He/Glorot initialisation from a portable generator.
#include "nn_dist/model/init.hpp"

#include <algorithm>
#include <cmath>

namespace nn_dist {

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  const double u1 = 1.0 - uniform();  // (0, 1]
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t Rng::below(uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do {
    r = next();
  } while (r >= limit);
  return r % n;
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) {
  Rng rng(a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xD6E8FEB86659FD93ull ^
          (c + 0x8CB92BA72F3D8DD7ull) * 0xA0761D6478BD642Full);
  return rng.next();
}

namespace {

// He-normal suits these (a relu, or close to one for positive inputs); Glorot the rest.
bool rectifier_like(Activation f) {
  return f == Activation::kRelu || f == Activation::kLeakyRelu || f == Activation::kGelu ||
         f == Activation::kGeluTanh || f == Activation::kSilu;
}

}  // namespace

void init_parameters(const Layout& layout, Activation hidden, uint64_t seed, float* params) {
  std::fill(params, params + layout.total(), 0.0f);
  Rng rng(mix_seed(seed, 0x1417));
  for (int l = 0; l < layout.num_layers(); ++l) {
    const TensorSlot& w = layout.weight(l);
    const double fan_in = static_cast<double>(w.cols), fan_out = static_cast<double>(w.rows);
    float* out = params + w.offset;
    if (rectifier_like(hidden)) {
      const double stddev = std::sqrt(2.0 / fan_in);
      for (std::size_t i = 0; i < w.size(); ++i) out[i] = static_cast<float>(stddev * rng.normal());
    } else {
      const double bound = std::sqrt(6.0 / (fan_in + fan_out));
      for (std::size_t i = 0; i < w.size(); ++i) out[i] = static_cast<float>(bound * (2 * rng.uniform() - 1));
    }
  }
}

}  // namespace nn_dist
