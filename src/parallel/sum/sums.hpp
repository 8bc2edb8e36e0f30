// The ways of summing, each in its own file here; GradientSync::create picks one.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn_dist/parallel/comm.hpp"

namespace nn_dist {

struct SumSetup {
  float* sums;           // the gradient-sum buffer the optimizer reads
  std::size_t grad_size;
  AllreduceMode mode;    // as chosen
  std::string reason;    // why (for the banner)
};

// A bucket of the gradient: consecutive pieces (Mlp::pieces(), last layer
// first) summed as one message once backprop has finished them all.
struct Bucket {
  std::size_t begin, end;  // element range of the gradient
  std::size_t last_piece;  // the bucket may start once this piece is done
};
// Buckets of at least bucket_bytes (the last may be smaller) in the order
// backprop finishes them; overlap false: one bucket of the whole gradient.
std::vector<Bucket> plan_buckets(const std::vector<GradientPiece>& pieces, std::size_t grad_size,
                                 std::size_t bucket_bytes, bool overlap);

// How the hierarchical sum cuts the gradient (see plan_buckets).
struct BucketPlan {
  const std::vector<GradientPiece>& pieces;
  std::size_t bucket_bytes;
  bool overlap;
};

// kShared and kHierarchical: node-shared memory (the node communicator is taken over).
std::unique_ptr<GradientSync> make_shared_sum(const Communicator& comm, MPI_Comm node, const SumSetup& setup,
                                              std::size_t shared_buffers, const BucketPlan& plan);
// kMpi (one MPI_Allreduce; also a single rank's, which has nothing to sum) and kNone (no sum: a benchmark).
std::unique_ptr<GradientSync> make_mpi_sum(const Communicator& comm, const SumSetup& setup);

// --reproducible: what the exact sum sums (see GradientSync::create_exact).
struct ExactBlocks {
  std::vector<std::pair<std::size_t, std::size_t>> tensors;  // [begin, end) of each tensor
  int max_blocks;      // per rank and step
  long total_blocks;   // over all ranks, per step
  const std::vector<GradientPiece>* pieces;  // or null (see GradientSync::create_exact)
  std::size_t shared_buffers;                // see GradientSync::create_exact
};
// kShared, kHierarchical or kMpi in 64-bit fixed point (the node communicator is taken over).
std::unique_ptr<GradientSync> make_exact_sum(const Communicator& comm, MPI_Comm node, const SumSetup& setup,
                                             const ExactBlocks& blocks);

}  // namespace nn_dist
