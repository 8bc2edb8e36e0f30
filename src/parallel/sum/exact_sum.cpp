// --reproducible: the gradient summed in 64-bit fixed point, so the result's
// bits depend on neither the rank count, the node layout, nor the mode. Each
// tensor gets one exponent agreed by every rank (from the global largest
// magnitude); integer addition is associative, so any grouping is exact.
#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <memory>

#include "nn_dist/math/fixed_point.hpp"
#include "nn_dist/model/layout.hpp"
#include "nn_dist/parallel/watchdog.hpp"
#include "parallel/mpi_comm.hpp"
#include "parallel/sum/node_window.hpp"
#include "parallel/sum/sums.hpp"

namespace nn_dist {

namespace {

// The head of each rank's segment of the node's window (kShared and
// kHierarchical). Each counter is written by the segment's owner only, with
// release, and read by peers with acquire (NodeWindow::wait_for):
//
//   byte 0    noted      steps whose stats, tensor maxima and gradient blocks the owner has written
//   byte 8    blocks     how many gradient blocks the owner filled this step
//   byte 64   summed     steps whose part of the sum (as floats) is complete
//   byte 128  updated    (shared parameters) steps whose update of the owner's part is complete
//   byte 192  stats      the owner's StepStat values
//   byte 256  the owner's largest magnitude of each tensor: padded(tensors) doubles
//   then      the owner's gradient blocks: max_blocks x padded(grad_size) floats (backprop writes them)
//   then      the owner's part of the float sum: padded(longest part) floats
//
// Each rank sums its own part of the gradient over every block of the node,
// reading the peers' float blocks and turning them into integers as it adds
// (no integers are written to the window). One copy of each suffices, not
// two by step parity: a rank overwrites its stats, maxima and blocks only
// after every peer has reported `summed` (or, with shared parameters,
// `updated`) for the last step, so is done reading them, and its float part
// only after every peer has `noted` the next step (which a peer does after
// reading the sum). With shared parameters (place()) each rank reads only
// its own part, so there is no `summed` wait: `updated` ends the step.
struct ExactHead {
  alignas(64) int64_t noted;
  int64_t blocks;
  alignas(64) int64_t summed;
  alignas(64) int64_t updated;
  alignas(64) double stats[8];
};
static_assert(sizeof(ExactHead) == 256, "the documented layout");
static_assert(kStepStats <= 8, "a step's StepStat values fit one cache line");

std::size_t padded(std::size_t elements) { return (elements + 15) / 16 * 16; }

// Marks a tensor with a NaN or infinite value: its sum is NaN (no exponent exists).
constexpr int kNotFinite = INT_MIN;

// A stretch of the flat gradient with one exponent: a tensor, or a gap between
// tensors (tensor -1: sums to 0).
struct Run {
  std::size_t begin, end;
  int tensor;
};

// The arguments are the trainer's, the same on every rank; a mismatch of
// total_blocks or the tensors would give ranks different exponents, and a
// wrong sum, so every rank compares them (and all throw together).
void check(const Communicator& comm, std::size_t grad_size, const ExactBlocks& blocks) {
  std::string problem;
  if (blocks.max_blocks < 1) problem = "max_blocks " + std::to_string(blocks.max_blocks) + " < 1";
  if (blocks.total_blocks < 1 || blocks.total_blocks > (1L << (kFixedPointBits - 1))) {
    problem = "total_blocks " + std::to_string(blocks.total_blocks) + " outside [1, 2^61]";
  }
  std::vector<std::pair<std::size_t, std::size_t>> sorted = blocks.tensors;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t t = 0; t < sorted.size(); ++t) {
    if (sorted[t].first > sorted[t].second || sorted[t].second > grad_size ||
        (t > 0 && sorted[t].first < sorted[t - 1].second)) {
      problem = "tensor [" + std::to_string(sorted[t].first) + ", " + std::to_string(sorted[t].second) +
                ") overlaps another or leaves the gradient of " + std::to_string(grad_size);
    }
  }
  long mine[3] = {blocks.total_blocks, static_cast<long>(blocks.tensors.size()), problem.empty() ? 0 : 1};
  long most[3] = {}, least[3] = {};
  MPI_Allreduce(mine, most, 3, MPI_LONG, MPI_MAX, mpi_comm(comm));
  MPI_Allreduce(mine, least, 3, MPI_LONG, MPI_MIN, mpi_comm(comm));
  if (most[0] != least[0] || most[1] != least[1]) problem = "ranks disagree on total_blocks or the tensors";
  if (problem.empty() && most[2] != 0) problem = "another rank's arguments are wrong";
  if (!problem.empty()) throw Error("internal: exact gradient sum: " + problem);
}

class ExactSum : public GradientSync {
 public:
  ExactSum(const Communicator& comm, MPI_Comm node, const SumSetup& setup, const ExactBlocks& blocks)
      : GradientSync(comm, setup.sums, setup.grad_size, setup.mode, setup.reason),
        tensors_(blocks.tensors),
        total_blocks_(blocks.total_blocks),
        maxima_(blocks.tensors.size()),
        own_maxima_(blocks.tensors.size(), 0.0f),
        exponents_(blocks.tensors.size()) {
    runs_ = make_runs();
    if (blocks.pieces != nullptr) piece_runs_ = pieces_in_tensors(*blocks.pieces);
    max_blocks_ = blocks.max_blocks;
    if (mode_ == AllreduceMode::kMpi) {
      MPI_Comm_free(&node);
      for (int j = 0; j < max_blocks_; ++j) blocks_.emplace_back(size_, 0.0f);
      for (FlatBuffer& block : blocks_) block_data_.push_back(block.data());
      backward_buffer_ = block_data_[0];
      fixed_.assign(size_, 0);
      return;
    }
    node_ = node;
    int node_size = 0;
    MPI_Comm_size(node_, &node_size);
    MPI_Comm_rank(node_, &local_);
    // The same local rank on every node owns the same part (equal nodes), so
    // the parts' sums over the nodes are one allreduce each, all at once.
    if (mode_ == AllreduceMode::kHierarchical) MPI_Comm_split(mpi_comm(comm_), local_, comm.rank(), &across_);
    for (int r = 0; r < node_size; ++r) {
      std::size_t begin = 0, end = 0;
      line_part(size_, static_cast<std::size_t>(r), static_cast<std::size_t>(node_size), &begin, &end);
      parts_.emplace_back(begin, end);
      longest_part_ = std::max(longest_part_, end - begin);
    }
    shm_ = std::make_unique<NodeWindow>(node_, mpi_comm(comm_),
                                        sizeof(ExactHead) + padded(tensors_.size()) * sizeof(double) +
                                            (max_blocks_ * padded(size_) + padded(longest_part_)) * sizeof(float));
    for (int j = 0; j < max_blocks_; ++j) block_data_.push_back(block(local_, j));
    backward_buffer_ = block_data_[0];
    if (mode_ == AllreduceMode::kHierarchical) fixed_.assign(longest_part_, 0);
    // The node's one copy of the parameters and optimizer state, in local rank 0's segment.
    if (blocks.shared_buffers > 0) {
      buffers_ = blocks.shared_buffers;
      own_begin_ = parts_[local_].first;
      own_end_ = parts_[local_].second;
      buffer_shm_ = std::make_unique<NodeWindow>(node_, mpi_comm(comm_),
                                                 local_ == 0 ? buffers_ * padded(size_) * sizeof(float) : 0);
    }
  }

  // As the shared-memory sum places them (shared_sum.cpp): each rank then
  // updates only its own part, once for the node; the update's bits do not
  // depend on which rank makes it.
  float* place(FlatBuffer* params, Optimizer* optimizer, Mlp<float>* mlp) override {
    if (buffers_ == 0) return params->data();
    const std::size_t states = optimizer->state().size();
    if (buffers_ < 1 + states) throw Error("internal: too few shared buffers for the optimizer state");
    const bool leader = local_ == 0;
    if (leader) std::copy(params->begin(), params->end(), shared_buffer(0));
    std::vector<float*> places;
    for (std::size_t i = 1; i <= states; ++i) places.push_back(shared_buffer(i));
    optimizer->place_state(places, leader);
    packed_shm_ = share_packed_weights(node_, mpi_comm(comm_), shared_buffer(0), mlp);
    MPI_Barrier(node_);  // filled before anyone reads
    FlatBuffer().swap(*params);
    mlp->set_update_range(own_begin_, own_end_);
    return shared_buffer(0);
  }
  float* shared_buffer(std::size_t i) const override {
    return i < buffers_ ? reinterpret_cast<float*>(buffer_shm_->segment(0)) + padded(size_) * i : nullptr;
  }
  ~ExactSum() override {
    packed_shm_.reset();
    buffer_shm_.reset();
    shm_.reset();  // the windows before their communicator
    if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
    if (across_ != MPI_COMM_NULL) MPI_Comm_free(&across_);
  }

  float* block_buffer(int j) const override { return j >= 0 && j < max_blocks_ ? block_data_[j] : nullptr; }
  void start_block(int j) override { current_ = j; }
  // A piece of the current block is final: its largest magnitudes now, while
  // backprop has it in cache.
  void piece_done(std::size_t i) override {
    if (i >= piece_runs_.size()) return;
    const float* block = block_data_[current_];
    for (const Run& run : piece_runs_[i]) {
      own_maxima_[run.tensor] = std::max(own_maxima_[run.tensor], max_magnitude(block + run.begin, run.end - run.begin));
    }
  }
  void set_blocks(int n) override {
    if (n < 0 || n > max_blocks_) {
      throw Error("internal: " + std::to_string(n) + " gradient blocks on one rank (at most " +
                  std::to_string(max_blocks_) + ")");
    }
    filled_ = n;
  }
  // The step's statistics, summed with the tensors' largest magnitudes
  // (which fix the exponents): the blocks are complete by now. The order of
  // the statistics' addition varies with the rank count, which is exact only
  // because the trainer makes every value a multiple of 2^-24 small enough to
  // add exactly. The maxima are exact in any order.
  const double* wait_stats() override {
    watchdog::Wait wait(nullptr);
    local_maxima();
    if (mode_ == AllreduceMode::kMpi) {
      MPI_Allreduce(MPI_IN_PLACE, stats_, kStepStats, MPI_DOUBLE, MPI_SUM, mpi_comm(comm_));
      MPI_Allreduce(MPI_IN_PLACE, maxima_.data(), static_cast<int>(maxima_.size()), MPI_DOUBLE, MPI_MAX,
                    mpi_comm(comm_));
    } else {
      node_stats_and_maxima();
    }
    // A NaN or infinity anywhere made the tensor's maximum infinite on every
    // rank (max_magnitude), and makes that tensor's sum NaN.
    for (std::size_t t = 0; t < tensors_.size(); ++t) {
      exponents_[t] = std::isfinite(maxima_[t]) ? fixed_point_exponent(maxima_[t], total_blocks_)
                                                : kNotFinite;
    }
    return stats_;
  }

 protected:
  // kMpi: one slice, the whole sum. Shared memory: one slice per local rank,
  // its part of the sum where that rank left it in the window (read in place:
  // no copy; it stays until every rank has noted the next step).
  std::size_t num_slices() const override { return mode_ == AllreduceMode::kMpi || buffers_ > 0 ? 1 : parts_.size(); }
  const float* finish_slice(std::size_t i, std::size_t* begin, std::size_t* end, const float** second) override {
    *second = nullptr;
    if (mode_ != AllreduceMode::kMpi) {
      if (i == 0) {
        watchdog::Wait wait(nullptr);
        shared_sum();
      }
      if (buffers_ > 0) i = static_cast<std::size_t>(local_);  // shared parameters: this rank's part only
      *begin = parts_[i].first;
      *end = parts_[i].second;
      return part(static_cast<int>(i)) - parts_[i].first;  // indexed like the whole gradient
    }
    watchdog::Wait wait(nullptr);
    *begin = 0;
    *end = size_;
    if (mode_ == AllreduceMode::kMpi) {
      to_fixed(fixed_.data());
      for_each_mpi_chunk(0, size_, [&](std::size_t offset, int chunk) {
        MPI_Allreduce(MPI_IN_PLACE, fixed_.data() + offset, chunk, MPI_INT64_T, MPI_SUM, mpi_comm(comm_));
      });
      from_fixed(fixed_.data(), 0, size_, sums_);
    }
    return sums_;
  }

 private:
  // This rank's largest magnitude of each tensor over its blocks (infinite
  // if any value is NaN or infinite).
  // Taken piece by piece during backprop, when the pieces are known.
  void local_maxima() {
    if (!piece_runs_.empty()) {
      std::copy(own_maxima_.begin(), own_maxima_.end(), maxima_.begin());
      std::fill(own_maxima_.begin(), own_maxima_.end(), 0.0f);
      return;
    }
    for (std::size_t t = 0; t < tensors_.size(); ++t) {
      const auto [begin, end] = tensors_[t];
      float most = 0;
      for (int j = 0; j < filled_; ++j) most = std::max(most, max_magnitude(block_data_[j] + begin, end - begin));
      maxima_[t] = most;
    }
  }

  // For each piece, its overlaps with the tensors (gaps need no maximum).
  std::vector<std::vector<Run>> pieces_in_tensors(const std::vector<GradientPiece>& pieces) const {
    std::vector<std::vector<Run>> out;
    for (const GradientPiece& piece : pieces) {
      out.emplace_back();
      for (const Run& run : runs_) {
        const std::size_t b = std::max(piece.begin, run.begin), e = std::min(piece.end, run.end);
        if (run.tensor >= 0 && b < e) out.back().push_back({b, e, run.tensor});
      }
    }
    return out;
  }

  // Shared memory: the node's stats and maxima through the window, since Open
  // MPI's two small allreduces allocated on every step (2 to 6 ranks on one
  // node: ExactStepAllocatesNothing); across nodes, then two small allreduces
  // over the ranks of this local rank on every node.
  void node_stats_and_maxima() {
    const int64_t step = step_ + 1;
    std::copy(stats_, stats_ + kStepStats, head(local_)->stats);
    std::copy(maxima_.begin(), maxima_.end(), maxima(local_));
    head(local_)->blocks = filled_;
    __atomic_store_n(&head(local_)->noted, step, __ATOMIC_RELEASE);
    shm_->wait_for(step, [&](int r) { return &head(r)->noted; }, "have not reported their loss");
    std::fill(stats_, stats_ + kStepStats, 0.0);
    for (int r = 0; r < shm_->size(); ++r) {
      for (int i = 0; i < kStepStats; ++i) stats_[i] += head(r)->stats[i];
      const double* peer = maxima(r);
      for (std::size_t t = 0; t < maxima_.size(); ++t) maxima_[t] = std::max(maxima_[t], peer[t]);
    }
    if (across_ != MPI_COMM_NULL) {
      MPI_Allreduce(MPI_IN_PLACE, stats_, kStepStats, MPI_DOUBLE, MPI_SUM, across_);
      MPI_Allreduce(MPI_IN_PLACE, maxima_.data(), static_cast<int>(maxima_.size()), MPI_DOUBLE, MPI_MAX, across_);
    }
  }

  // This rank's blocks summed in fixed point into out (the whole gradient):
  // gaps and non-finite tensors stay 0, so no NaN is ever rounded to an integer.
  void to_fixed(int64_t* out) const {
    for (const Run& run : runs_) {
      const int e = run.tensor < 0 ? kNotFinite : exponents_[run.tensor];
      if (e == kNotFinite || filled_ == 0) {
        std::fill(out + run.begin, out + run.end, 0);
        continue;
      }
      // In chunks that stay in L1 while every block adds to them: the integers
      // go to memory once, not once per block.
      for (std::size_t c = run.begin; c < run.end; c += kChunk) {
        const std::size_t n = std::min(kChunk, run.end - c);
        for (int j = 0; j < filled_; ++j) to_fixed_point(block_data_[j] + c, n, e, j > 0, out + c);
      }
    }
  }

  // The floats of [begin, end) of a fixed-point sum (fixed and out indexed
  // from begin): gaps 0, non-finite tensors NaN.
  void from_fixed(const int64_t* fixed, std::size_t begin, std::size_t end, float* out) const {
    for (const Run& run : runs_) {
      const std::size_t b = std::max(begin, run.begin), e = std::min(end, run.end);
      if (b >= e) continue;
      const int exponent = run.tensor < 0 ? 0 : exponents_[run.tensor];
      if (exponent == kNotFinite) {
        std::fill(out + (b - begin), out + (e - begin), std::numeric_limits<float>::quiet_NaN());
      } else {
        from_fixed_point(fixed + (b - begin), e - b, exponent, out + (b - begin));
      }
    }
  }

  // kShared and kHierarchical: the blocks are in the window since wait_stats
  // (`noted`); each rank sums its own part of the node's blocks (and, across
  // nodes, that part over the nodes) and turns it into floats once for
  // everyone, where every rank reads it (finish_slice).
  void shared_sum() {
    const int64_t step = step_ + 1;
    const auto [begin, end] = parts_[local_];
    if (mode_ == AllreduceMode::kHierarchical) {
      sum_node_part(begin, end, fixed_.data(), nullptr);
      for_each_mpi_chunk(0, end - begin, [&](std::size_t offset, int chunk) {
        MPI_Allreduce(MPI_IN_PLACE, fixed_.data() + offset, chunk, MPI_INT64_T, MPI_SUM, across_);
      });
      from_fixed(fixed_.data(), begin, end, part(local_));
    } else {
      sum_node_part(begin, end, nullptr, part(local_));
    }
    if (buffers_ > 0) return;  // no peer reads this part (end_step waits for the updates)
    __atomic_store_n(&head(local_)->summed, step, __ATOMIC_RELEASE);
    shm_->wait_for(step, [&](int r) { return &head(r)->summed; }, "have not summed their part of the gradient");
  }

  // The node's blocks summed over [begin, end) in fixed point, chunk by
  // chunk in L1 (any order of ranks and blocks: integers): into `fixed`
  // (indexed from begin) when it is not null, else each chunk turned into
  // floats at once, into `out` (indexed from begin), the integers never
  // written to memory. Gaps sum to 0; a non-finite tensor to NaN (its values
  // are never rounded to integers).
  void sum_node_part(std::size_t begin, std::size_t end, int64_t* fixed, float* out) {
    for (const Run& run : runs_) {
      const std::size_t b = std::max(begin, run.begin), e = std::min(end, run.end);
      const int exponent = run.tensor < 0 ? kNotFinite : exponents_[run.tensor];
      for (std::size_t c = b; c < e; c += kChunk) {
        const std::size_t n = std::min(kChunk, e - c);
        int64_t* sum = fixed != nullptr ? fixed + (c - begin) : chunk_.data();
        bool first = true;
        for (int r = 0; r < shm_->size() && exponent != kNotFinite; ++r) {
          for (int64_t j = 0; j < head(r)->blocks; ++j, first = false) {
            to_fixed_point(block(r, static_cast<int>(j)) + c, n, exponent, !first, sum);
          }
        }
        if (first) std::fill(sum, sum + n, 0);
        if (fixed == nullptr) from_fixed(sum, c, c + n, out + (c - begin));
      }
    }
  }

  void end_step() override {
    if (buffers_ > 0) {  // every part updated before anyone reads the parameters
      const int64_t step = step_ + 1;
      __atomic_store_n(&head(local_)->updated, step, __ATOMIC_RELEASE);
      shm_->wait_for(step, [&](int r) { return &head(r)->updated; }, "have not updated their part of the parameters");
    }
    GradientSync::end_step();
  }

  ExactHead* head(int r) const { return reinterpret_cast<ExactHead*>(shm_->segment(r)); }
  double* maxima(int r) const { return reinterpret_cast<double*>(shm_->segment(r) + sizeof(ExactHead)); }
  float* block(int r, int j) const {
    return reinterpret_cast<float*>(maxima(r) + padded(tensors_.size())) + padded(size_) * static_cast<std::size_t>(j);
  }
  float* part(int r) const { return block(r, max_blocks_); }

  // The gradient cut into tensors and the gaps between them, in order.
  std::vector<Run> make_runs() const {
    std::vector<Run> tensor_runs;
    for (std::size_t t = 0; t < tensors_.size(); ++t) {
      tensor_runs.push_back({tensors_[t].first, tensors_[t].second, static_cast<int>(t)});
    }
    std::sort(tensor_runs.begin(), tensor_runs.end(), [](const Run& a, const Run& b) { return a.begin < b.begin; });
    std::vector<Run> runs;
    std::size_t at = 0;
    for (const Run& run : tensor_runs) {
      if (run.begin > at) runs.push_back({at, run.begin, -1});
      runs.push_back(run);
      at = run.end;
    }
    if (at < size_) runs.push_back({at, size_, -1});
    return runs;
  }

  std::vector<std::pair<std::size_t, std::size_t>> tensors_;
  long total_blocks_;
  std::vector<Run> runs_;
  int max_blocks_ = 0;
  std::vector<FlatBuffer> blocks_;  // kMpi: max_blocks gradient buffers (shared memory: in the window)
  std::vector<float*> block_data_;  // where this rank's are (the trainer writes them)
  int filled_ = 0;                  // of them, this step
  std::vector<double> maxima_;      // per tensor: this rank's, then every rank's largest magnitude
  std::vector<float> own_maxima_;   // with pieces: this rank's so far this step
  std::vector<std::vector<Run>> piece_runs_;  // with pieces: each piece's parts of the tensors
  int current_ = 0;                 // the block being backpropagated
  std::vector<int> exponents_;      // per tensor, or kNotFinite
  std::vector<int64_t> fixed_;      // kMpi: the fixed-point gradient, then its sum over the ranks;
                                    // kHierarchical: this rank's part of it
  static constexpr std::size_t kChunk = 2048;  // elements worked on in L1 (16 KB of integers)
  std::vector<int64_t> chunk_ = std::vector<int64_t>(kChunk);
  // kShared and kHierarchical:
  MPI_Comm node_ = MPI_COMM_NULL;
  MPI_Comm across_ = MPI_COMM_NULL;  // kHierarchical: the ranks of this local rank on every node
  int local_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> parts_;  // each local rank's part of the gradient
  std::size_t longest_part_ = 0;
  std::unique_ptr<NodeWindow> shm_;
  std::size_t buffers_ = 0;                 // shared parameter-sized buffers (place())
  std::unique_ptr<NodeWindow> buffer_shm_;  // holding them, in local rank 0's segment
  std::unique_ptr<NodeWindow> packed_shm_;  // --precision bf16: the node's packed weights
};

}  // namespace

std::unique_ptr<GradientSync> make_exact_sum(const Communicator& comm, MPI_Comm node, const SumSetup& setup,
                                             const ExactBlocks& blocks) {
  try {
    check(comm, setup.grad_size, blocks);
  } catch (const Error&) {
    MPI_Comm_free(&node);
    throw;
  }
  return std::make_unique<ExactSum>(comm, node, setup, blocks);
}

}  // namespace nn_dist
