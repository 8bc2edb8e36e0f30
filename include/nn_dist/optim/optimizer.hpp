// Optimizers over flat spans, following PyTorch's update rules exactly so a
// run can be compared with torch.optim step for step:
//   SGD:  g = grad + wd θ;  v = μ v + g (v = g on the first step);  θ -= η v
//   Adam: g = grad + wd θ;  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;
//         θ -= (η / (1-β1^t)) m / (sqrt(v) / sqrt(1-β2^t) + ε)
//   AdamW: θ *= 1 - η wd, then Adam's step with g = grad (decoupled weight decay)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/common/name_table.hpp"
#include "nn_dist/model/layout.hpp"

namespace nn_dist {

enum class OptimizerKind { kSgd, kAdam, kAdamW };

// The names --optimizer and checkpoints use.
const NameTable<OptimizerKind>& optimizer_names();
OptimizerKind parse_optimizer(const std::string& name);  // throws Error naming --optimizer
std::string optimizer_name(OptimizerKind kind);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kSgd;
  double lr = 0.05;
  double momentum = 0;
  double weight_decay = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// The state buffers these options keep, by their checkpoint names (as PyTorch names them).
std::vector<std::string> optimizer_state_names(const OptimizerOptions& options);

class Optimizer {
 public:
  Optimizer(const OptimizerOptions& options, std::size_t size);

  // One update of params[begin, end) from gradient sums scaled by grad_scale
  // (1 / global sample count). Call for consecutive slices that cover the
  // buffer, then finish_step() once.
  void update(float* params, const float* grad_sums, float grad_scale, std::size_t begin, std::size_t end) {
    update(params, grad_sums, nullptr, grad_scale, begin, end);
  }
  // The same, with the sums still in two parts: sums[i] = first[i] + second[i],
  // added in that order while updating (one pass over memory instead of two).
  // second may be nullptr: then the sums are first[i].
  void update(float* params, const float* first, const float* second, float grad_scale, std::size_t begin,
              std::size_t end);
  void finish_step() { ++step_; }
  // The lr of the next update (a schedule sets it before each step; see optim/schedule.hpp).
  void set_lr(double lr) { options_.lr = lr; }

  int64_t step() const { return step_; }  // updates taken so far
  void set_step(int64_t step) { step_ = step; }
  // State buffers (each size() elements, the parameter layout), and their checkpoint names.
  std::vector<float*> state() const;
  std::vector<std::string> state_names() const;
  std::size_t size() const { return size_; }
  // Moves the state into caller-owned memory (e.g. node-shared), one place per
  // state() buffer, copying the current values there when copy is true.
  void place_state(const std::vector<float*>& places, bool copy);
  const OptimizerOptions& options() const { return options_; }

 private:
  // wide: the AVX-512 loops (the same bits as the others).
  template <typename Sums>
  void apply(float* params, Sums sums, float grad_scale, std::size_t begin, std::size_t end, bool wide);

  OptimizerOptions options_;
  int64_t step_ = 0;
  std::size_t size_;
  FlatBuffer first_, second_;  // momentum_buffer, or Adam's (AdamW's) exp_avg and exp_avg_sq
  float* first_data_ = nullptr;  // where the state lives: first_/second_, or placed elsewhere
  float* second_data_ = nullptr;
};

}  // namespace nn_dist
