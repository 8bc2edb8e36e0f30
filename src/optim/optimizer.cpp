// SGD with momentum, Adam and AdamW as single fused loops over a slice of the flat buffers
// (optim/update_loops.inc), vectorised for AVX-512 where the CPU has it.
#include "nn_dist/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "nn_dist/common/cpu.hpp"
#include "nn_dist/common/error.hpp"
#include "optim/gradient_sums.hpp"

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

struct SgdConstants {
  float lr, wd, mu;
};
struct AdamConstants {
  float wd, shrink, b1, b2, step_size, bias2_sqrt, eps;
};

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl")
namespace avx512 {
namespace {
#include "optim/update_loops.inc"
}  // namespace
}  // namespace avx512
#pragma GCC pop_options

namespace baseline {
namespace {
#include "optim/update_loops.inc"
}  // namespace
}  // namespace baseline

void Optimizer::update(float* params, const float* first, const float* second, float grad_scale,
                       std::size_t begin, std::size_t end) {
  static const bool wide = cpu_has_avx512();
  if (second == nullptr) {
    apply(params, OnePart{first}, grad_scale, begin, end, wide);
  } else {
    apply(params, TwoParts{first, second}, grad_scale, begin, end, wide);
  }
}

template <typename Sums>
void Optimizer::apply(float* params, Sums g_sum, float grad_scale, std::size_t begin, std::size_t end, bool wide) {
  const float lr = static_cast<float>(options_.lr);
  const float wd = static_cast<float>(options_.weight_decay);
  if (options_.kind == OptimizerKind::kSgd && first_data_ == nullptr) {
    (wide ? avx512::sgd<Sums> : baseline::sgd<Sums>)(params, g_sum, grad_scale, lr, wd, begin, end);
  } else if (options_.kind == OptimizerKind::kSgd) {
    const SgdConstants c{lr, wd, static_cast<float>(options_.momentum)};
    (wide ? avx512::sgd_momentum<Sums> : baseline::sgd_momentum<Sums>)(params, first_data_, g_sum, grad_scale, c,
                                                                       step_ == 0, begin, end);
  } else {
    // torch.optim.AdamW shrinks θ by 1 - η wd, that product in double as Python computes it.
    const double t = static_cast<double>(step_ + 1);
    const AdamConstants c{wd,
                          static_cast<float>(1 - options_.lr * options_.weight_decay),
                          static_cast<float>(options_.beta1),
                          static_cast<float>(options_.beta2),
                          static_cast<float>(options_.lr / (1 - std::pow(options_.beta1, t))),
                          static_cast<float>(std::sqrt(1 - std::pow(options_.beta2, t))),
                          static_cast<float>(options_.eps)};
    if (options_.kind == OptimizerKind::kAdamW) {
      (wide ? avx512::adam<true, Sums> : baseline::adam<true, Sums>)(params, first_data_, second_data_, g_sum,
                                                                     grad_scale, c, begin, end);
    } else {
      (wide ? avx512::adam<false, Sums> : baseline::adam<false, Sums>)(params, first_data_, second_data_, g_sum,
                                                                       grad_scale, c, begin, end);
    }
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
