// The model being trained and its buffers: the MLP over one flat parameter
// buffer, the gradient buffer, the optimizer, and the gradient sum, which
// decides where the parameters and optimizer state live (e.g. once per node
// in shared memory). Every rank starts from rank 0's bits.
#pragma once

#include <memory>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/train/resume_point.hpp"
#include "nn_dist/train/training_set.hpp"

namespace nn_dist {

struct ModelState {
  std::unique_ptr<Mlp<float>> mlp;
  FlatBuffer params, grad;
  float* params_data = nullptr;  // params, or the node's shared copy (GradientSync::place)
  std::unique_ptr<Optimizer> optimizer;
  std::unique_ptr<GradientSync> sync;
};

// The buffers for start's widths, once they are known to fit this node's
// memory (errors agreed); rank 0 takes a checkpoint's parameters and
// optimizer state as read. Collective.
ModelState allocate_model(const Communicator& comm, const Config& config, const TrainingSet& set,
                          ResumePoint* start);

// Rank 0's parameters (drawn from `seed` when no checkpoint gave them) and
// optimizer state, broadcast to every rank. Collective.
void share_initial_parameters(const Communicator& comm, bool drawn, Activation activation, uint64_t seed,
                              ModelState* model);

// The gradient sum, and where the parameters and optimizer state then live. Collective.
// --reproducible: the exact sum over blocks (GradientSync::create_exact);
// the parameters stay private to each rank.
void start_gradient_sum(const Communicator& comm, const Config& config, const TrainingSet& set,
                        ModelState* model);

// --reproducible: the products must be the same on every rank, so ranks
// whose CPUs would pick different kernels all take the best they share, and
// rank 0 says so. Collective.
void agree_gemm_kernel(const Communicator& comm, const Config& config);

}  // namespace nn_dist
