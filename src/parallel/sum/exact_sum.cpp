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
//   byte 0    noted      steps whose stats and tensor maxima the owner has written
//   byte 64   published  steps whose fixed-point gradient (the owner's blocks) is complete
//   byte 128  summed     steps whose part of the sum (as floats) is complete
//   byte 192  stats      the owner's StepStat values
//   byte 256  the owner's largest magnitude of each tensor: padded(tensors) doubles
//   then      the owner's fixed-point gradient: padded(grad_size) int64
//   then      the owner's part of the float sum: padded(longest part) floats
//
// One copy of each suffices, not two by step parity: a rank overwrites its
// stats, maxima and fixed-point gradient only after every peer has reported
// `summed` for the last step (so is done reading them), and its float part
// only after every peer has `published` the next step (which a peer does
// after copying the sum).
struct ExactHead {
  alignas(64) int64_t noted;
  alignas(64) int64_t published;
  alignas(64) int64_t summed;
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

// Integer sums wrap instead of overflowing (no UB); within total_blocks they
// are exact and never wrap.
void add_into(int64_t* __restrict out, const int64_t* __restrict in, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<int64_t>(static_cast<uint64_t>(out[i]) + static_cast<uint64_t>(in[i]));
  }
}

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
        exponents_(blocks.tensors.size()) {
    runs_ = make_runs();
    for (int j = 0; j < blocks.max_blocks; ++j) blocks_.emplace_back(size_, 0.0f);
    for (FlatBuffer& block : blocks_) block_data_.push_back(block.data());
    backward_buffer_ = block_data_[0];
    if (mode_ == AllreduceMode::kMpi) {
      MPI_Comm_free(&node);
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
                                            padded(size_) * sizeof(int64_t) + padded(longest_part_) * sizeof(float));
  }
  ~ExactSum() override {
    shm_.reset();  // the window before its communicator
    if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
    if (across_ != MPI_COMM_NULL) MPI_Comm_free(&across_);
  }

  float* block_buffer(int j) const override {
    return j >= 0 && j < static_cast<int>(block_data_.size()) ? block_data_[j] : nullptr;
  }
  void set_blocks(int n) override {
    if (n < 0 || n > static_cast<int>(blocks_.size())) {
      throw Error("internal: " + std::to_string(n) + " gradient blocks on one rank (at most " +
                  std::to_string(blocks_.size()) + ")");
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
      exponents_[t] = std::isfinite(maxima_[t]) ? fixed_point_exponent(static_cast<float>(maxima_[t]), total_blocks_)
                                                : kNotFinite;
    }
    return stats_;
  }

 protected:
  std::size_t num_slices() const override { return 1; }
  const float* finish_slice(std::size_t, std::size_t* begin, std::size_t* end, const float** second) override {
    watchdog::Wait wait(nullptr);
    *begin = 0;
    *end = size_;
    *second = nullptr;
    if (mode_ == AllreduceMode::kMpi) {
      to_fixed(fixed_.data());
      for_each_mpi_chunk(0, size_, [&](std::size_t offset, int chunk) {
        MPI_Allreduce(MPI_IN_PLACE, fixed_.data() + offset, chunk, MPI_INT64_T, MPI_SUM, mpi_comm(comm_));
      });
      from_fixed(fixed_.data(), 0, size_, sums_);
    } else {
      shared_sum();
    }
    return sums_;
  }

 private:
  // This rank's largest magnitude of each tensor over its blocks (infinite
  // if any value is NaN or infinite).
  void local_maxima() {
    for (std::size_t t = 0; t < tensors_.size(); ++t) {
      const auto [begin, end] = tensors_[t];
      float most = 0;
      for (int j = 0; j < filled_; ++j) most = std::max(most, max_magnitude(blocks_[j].data() + begin, end - begin));
      maxima_[t] = most;
    }
  }

  // Shared memory: the node's stats and maxima through the window, since Open
  // MPI's two small allreduces allocated on every step (2 to 6 ranks on one
  // node: ExactStepAllocatesNothing); across nodes, then two small allreduces
  // over the ranks of this local rank on every node.
  void node_stats_and_maxima() {
    const int64_t step = step_ + 1;
    std::copy(stats_, stats_ + kStepStats, head(local_)->stats);
    std::copy(maxima_.begin(), maxima_.end(), maxima(local_));
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
      for (int j = 0; j < filled_; ++j) {
        to_fixed_point(blocks_[j].data() + run.begin, run.end - run.begin, e, j > 0, out + run.begin);
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

  // kShared and kHierarchical: each rank publishes its fixed-point gradient
  // in the node's window; each sums its own part of the node's gradients
  // (and, across nodes, that part over the nodes), turns it into floats once
  // for everyone, and every rank copies all parts into its sums.
  void shared_sum() {
    const int64_t step = step_ + 1;
    int64_t* mine = fixed(local_);
    to_fixed(mine);
    __atomic_store_n(&head(local_)->published, step, __ATOMIC_RELEASE);
    shm_->wait_for(step, [&](int r) { return &head(r)->published; }, "have not published their gradient");
    // Only this rank reads or writes its part of its own buffer now: the sum
    // goes there (any order of ranks: integers).
    const auto [begin, end] = parts_[local_];
    for (int r = 0; r < shm_->size(); ++r) {
      if (r != local_) add_into(mine + begin, fixed(r) + begin, end - begin);
    }
    if (mode_ == AllreduceMode::kHierarchical) {
      for_each_mpi_chunk(begin, end, [&](std::size_t offset, int chunk) {
        MPI_Allreduce(MPI_IN_PLACE, mine + offset, chunk, MPI_INT64_T, MPI_SUM, across_);
      });
    }
    from_fixed(mine + begin, begin, end, part(local_));
    __atomic_store_n(&head(local_)->summed, step, __ATOMIC_RELEASE);
    shm_->wait_for(step, [&](int r) { return &head(r)->summed; }, "have not summed their part of the gradient");
    for (int r = 0; r < shm_->size(); ++r) {
      const float* in = part(r);
      std::copy(in, in + (parts_[r].second - parts_[r].first), sums_ + parts_[r].first);
    }
  }

  ExactHead* head(int r) const { return reinterpret_cast<ExactHead*>(shm_->segment(r)); }
  double* maxima(int r) const { return reinterpret_cast<double*>(shm_->segment(r) + sizeof(ExactHead)); }
  int64_t* fixed(int r) const { return reinterpret_cast<int64_t*>(maxima(r) + padded(tensors_.size())); }
  float* part(int r) const { return reinterpret_cast<float*>(fixed(r) + padded(size_)); }

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
  std::vector<FlatBuffer> blocks_;  // max_blocks gradient buffers
  std::vector<float*> block_data_;  // where they are (the trainer writes them)
  int filled_ = 0;                  // of them, this step
  std::vector<double> maxima_;      // per tensor: this rank's, then every rank's largest magnitude
  std::vector<int> exponents_;      // per tensor, or kNotFinite
  std::vector<int64_t> fixed_;      // kMpi: the fixed-point gradient, then its sum over the ranks
  // kShared and kHierarchical:
  MPI_Comm node_ = MPI_COMM_NULL;
  MPI_Comm across_ = MPI_COMM_NULL;  // kHierarchical: the ranks of this local rank on every node
  int local_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> parts_;  // each local rank's part of the gradient
  std::size_t longest_part_ = 0;
  std::unique_ptr<NodeWindow> shm_;
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
