// Memory a run will need, estimated before anything large is allocated, so an
// absurd --hidden, --batch-size or label is refused with one line naming it
// instead of ending in std::bad_alloc or the OOM killer.
#pragma once

#include <string>
#include <vector>

namespace nn_dist {

// Bytes this node can still give each of its ranks: the kernel's MemAvailable,
// or the cgroup's memory limit when that is lower (a SLURM job's share),
// divided by the ranks on the node.
double memory_per_rank(int ranks_on_node);

// "1.5 GiB", "12.0 MiB"
std::string format_bytes(double bytes);

// What training a model of these layer widths needs on one rank: parameters,
// gradients and optimizer states (one each of the layout), and the forward
// and backward activations of a batch of max_batch samples; keeps_derivative:
// the hidden activation's f'(z) is kept beside each hidden output (gelu, silu);
// dropout: each hidden layer's rate (empty: none), a layer that drops keeps its
// mask and its dropped output too.
struct ModelMemory {
  double parameter_count = 0;   // weights and biases
  double parameter_bytes = 0;   // bytes that grow with the widths
  double activation_bytes = 0;  // bytes that grow with the batch
  double total() const { return parameter_bytes + activation_bytes; }
};
// bf16: the products' packed weights and packed Delta too (Mlp::place_packed_weights).
ModelMemory model_memory(const std::vector<long>& sizes, long max_batch, int optimizer_states, bool keeps_derivative,
                         const std::vector<double>& dropout = {}, bool bf16 = false);

// Throws Error "<what> needs X, but this node can give each of its N rank(s) only Y".
void require_memory(double bytes, double per_rank, int ranks_on_node, const std::string& what);

}  // namespace nn_dist
