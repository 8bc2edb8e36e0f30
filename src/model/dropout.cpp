// Dropout masks from a counter-based hash: SplitMix64's finalizer over a key
// mixed from (seed, epoch, step, sample, layer), then once more per unit.
#include "nn_dist/model/dropout.hpp"

#include <cmath>
#include <sstream>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/model/init.hpp"

namespace nn_dist {

namespace {

uint64_t finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The hash of (key, sample, layer): the start of the units' counter.
uint64_t column_key(const DropoutKey& key, int64_t sample, int layer) {
  const uint64_t step = mix_seed(key.seed, static_cast<uint64_t>(key.epoch), static_cast<uint64_t>(key.step));
  return mix_seed(step ^ 0xD50F0u, static_cast<uint64_t>(sample), static_cast<uint64_t>(layer));
}

// A unit is dropped when its uniform u = k 2^-53 (k: the top 53 bits of its
// hash) is below p, that is when k < ceil(p 2^53): compared as integers, so
// the loop below needs no conversion to double and vectorises.
uint64_t threshold(double p) { return static_cast<uint64_t>(std::ceil(p * 0x1.0p53)); }

uint64_t unit_bits(uint64_t column, long unit) {
  return finalize(column + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(unit + 1)) >> 11;
}

// One column's mask. Integer arithmetic only, so every instruction set gives
// the same bits; the loop's 64-bit products vectorise with AVX-512F and AVX2,
// chosen at run time (2026-12-06, the loaded 2-core development machine: 1.0,
// 3.1 and 9.9 ns a unit with AVX-512F, AVX2 and the baseline build's SSE2).
template <typename T>
void fill_column(uint64_t column, long units, uint64_t below, T kept, T* out) {
  for (long i = 0; i < units; ++i) out[i] = unit_bits(column, i) < below ? T(0) : kept;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define NN_DROPOUT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NN_DROPOUT_CLONES
#endif

NN_DROPOUT_CLONES void fill_float(uint64_t column, long units, uint64_t below, float kept, float* out) {
  fill_column(column, units, below, kept, out);
}
NN_DROPOUT_CLONES void fill_double(uint64_t column, long units, uint64_t below, double kept, double* out) {
  fill_column(column, units, below, kept, out);
}
void fill(uint64_t column, long units, uint64_t below, float kept, float* out) {
  fill_float(column, units, below, kept, out);
}
void fill(uint64_t column, long units, uint64_t below, double kept, double* out) {
  fill_double(column, units, below, kept, out);
}

}  // namespace

bool dropped(const DropoutKey& key, int64_t sample, int layer, long unit, double p) {
  return unit_bits(column_key(key, sample, layer), unit) < threshold(p);
}

template <typename T>
void dropout_mask(const DropoutKey& key, const int64_t* samples, long n, int layer, long units, double p, T* mask) {
  const T kept = T(1) / static_cast<T>(1.0 - p);  // as nn.Dropout: 1 / (1 - p) in the tensor's type
  const uint64_t below = threshold(p);
  for (long j = 0; j < n; ++j) {
    fill(column_key(key, samples[j], layer), units, below, kept, mask + j * units);
  }
}

template void dropout_mask<float>(const DropoutKey&, const int64_t*, long, int, long, double, float*);
template void dropout_mask<double>(const DropoutKey&, const int64_t*, long, int, long, double, double*);

std::vector<double> parse_dropout(const std::string& text) {
  std::vector<double> rates;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    std::istringstream value(item);
    double p = 0;
    char extra = 0;
    if (!(value >> p) || value >> extra || !(p >= 0 && p < 1)) {
      throw Error("--dropout: '" + printable(item) + "' is not a rate in [0, 1) (give one, or one per hidden layer: 0.2,0.5)");
    }
    rates.push_back(p);
  }
  if (rates.empty() || text.back() == ',') {
    throw Error("--dropout: '" + printable(text) + "' is not a list of rates in [0, 1) (e.g. 0.5, or 0.2,0.5)");
  }
  return rates;
}

std::vector<double> dropout_rates(const std::vector<double>& given, int hidden) {
  if (given.size() == 1) return std::vector<double>(static_cast<std::size_t>(hidden), given.front());
  if (static_cast<int>(given.size()) != hidden) {
    throw Error("--dropout: " + std::to_string(given.size()) + " rates for " + std::to_string(hidden) +
                " hidden layer(s) (give one rate, or one per hidden layer)");
  }
  return given;
}

}  // namespace nn_dist
