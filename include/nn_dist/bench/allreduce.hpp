// nn_allreduce_bench's measurement: each way of summing a float buffer over
// the ranks -- Open MPI's allreduce called directly, point-to-point transfers,
// and nn_dist's gradient sums driven as the trainer drives them -- timed size
// by size, with a checked sum before and after the timed ones.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "nn_dist/model/layout.hpp"
#include "nn_dist/parallel/gradient_sync.hpp"

namespace nn_dist {

class Communicator;

// The ways of summing, in the order they are measured at each size.
// p2p-exchange and p2p-relay (2 ranks only) measure the transport under the
// allreduce: the whole buffer sent both ways at once, against one way then
// back. Their ratio says whether a link carries both directions at once (the
// performance model's duplex factor, scripts/perf_model.py).
enum class P2p { kNone, kExchange, kRelay };
struct Path {
  const char* name;
  bool gradient_sync;  // one of nn_dist's GradientSync sums; else Open MPI's allreduce called directly
  AllreduceMode mode;  // gradient_sync: which one
  bool nonblocking;    // otherwise: MPI_Iallreduce + MPI_Wait instead of MPI_Allreduce
  P2p p2p = P2p::kNone;  // otherwise: a 2-rank sum by point-to-point messages
};

// --paths: "all", or a comma-separated list of path names; throws Error naming --paths.
std::vector<const Path*> parse_paths(const std::string& list);

// How many sums each measurement times.
struct MeasureOptions {
  long warmup_iters = 5;     // untimed; their times set the count
  long min_iters = 10, max_iters = 100000;
  double min_seconds = 0.2;  // enough timed sums to last about this long
};

// nn-hierarchical's buckets and overlap (as nn_dist's --bucket-mb and --overlap).
struct BucketSettings {
  std::size_t bucket_bytes = 1 << 20;
  bool overlap = true;
};

struct Timing {
  long iters = 0;
  double median_us = 0, min_us = 0;  // of the slowest rank's time per iteration
};

// The exit code of every rank when a checked sum was wrong.
constexpr int kWrongSumExitCode = 1;

// For tests: in the checked sums of the path it names, the last rank adds 1 to
// element 0 of its values, so the check must report a wrong sum.
constexpr const char* kFaultVariable = "NN_ALLREDUCE_BENCH_FAULT";

// The trainer's two buffers for sums of up to max_bytes, and the
// measurements over them. Every call is collective.
class AllreduceBench {
 public:
  // Throws AgreedError naming --max-bytes when the buffers do not fit.
  AllreduceBench(const Communicator& comm, std::size_t max_bytes, const BucketSettings& buckets,
                 const MeasureOptions& measure);
  long nodes() const { return nodes_; }

  // `path` summing `bytes`: its times, or nothing where the path does not
  // apply to these ranks (then *skip_note says why). A wrong checked sum is an
  // AgreedError with kWrongSumExitCode on every rank.
  std::optional<Timing> measure(const Path& path, std::size_t bytes, std::string* skip_note);

 private:
  const Communicator& comm_;
  BucketSettings buckets_;
  MeasureOptions measure_;
  long nodes_ = 1;
  // The gradient (summed in place by MPI) and the sums that
  // shared memory adds 3 or more ranks into.
  FlatBuffer data_, sums_;
};

}  // namespace nn_dist
