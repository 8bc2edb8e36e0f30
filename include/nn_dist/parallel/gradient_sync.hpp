// The ways of summing the step's gradient over the ranks, behind one
// interface: the trainer hands over its buffers and never learns where they
// live. Each way is its own file in src/parallel/sum/, chosen at start-up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn_dist/common/name_table.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/optim/optimizer.hpp"

namespace nn_dist {

class Communicator;

// How the gradient is summed over the ranks.
// - kShared: all ranks on one node; each publishes its gradient in MPI shared
//   memory and the ranks add them up (in rank order) slice by slice, the last
//   addition inside the optimizer's pass: no messages, no extra copies. With
//   shared buffers (the parameters and optimizer state, in the same window),
//   each rank sums and updates only its own 1/P of them, once for everyone
//   (and its backprop claims that part's cache lines: Mlp::set_update_range).
// - kMpi: one blocking MPI_Allreduce of the whole buffer (Open MPI's own;
//   for comparison: it allocates on every call).
// - kNone: no gradient sum at all: each rank updates its own model from its
//   own gradient (the losses are still summed). Not data-parallel training: a
//   benchmark of the most that P ranks could do with free communication.
// - kHierarchical: for several nodes. Within each node as kShared: one copy of
//   the parameters and optimizer state per node in shared memory. The
//   gradient goes in buckets (last layer first, --bucket-mb), each cut into
//   one part per local rank: as soon as every rank of the node has
//   backpropagated a bucket, each rank sums its part of the node's L gradients
//   (in local rank order) and starts MPI_Iallreduce of it over the nodes, on a
//   communicator of the ranks that own the same part on every node, so all
//   local ranks and links work at once, overlapping the rest of backprop, and
//   Open MPI's algorithms (and the network's offloads) do the inter-node part.
//   Needs the same number of ranks on every node.
// - kAuto: kShared on one node; kHierarchical on several with equal rank
//   counts; else kMpi. A single rank has nothing to sum: kShared (asked or
//   chosen) is then kMpi, whose one-rank MPI_Allreduce does nothing.
enum class AllreduceMode { kAuto, kShared, kHierarchical, kMpi, kNone };
const NameTable<AllreduceMode>& allreduce_mode_names();  // the names --allreduce takes
// Throws Error naming --allreduce; for "ring" (nn_dist's own ring allreduce,
// retired: the overlapped kHierarchical was at least as fast on every
// measured layout), an Error naming its replacement.
AllreduceMode parse_allreduce_mode(const std::string& name);
std::string allreduce_mode_name(AllreduceMode mode);

// What each step sums besides the gradient. The control values let the
// ranks agree on a stop or a checkpoint with no collective of their own.
enum StepStat : int {
  kStatLoss,
  kStatCorrect,
  kStatCount,
  kStatStopRanks,      // ranks that have received a stop signal (SIGTERM, SIGUSR1, SIGINT)
  kStatStopSeconds,    // the sum of those ranks' seconds since their signal
  kStatCheckpointDue,  // ranks whose --checkpoint-minutes clock has run out
  kStatStopSignals,    // the sum of those ranks' signal numbers (names the signal when they agree)
  kStepStats
};

// Sums the step's gradient and its StepStat values over the ranks.
// A step: start_stats(); backward() into backward_buffer() with this object
// as observer (or all_pieces_done() for a rank without samples; with
// gradient accumulation, the earlier micro-batches' backward() add into the
// buffer without an observer, and only the last one's reports); optionally
// publish() and other work; wait_stats(); wait(update) -- update(begin, end,
// first, second) is called for consecutive slices whose sums are final: the sum
// of element i is first[i], or first[i] + second[i] (added in that order) when
// second is not null. first and second are indexed like the whole gradient.

class GradientSync : public BackwardObserver {
 public:
  // Chooses the sum (mode, and the node layout for kAuto; see AllreduceMode)
  // and builds it. sums: the gradient-sum buffer (grad_size elements) the
  // optimizer reads (in shared-memory modes, scratch space for the sums of 3
  // or more ranks). pieces: Mlp::pieces(); bucket_bytes: the least a bucket
  // of the hierarchical sum holds (the last may be smaller); overlap false: it
  // sums one bucket after backprop. shared_buffers: in shared-memory modes, how many
  // grad_size buffers to place in node-shared memory (see place()). Collective.
  static std::unique_ptr<GradientSync> create(const Communicator& comm, float* sums, std::size_t grad_size,
                                              const std::vector<GradientPiece>& pieces, std::size_t bucket_bytes,
                                              bool overlap, AllreduceMode mode = AllreduceMode::kAuto,
                                              std::size_t shared_buffers = 0);
  // --reproducible: an order-free sum (src/parallel/sum/exact_sum.cpp). Each rank
  // backpropagates up to `max_blocks` blocks per step, each into its own buffer
  // block_buffer(j) (grad_size floats); the sum of every block of every rank is
  // formed in 64-bit fixed point, so any rank count, layout and mode gives the same bits.
  // tensors: the [begin, end) ranges of the flat gradient that get their own exponent
  // (elements outside every range, e.g. padding, sum to 0). total_blocks: the most blocks
  // one step sums over all ranks (bounds the exponent so the sum cannot overflow; it
  // must not depend on the rank count, or the exponents, and so the bits, would).
  // mode: kAuto (kShared on one node, kHierarchical on several with equal ranks per node, else kMpi),
  // kShared, kHierarchical or kMpi; kNone throws Error naming --allreduce. Collective.
  // A block's value that is NaN or infinite makes its tensor's sum NaN on every rank.
  // pieces (Mlp::pieces()), if given: each block is backpropagated with this
  // object as observer after start_block(j), and its largest magnitudes are
  // taken piece by piece while backprop has them in cache (else in one more
  // pass over every block). shared_buffers: as create()'s, for shared memory
  // (each rank then updates its own part of the node's one copy; its clipping
  // norm would add the ranks' parts in an order that depends on the layout).
  static std::unique_ptr<GradientSync> create_exact(const Communicator& comm, float* sums, std::size_t grad_size,
                                                    const std::vector<std::pair<std::size_t, std::size_t>>& tensors,
                                                    int max_blocks, long total_blocks, AllreduceMode mode,
                                                    const std::vector<GradientPiece>* pieces = nullptr,
                                                    std::size_t shared_buffers = 0);
  ~GradientSync() override;
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  AllreduceMode mode() const { return mode_; }
  // Why this mode: the layout of ranks over nodes, and what asked for it.
  const std::string& reason() const { return reason_; }
  // Where training keeps the parameters and optimizer state: with shared
  // buffers, one copy per node in shared memory (filled by one rank of each
  // node from the values every rank holds; *params is then freed, and mlp
  // claims this rank's part while it backpropagates); otherwise they stay
  // where they are. Returns the parameters to use. Collective.
  virtual float* place(FlatBuffer* params, Optimizer* optimizer, Mlp<float>* mlp);
  // The i-th shared buffer (one memory for all ranks of the node), or nullptr
  // when this mode has none. When there are shared buffers, wait() hands this
  // rank only its own part [own_begin(), own_end()) of the sum, and returns once
  // every rank has updated its part.
  virtual float* shared_buffer(std::size_t) const { return nullptr; }
  std::size_t own_begin() const { return own_begin_; }
  std::size_t own_end() const { return own_end_; }
  // How many elements wait() hands this rank each step (the hierarchical sum
  // hands a part of every bucket, so its parts are not one range: own_begin()
  // and own_end() are then 0).
  virtual std::size_t own_elements() const { return own_end_ - own_begin_; }
  // Where this step's local gradient goes (the sum buffer itself, or this
  // rank's shared-memory buffer).
  float* backward_buffer() const { return backward_buffer_; }
  // --reproducible: block j's gradient buffer (j < max_blocks); nullptr for other sums.
  virtual float* block_buffer(int) const { return nullptr; }
  // --reproducible: how many blocks this rank filled this step (0..max_blocks); call before wait_stats().
  virtual void set_blocks(int) {}
  // --reproducible with pieces: block j's backprop (this object its observer) starts.
  virtual void start_block(int) {}
  // Starts summing the step's statistics (kStepStats values).
  virtual void start_stats(const double* stats);
  void piece_done(std::size_t) override {}
  // For a rank with no samples in this step: its zero gradient is final at once.
  virtual void all_pieces_done() {}
  // Shared memory: tells the peers this rank's gradient and statistics are
  // complete, so they can go on while this rank does other work (e.g. gathers
  // its next batch). wait_stats() publishes if this was not called.
  virtual void publish() {}
  // Waits for the step's StepStat sums: call before wait().
  virtual const double* wait_stats() = 0;
  // Hands the summed gradient to update(begin, end, first, second) slice by
  // slice, as soon as each slice is final (hierarchical buckets in the order
  // they were started). Shared memory leaves the last addition to update(), which reads
  // the last rank's gradient in the same pass as the parameters.
  template <typename F>
  void wait(F&& update) {
    wait(update, [] {});
  }
  // The same, then finish() once every slice was handed over and before the
  // step ends (with shared buffers: before the peers may read the
  // parameters). The slices stay valid until then: --clip-grad-norm hands
  // them over, learns the norm, then updates in finish().
  template <typename F, typename G>
  void wait(F&& update, G&& finish) {
    const std::size_t slices = num_slices();
    for (std::size_t i = 0; i < slices; ++i) {
      std::size_t begin = 0, end = 0;
      const float* second = nullptr;
      const float* first = finish_slice(i, &begin, &end, &second);
      update(begin, end, first, second);
    }
    finish();
    end_step();
  }
  // Inside finish(): the sum over the ranks of `own`, each rank's sum of
  // squares of the slices it was handed, where the update is sharded (each
  // rank sees only its part); `own` itself where every rank sees the whole
  // sum. The same bits on every rank. Shared memory only: no collective.
  virtual double sum_squares(double own) { return own; }
  virtual std::size_t num_buckets() const { return 1; }
  std::size_t slices() const { return num_slices(); }  // the update() calls of each wait()
  double test_seconds() const { return test_seconds_; }  // time spent moving the sum on during backprop
  void reset_test_seconds() { test_seconds_ = 0; }

 protected:
  GradientSync(const Communicator& comm, float* sums, std::size_t grad_size, AllreduceMode mode, std::string reason);
  virtual std::size_t num_slices() const = 0;
  // Returns the first part of the slice's sums, and sets *second (see wait()).
  virtual const float* finish_slice(std::size_t i, std::size_t* begin, std::size_t* end, const float** second) = 0;
  virtual void end_step() { ++step_; }

  const Communicator& comm_;  // every collective runs on this communicator (or ones split from it)
  float* sums_;
  std::size_t size_;
  AllreduceMode mode_;
  std::string reason_;
  float* backward_buffer_;
  std::size_t own_begin_ = 0, own_end_;  // the part of the sum this rank hands to update()
  double stats_[kStepStats] = {};
  int64_t step_ = 0;
  double test_seconds_ = 0;
};

}  // namespace nn_dist
