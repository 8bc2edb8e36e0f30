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
                      {AllreduceMode::kHierarchical, "hierarchical"}, {AllreduceMode::kMpi, "mpi"},
                      {AllreduceMode::kNone, "none"}});
  return table;
}

AllreduceMode parse_allreduce_mode(const std::string& name) {
  // A script or --config file that still asks for the retired ring learns what replaced it.
  if (name == "ring") {
    throw Error("--allreduce ring was retired: the overlapped hierarchical sum (--allreduce hierarchical) is at "
                "least as fast on every measured layout; see cluster/results/README.md");
  }
  return allreduce_mode_names().parse(name);
}

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

namespace {

// Which ranks share this rank's node (a communicator the chosen sum takes
// over), and the mode the node layout allows for the one asked for.
struct ModeChoice {
  MPI_Comm node = MPI_COMM_NULL;
  AllreduceMode mode;
  std::string reason;  // the layout of ranks over nodes, and what asked for the mode
};

// alone: the mode of a single rank for which kShared was asked or chosen.
ModeChoice choose_mode(const Communicator& comm, AllreduceMode asked, AllreduceMode alone) {
  ModeChoice choice;
  MPI_Comm_split_type(mpi_comm(comm), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &choice.node);
  int node_size = 0, fewest = 0, most = 0;
  MPI_Comm_size(choice.node, &node_size);
  MPI_Allreduce(&node_size, &fewest, 1, MPI_INT, MPI_MIN, mpi_comm(comm));
  MPI_Allreduce(&node_size, &most, 1, MPI_INT, MPI_MAX, mpi_comm(comm));
  const bool one_node = node_size == comm.size();
  const bool even = fewest == most;
  const std::string layout = one_node ? "1 node" : even ? std::to_string(comm.size() / node_size) + " nodes x " +
                                                              std::to_string(node_size) + " rank(s)"
                                                        : "nodes of " + std::to_string(fewest) + " to " +
                                                              std::to_string(most) + " ranks";
  AllreduceMode mode = asked;
  if (mode == AllreduceMode::kAuto) {
    mode = one_node ? AllreduceMode::kShared : even ? AllreduceMode::kHierarchical : AllreduceMode::kMpi;
  }
  // Shared memory cannot span nodes; the hierarchical sum needs equal nodes.
  if (mode == AllreduceMode::kShared && !one_node) mode = even ? AllreduceMode::kHierarchical : AllreduceMode::kMpi;
  if (mode == AllreduceMode::kShared && comm.size() == 1) mode = alone;
  if (mode == AllreduceMode::kHierarchical && !even) mode = AllreduceMode::kMpi;
  choice.mode = mode;
  choice.reason =
      layout + (asked == AllreduceMode::kAuto ? ", chosen by --allreduce auto" : "") +
      (asked != AllreduceMode::kAuto && asked != mode ? ", instead of --allreduce " + allreduce_mode_name(asked) : "");
  return choice;
}

}  // namespace

std::vector<Bucket> plan_buckets(const std::vector<GradientPiece>& pieces, std::size_t grad_size,
                                 std::size_t bucket_bytes, bool overlap) {
  if (!overlap) return {{0, grad_size, pieces.size() - 1}};
  std::vector<Bucket> buckets;
  const std::size_t bucket_elements = std::max<std::size_t>(1, bucket_bytes / sizeof(float));
  std::size_t end = grad_size;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (end - pieces[i].begin >= bucket_elements || i + 1 == pieces.size()) {
      buckets.push_back({pieces[i].begin, end, i});
      end = pieces[i].begin;
    }
  }
  return buckets;
}

std::unique_ptr<GradientSync> GradientSync::create(const Communicator& comm, float* sums, std::size_t grad_size,
                                                   const std::vector<GradientPiece>& pieces, std::size_t bucket_bytes,
                                                   bool overlap, AllreduceMode mode, std::size_t shared_buffers) {
  // One rank alone has nothing to sum: Open MPI's one-rank allreduce does nothing.
  ModeChoice choice = choose_mode(comm, mode, AllreduceMode::kMpi);
  MPI_Comm node = choice.node;
  const SumSetup setup{sums, grad_size, choice.mode, choice.reason};
  const BucketPlan plan{pieces, bucket_bytes, overlap};
  switch (choice.mode) {
    case AllreduceMode::kShared:
    case AllreduceMode::kHierarchical:
      return make_shared_sum(comm, node, setup, shared_buffers, plan);  // takes the node communicator
    default:
      MPI_Comm_free(&node);
      return make_mpi_sum(comm, setup);
  }
}

std::unique_ptr<GradientSync> GradientSync::create_exact(
    const Communicator& comm, float* sums, std::size_t grad_size,
    const std::vector<std::pair<std::size_t, std::size_t>>& tensors, int max_blocks, long total_blocks,
    AllreduceMode mode, const std::vector<GradientPiece>* pieces, std::size_t shared_buffers) {
  // kNone sums nothing: it cannot give the same bits at any rank count.
  if (mode == AllreduceMode::kNone) {
    throw Error("--allreduce " + allreduce_mode_name(mode) +
                ": not with --reproducible (expected auto, shared, hierarchical or mpi: the sums that can be exact)");
  }
  // One rank keeps the shared-memory path (its only cost is a window of one
  // segment), so a single process runs the same code as a node of many.
  ModeChoice choice = choose_mode(comm, mode, AllreduceMode::kShared);
  const SumSetup setup{sums, grad_size, choice.mode, "exact in 64-bit fixed point; " + choice.reason};
  return make_exact_sum(comm, choice.node, setup, ExactBlocks{tensors, max_blocks, total_blocks, pieces, shared_buffers});
}

}  // namespace nn_dist
