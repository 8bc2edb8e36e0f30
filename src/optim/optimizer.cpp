// SGD with momentum and Adam as single fused loops over a slice of the flat buffers.
#include "nn_dist/optim/optimizer.hpp"

#include <cmath>

#include "nn_dist/common/error.hpp"

namespace nn_dist {

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adam") return OptimizerKind::kAdam;
  throw Error("--optimizer: unknown value '" + name + "' (expected sgd or adam)");
}

std::string optimizer_name(OptimizerKind kind) { return kind == OptimizerKind::kSgd ? "sgd" : "adam"; }

Optimizer::Optimizer(const OptimizerOptions& options, std::size_t size) : options_(options) {
  if (options_.kind == OptimizerKind::kAdam) {
    first_.assign(size, 0.0f);
    second_.assign(size, 0.0f);
  } else if (options_.momentum != 0) {
    first_.assign(size, 0.0f);
  }
}

void Optimizer::update(float* params, const float* grad_sums, float grad_scale, std::size_t begin,
                       std::size_t end) {
  const float lr = static_cast<float>(options_.lr);
  const float wd = static_cast<float>(options_.weight_decay);
  float* __restrict p = params;
  const float* __restrict g_sum = grad_sums;
  if (options_.kind == OptimizerKind::kSgd) {
    if (first_.empty()) {
      for (std::size_t i = begin; i < end; ++i) p[i] -= lr * (g_sum[i] * grad_scale + wd * p[i]);
      return;
    }
    const float mu = static_cast<float>(options_.momentum);
    float* __restrict v = first_.data();
    if (step_ == 0) {  // PyTorch starts the buffer at the first gradient
      for (std::size_t i = begin; i < end; ++i) {
        v[i] = g_sum[i] * grad_scale + wd * p[i];
        p[i] -= lr * v[i];
      }
    } else {
      for (std::size_t i = begin; i < end; ++i) {
        v[i] = mu * v[i] + (g_sum[i] * grad_scale + wd * p[i]);
        p[i] -= lr * v[i];
      }
    }
    return;
  }
  const double t = static_cast<double>(step_ + 1);
  const float b1 = static_cast<float>(options_.beta1), b2 = static_cast<float>(options_.beta2);
  const float step_size = static_cast<float>(options_.lr / (1 - std::pow(options_.beta1, t)));
  const float bias2_sqrt = static_cast<float>(std::sqrt(1 - std::pow(options_.beta2, t)));
  const float eps = static_cast<float>(options_.eps);
  float* __restrict m = first_.data();
  float* __restrict v = second_.data();
  for (std::size_t i = begin; i < end; ++i) {
    const float g = g_sum[i] * grad_scale + wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    p[i] -= step_size * (m[i] / (std::sqrt(v[i]) / bias2_sqrt + eps));
  }
}

std::vector<FlatBuffer*> Optimizer::state() {
  std::vector<FlatBuffer*> out;
  if (!first_.empty()) out.push_back(&first_);
  if (!second_.empty()) out.push_back(&second_);
  return out;
}

std::vector<std::string> Optimizer::state_names() const {
  if (options_.kind == OptimizerKind::kAdam) return {"exp_avg", "exp_avg_sq"};
  if (!first_.empty()) return {"momentum_buffer"};
  return {};
}

}  // namespace nn_dist
