// The gradient sum's interface and the choice of a way of summing: the node
// layout (which ranks share memory) and --allreduce decide.
#include "nn_dist/parallel/gradient_sync.hpp"

#include <mpi.h>

#include <algorithm>

#include "parallel/mpi_comm.hpp"
#include "parallel/sum/sums.hpp"

namespace nn_dist {

const NameTable<AllreduceMode>& allreduce_mode_names() {
  static const NameTable<AllreduceMode> table(
      "--allreduce", {{AllreduceMode::kAuto, "auto"}, {AllreduceMode::kShared, "shared"},
                      {AllreduceMode::kHierarchical, "hierarchical"}, {AllreduceMode::kRing, "ring"},
                      {AllreduceMode::kMpi, "mpi"}, {AllreduceMode::kNone, "none"}});
  return table;
}

AllreduceMode parse_allreduce_mode(const std::string& name) { return allreduce_mode_names().parse(name); }

std::string allreduce_mode_name(AllreduceMode mode) { return allreduce_mode_names().name(mode); }

GradientSync::GradientSync(const Communicator& comm, float* sums, std::size_t grad_size, AllreduceMode mode,
                           std::string reason)
    : comm_(comm),
      sums_(sums),
      size_(grad_size),
      mode_(mode),
      reason_(std::move(reason)),
      backward_buffer_(sums),
      own_end_(grad_size) {}

GradientSync::~GradientSync() = default;

void GradientSync::start_stats(const double* stats) { std::copy(stats, stats + kStepStats, stats_); }

float* GradientSync::place(FlatBuffer* params, Optimizer*, Mlp<float>*) { return params->data(); }

std::unique_ptr<GradientSync> GradientSync::create(const Communicator& comm, float* sums, std::size_t grad_size,
                                                   const std::vector<GradientPiece>& pieces, std::size_t bucket_bytes,
                                                   bool overlap, AllreduceMode mode, std::size_t shared_buffers) {
  // Which ranks share a node, and whether every node has as many.
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(mpi_comm(comm), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node);
  int node_size = 0, fewest = 0, most = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Allreduce(&node_size, &fewest, 1, MPI_INT, MPI_MIN, mpi_comm(comm));
  MPI_Allreduce(&node_size, &most, 1, MPI_INT, MPI_MAX, mpi_comm(comm));
  const bool one_node = node_size == comm.size();
  const bool even = fewest == most;
  const std::string layout = one_node ? "1 node" : even ? std::to_string(comm.size() / node_size) + " nodes x " +
                                                              std::to_string(node_size) + " rank(s)"
                                                        : "nodes of " + std::to_string(fewest) + " to " +
                                                              std::to_string(most) + " ranks";
  const AllreduceMode asked = mode;
  if (mode == AllreduceMode::kAuto) {
    mode = one_node ? (comm.size() > 1 ? AllreduceMode::kShared : AllreduceMode::kRing)
           : even   ? AllreduceMode::kHierarchical
                    : AllreduceMode::kMpi;
  }
  // Shared memory cannot span nodes; the hierarchical sum needs equal nodes.
  if (mode == AllreduceMode::kShared && !one_node) mode = even ? AllreduceMode::kHierarchical : AllreduceMode::kMpi;
  if (mode == AllreduceMode::kShared && comm.size() == 1) mode = AllreduceMode::kRing;  // nothing to sum
  if (mode == AllreduceMode::kHierarchical && !even) mode = AllreduceMode::kMpi;
  const std::string reason =
      layout + (asked == AllreduceMode::kAuto ? ", chosen by --allreduce auto" : "") +
      (asked != AllreduceMode::kAuto && asked != mode ? ", instead of --allreduce " + allreduce_mode_name(asked) : "");
  const SumSetup setup{sums, grad_size, mode, reason};
  switch (mode) {
    case AllreduceMode::kShared:
    case AllreduceMode::kHierarchical:
      return make_shared_sum(comm, node, setup, shared_buffers);  // takes the node communicator
    case AllreduceMode::kRing:
      MPI_Comm_free(&node);
      return make_ring_sum(comm, setup, pieces, bucket_bytes, overlap);
    default:
      MPI_Comm_free(&node);
      return make_mpi_sum(comm, setup);
  }
}

}  // namespace nn_dist
