// --standardize and --scale: the per-feature statistics, summed over the
// ranks in float64, and where the transform is applied (in place, or per
// batch by the minibatch sources).
#include "nn_dist/train/input_transform.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "nn_dist/common/text.hpp"
#include "nn_dist/math/fixed_point.hpp"
#include "nn_dist/train/stream.hpp"

namespace nn_dist {

namespace {

// Calls visit(feature, value) for every stored feature value of this rank's
// samples, as double: from the shard in memory, or (streamed) from one more
// pass over the file.
template <typename Visit>
void each_value(const TrainingSet& set, Visit&& visit) {
  const long d = set.info.features;
  const auto visit_shard = [&](const Shard& s) {
    const bool bytes = !s.compact.empty();
    for (long j = 0; j < s.count; ++j) {
      for (long i = 0; i < d; ++i) {
        visit(i, !bytes ? static_cast<double>(s.x(i, j))
                        : compact_value(s, set.info.x_width, static_cast<std::size_t>(j * d + i)));
      }
    }
  };
  if (set.scanned) {
    scan_shard(set.info, set.offset, set.count, set.loss, set.scan_rows,
               [&](const Shard& block, const Targets&) { visit_shard(block); });
  } else {
    visit_shard(set.shard);
  }
}

// Rank 0: the features found constant, named (the first ten) in one warning.
void warn_constant_features(const Config& config, long features, const std::vector<long>& constant) {
  if (constant.empty()) return;
  std::string list;
  for (std::size_t i = 0; i < constant.size() && i < 10; ++i) {
    list += (list.empty() ? "" : ", ") + std::to_string(constant[i]);
  }
  const std::size_t n = constant.size();
  std::fprintf(stderr, "warning: --standardize: %zu of the %ld features of --data %s are constant (feature%s %s%s): "
                       "centred, not scaled\n",
               n, features, printable(config.data, 200).c_str(), n > 1 ? "s" : "", list.c_str(), n > 10 ? ", ..." : "");
}

// Per feature, the sum over every rank's values of term(f, v), in float64.
// --reproducible: in 64-bit fixed point (each term rounded to a multiple of a
// power of two agreed from the largest over all ranks, one more pass), so
// the sum is exact and the same however the rows are split over the ranks.
template <typename Term>
std::vector<double> feature_sums(const Communicator& comm, const TrainingSet& set, bool exact, Term&& term) {
  const long d = set.info.features;
  std::vector<double> sums(d, 0.0);
  if (!exact) {
    each_value(set, [&](long f, double v) { sums[f] += term(f, v); });
    comm.sum(sums.data(), static_cast<int>(d));
    return sums;
  }
  std::vector<double> largest(d, 0.0);
  each_value(set, [&](long f, double v) { largest[f] = std::max(largest[f], std::fabs(term(f, v))); });
  comm.max(largest.data(), static_cast<int>(d));
  std::vector<int> shift(d);
  for (long f = 0; f < d; ++f) shift[f] = fixed_point_exponent(largest[f], set.info.samples);
  std::vector<int64_t> fixed(d, 0);
  each_value(set, [&](long f, double v) { fixed[f] += std::llrint(std::ldexp(term(f, v), shift[f])); });
  comm.sum(fixed.data(), static_cast<int>(d));
  for (long f = 0; f < d; ++f) sums[f] = std::ldexp(static_cast<double>(fixed[f]), -shift[f]);
  return sums;
}

// --standardize: two passes in float64, each summed over the ranks: the
// means, then the squared deviations from them (the population standard
// deviation, NumPy's std).
Standardization standardize(const Communicator& comm, const Config& config, const TrainingSet& set) {
  const long d = set.info.features;
  const double n = static_cast<double>(set.info.samples);
  Standardization st;
  const bool exact = config.reproducible;
  const std::vector<double> sums = feature_sums(comm, set, exact, [](long, double v) { return v; });
  st.mean.resize(d);
  for (long f = 0; f < d; ++f) st.mean[f] = sums[f] / n;
  const std::vector<double> squares = feature_sums(comm, set, exact, [&](long f, double v) {
    const double dev = v - st.mean[f];
    return dev * dev;
  });
  st.scale.resize(d);
  std::vector<long> constant;
  for (long f = 0; f < d; ++f) {
    const double sd = std::sqrt(squares[f] / n);
    // Constant up to rounding: centred, not scaled (dividing would blow up noise).
    const bool flat = !(sd > 1e-12 * std::max(1.0, std::fabs(st.mean[f])));
    st.scale[f] = flat ? 1.0 / config.scale : sd;  // --scale still applies to a constant feature
    if (flat) constant.push_back(f);
  }
  if (comm.root()) warn_constant_features(config, d, constant);
  return st;
}

}  // namespace

Standardization input_transform(const Communicator& comm, const Config& config, const TrainingSet& set,
                                const Standardization& saved) {
  if (!saved.empty()) return saved;
  if (config.standardize) return standardize(comm, config, set);
  Standardization st;
  if (config.scale != 1) {  // --scale alone: x * s, written as (x - 0) / (1 / s)
    st.mean.assign(set.info.features, 0.0);
    st.scale.assign(set.info.features, 1.0 / config.scale);
  }
  return st;
}

void apply_input_transform(const Standardization& transform, TrainingSet* set) {
  if (set->shard.compact.empty() && !set->scanned) apply_standardization(transform, &set->shard.x);
  if (set->has_val) apply_standardization(transform, &set->val_x);
}

}  // namespace nn_dist
