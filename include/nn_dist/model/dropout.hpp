// Inverted dropout masks (--dropout), as nn.Dropout in training: a unit is
// zeroed with probability p and kept units are scaled by 1 / (1 - p). Each
// decision is a counter-based hash of (seed, epoch, step, the sample's index
// in the training set, layer, unit): the mask of a sample does not depend on
// which rank holds it or on the batch layout, and a resumed run draws the same.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nn_dist {

// What, besides the sample, layer and unit, keys a training step's masks.
struct DropoutKey {
  uint64_t seed = 0;
  int64_t epoch = 0;  // 0-based
  int64_t step = 0;   // the step within the epoch
};

// A training forward pass's dropout: the key and each column's sample index
// (n values, the training set's row of each sample).
struct DropoutDraw {
  DropoutKey key;
  const int64_t* samples = nullptr;
};

// Whether unit `unit` of hidden layer `layer` (0-based) of `sample` is dropped at rate p.
bool dropped(const DropoutKey& key, int64_t sample, int layer, long unit, double p);

// mask (units, n) column-major: 0 for a dropped unit, kept_scale = 1 / (1 - p) otherwise.
template <typename T>
void dropout_mask(const DropoutKey& key, const int64_t* samples, long n, int layer, long units, double p, T* mask);

// --dropout: one rate for every hidden layer, or one per hidden layer
// ("0.5" or "0.2,0.5"), each in [0, 1). Throws Error naming --dropout.
std::vector<double> parse_dropout(const std::string& text);
// The rate of each of `hidden` hidden layers from parse_dropout's list (one
// value applies to all). Throws Error naming --dropout if the counts differ.
std::vector<double> dropout_rates(const std::vector<double>& given, int hidden);

}  // namespace nn_dist
