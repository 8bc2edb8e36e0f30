// SGD with momentum, Adam and AdamW as single fused loops over a slice of the flat buffers.
#include "nn_dist/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "nn_dist/common/error.hpp"

namespace nn_dist {

const NameTable<OptimizerKind>& optimizer_names() {
  static const NameTable<OptimizerKind> table("--optimizer",
                                              {{OptimizerKind::kSgd, "sgd"},
                                               {OptimizerKind::kAdam, "adam"},
                                               {OptimizerKind::kAdamW, "adamw"}});
  return table;
}

OptimizerKind parse_optimizer(const std::string& name) { return optimizer_names().parse(name); }

std::string optimizer_name(OptimizerKind kind) { return optimizer_names().name(kind); }

std::vector<std::string> optimizer_state_names(const OptimizerOptions& options) {
  if (options.kind != OptimizerKind::kSgd) return {"exp_avg", "exp_avg_sq"};
  if (options.momentum != 0) return {"momentum_buffer"};
  return {};
}

Optimizer::Optimizer(const OptimizerOptions& options, std::size_t size) : options_(options), size_(size) {
  const std::size_t states = optimizer_state_names(options_).size();
  if (states >= 1) {
    first_.assign(size, 0.0f);
    first_data_ = first_.data();
  }
  if (states >= 2) {
    second_.assign(size, 0.0f);
    second_data_ = second_.data();
  }
}

namespace {

// The gradient sums as the update loops read them: already summed, or in two
// parts added in order (the same bits as adding them first).
struct OnePart {
  const float* __restrict sums;
  float operator()(std::size_t i) const { return sums[i]; }
};
struct TwoParts {
  const float* __restrict first;
  const float* __restrict second;
  float operator()(std::size_t i) const { return first[i] + second[i]; }
};

}  // namespace

void Optimizer::update(float* params, const float* first, const float* second, float grad_scale,
                       std::size_t begin, std::size_t end) {
  if (second == nullptr) {
    apply(params, OnePart{first}, grad_scale, begin, end);
  } else {
    apply(params, TwoParts{first, second}, grad_scale, begin, end);
  }
}

template <typename Sums>
void Optimizer::apply(float* params, Sums g_sum, float grad_scale, std::size_t begin, std::size_t end) {
  const float lr = static_cast<float>(options_.lr);
  const float wd = static_cast<float>(options_.weight_decay);
  float* __restrict p = params;
  if (options_.kind == OptimizerKind::kSgd) {
    if (first_data_ == nullptr) {
      for (std::size_t i = begin; i < end; ++i) p[i] -= lr * (g_sum(i) * grad_scale + wd * p[i]);
      return;
    }
    const float mu = static_cast<float>(options_.momentum);
    float* __restrict v = first_data_;
    if (step_ == 0) {  // PyTorch starts the buffer at the first gradient
      for (std::size_t i = begin; i < end; ++i) {
        v[i] = g_sum(i) * grad_scale + wd * p[i];
        p[i] -= lr * v[i];
      }
    } else {
      for (std::size_t i = begin; i < end; ++i) {
        v[i] = mu * v[i] + (g_sum(i) * grad_scale + wd * p[i]);
        p[i] -= lr * v[i];
      }
    }
    return;
  }
  if (options_.kind == OptimizerKind::kAdamW) {
    adam<true>(params, g_sum, grad_scale, begin, end);
  } else {
    adam<false>(params, g_sum, grad_scale, begin, end);
  }
}

// Adam, or with kDecoupled AdamW: torch.optim.AdamW first shrinks θ by 1 - η wd
// (that product in double, as Python computes it), then takes Adam's step
// from the gradient alone.
template <bool kDecoupled, typename Sums>
void Optimizer::adam(float* params, Sums g_sum, float grad_scale, std::size_t begin, std::size_t end) {
  float* __restrict p = params;
  const float wd = static_cast<float>(options_.weight_decay);
  const float shrink = static_cast<float>(1 - options_.lr * options_.weight_decay);
  const double t = static_cast<double>(step_ + 1);
  const float b1 = static_cast<float>(options_.beta1), b2 = static_cast<float>(options_.beta2);
  const float step_size = static_cast<float>(options_.lr / (1 - std::pow(options_.beta1, t)));
  const float bias2_sqrt = static_cast<float>(std::sqrt(1 - std::pow(options_.beta2, t)));
  const float eps = static_cast<float>(options_.eps);
  float* __restrict m = first_data_;
  float* __restrict v = second_data_;
  for (std::size_t i = begin; i < end; ++i) {
    if constexpr (kDecoupled) p[i] *= shrink;
    const float g = kDecoupled ? g_sum(i) * grad_scale : g_sum(i) * grad_scale + wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    p[i] -= step_size * (m[i] / (std::sqrt(v[i]) / bias2_sqrt + eps));
  }
}

std::vector<float*> Optimizer::state() const {
  std::vector<float*> out;
  if (first_data_ != nullptr) out.push_back(first_data_);
  if (second_data_ != nullptr) out.push_back(second_data_);
  return out;
}

void Optimizer::place_state(const std::vector<float*>& places, bool copy) {
  const std::vector<float*> current = state();
  if (places.size() != current.size()) throw Error("optimizer state: wrong number of places");
  if (copy) {
    for (std::size_t i = 0; i < places.size(); ++i) std::copy(current[i], current[i] + size_, places[i]);
  }
  if (!places.empty()) first_data_ = places[0];
  if (places.size() > 1) second_data_ = places[1];
  FlatBuffer().swap(first_);  // the old storage is no longer used
  FlatBuffer().swap(second_);
}

std::vector<std::string> Optimizer::state_names() const { return optimizer_state_names(options_); }

}  // namespace nn_dist
