// Shared memory on one node (kShared), and per node with MPI_Iallreduce
// between nodes (kHierarchical): the ranks of a node publish their gradients
// in one MPI shared window and each sums (and, with shared buffers, updates)
// its own part of them, in rank order; across nodes, each bucket's part goes
// out as soon as every rank of the node has backpropagated it.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>

#include "parallel/mpi_comm.hpp"
#include "nn_dist/model/layout.hpp"
#include "parallel/sum/node_window.hpp"
#include "parallel/sum/sums.hpp"

namespace nn_dist {

namespace {

// The head of each rank's segment of the node's shared window. Every field
// is written by the segment's owner only and read by its peers:
//
//   byte 0    published   steps whose gradient and stats the owner has completed
//   byte 64   updated     steps whose part of the shared update the owner has written
//   byte 128  stats[0]    the StepStat values of even steps
//   byte 192  stats[1]    ... of odd steps
//   byte 256  squared     steps whose part of the gradient's squares the owner has written
//   byte 264  squares[2]  that sum of squares (--clip-grad-norm), of even and odd steps
//   byte 320  pieces      backprop's finished pieces, counted over all steps (kHierarchical)
//   byte 384  the owner's gradient buffer(s) (grad_buffers() x padded(grad_size) floats)
//   then      rank 0 only: the shared buffers (parameters, then each optimizer state)
//
// Each counter has a cache line of its own, so spinning peers do not slow the
// owner's other writes. Pairing: the owner writes its gradient and stats,
// then stores `published` with release; a peer loads it with acquire before
// reading them (wait_for). Likewise the owner writes its part of the
// parameters and optimizer state, then stores `updated` with release, and
// every rank acquires all `updated` counters before the next forward pass.
// `squared` pairs the same way with `squares`: a peer overwrites a parity's
// value only two steps on, after every rank has updated (and so read) it.
// `pieces` (step x pieces per step + pieces done) is stored with release
// after each gradient piece, so a peer may sum a bucket of it before the
// owner has published the whole gradient.
struct SegmentHead {
  alignas(64) int64_t published;
  alignas(64) int64_t updated;
  alignas(64) double stats[2][8];  // [step parity][StepStat values], a line each
  alignas(64) int64_t squared;
  double squares[2];  // [step parity]
  alignas(64) int64_t pieces;
};
static_assert(sizeof(SegmentHead) == 384, "the documented layout");
static_assert(kStepStats <= 8, "a step's StepStat values fit one cache line");

// The node's shared window. Gradients alternate between two buffers by step
// parity, so a rank may start the next backprop while a slower peer still
// reads the last gradient: the peer must have finished that reading before it
// can publish the step after. With shared buffers (the parameters and
// optimizer state, in rank 0's segment) every step ends when all parts are
// updated, so all gradient reads are done before the next backprop and one
// gradient buffer is enough (the same memory every step: 1.87x instead of
// 1.80x at 2 ranks).
struct SharedWindow {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm across = MPI_COMM_NULL;  // kHierarchical: the ranks of this local rank on every node
  std::unique_ptr<NodeWindow> shm;  // every rank's segment
  std::size_t grad_size = 0;
  std::size_t buffers = 0;      // shared parameter-sized buffers in rank 0's segment
  int rank = 0;

  static std::size_t padded(std::size_t elements) { return (elements + 15) / 16 * 16; }
  std::size_t grad_buffers() const { return buffers > 0 ? 1 : 2; }  // see above
  std::size_t own_bytes() const { return sizeof(SegmentHead) + grad_buffers() * padded(grad_size) * sizeof(float); }
  std::size_t segment_bytes() const {
    return own_bytes() + (rank == 0 ? buffers * padded(grad_size) * sizeof(float) : 0);
  }
  int ranks() const { return shm->size(); }
  SegmentHead* head(int r) const { return reinterpret_cast<SegmentHead*>(shm->segment(r)); }
  float* buffer(std::size_t i) const {
    return reinterpret_cast<float*>(shm->segment(0) + own_bytes()) + padded(grad_size) * i;
  }
  int64_t* published(int r) const { return &head(r)->published; }
  int64_t* updated(int r) const { return &head(r)->updated; }
  int64_t* squared(int r) const { return &head(r)->squared; }
  int64_t* pieces(int r) const { return &head(r)->pieces; }
  double* stats(int r, int64_t step) const { return head(r)->stats[step & 1]; }
  float* grad(int r, int64_t step) const {
    return reinterpret_cast<float*>(shm->segment(r) + sizeof(SegmentHead)) +
           padded(grad_size) * (static_cast<std::size_t>(step) % grad_buffers());
  }
  // Spins until every rank's counter (published, updated or squared) has
  // reached `step`; past the watchdog's deadline aborts the job naming the
  // ranks missing (NodeWindow::wait_for).
  void wait_for(int64_t step, int64_t* (SharedWindow::*counter)(int) const = &SharedWindow::published) const {
    const char* what = counter == &SharedWindow::published ? "have not published their gradient"
                       : counter == &SharedWindow::updated ? "have not written their part of the update"
                                                           : "have not written their part of the gradient norm";
    shm->wait_for(step, [&](int r) { return (this->*counter)(r); }, what);
  }
  // out[i] = ((g_0[i] + g_1[i]) + g_2[i]) + ... + g_{n-1}[i] over [begin, end):
  // rank order, the same bits on every rank. In chunks read whole before out
  // is written (out may be one of the g_r).
  void add_ranks(int n, int64_t step, std::size_t begin, std::size_t end, float* out) const {
    constexpr std::size_t kChunk = 512;
    alignas(64) float acc[kChunk];
    for (std::size_t c = begin; c < end; c += kChunk) {
      const std::size_t m = std::min(kChunk, end - c);
      const float* __restrict first = grad(0, step) + c;
      std::copy(first, first + m, acc);
      for (int r = 1; r < n; ++r) {
        const float* __restrict in = grad(r, step) + c;
        for (std::size_t j = 0; j < m; ++j) acc[j] += in[j];
      }
      std::copy(acc, acc + m, out + c);
    }
  }
};

// Shared memory: slices small enough that the partial sum of 3 or more ranks
// stays in cache until the optimizer reads it.
constexpr std::size_t kSharedSlice = 8192;

class SharedSum : public GradientSync {
 public:
  SharedSum(const Communicator& comm, MPI_Comm node, const SumSetup& setup, std::size_t shared_buffers)
      : GradientSync(comm, setup.sums, setup.grad_size, setup.mode, setup.reason) {
    int node_size = 0;
    MPI_Comm_size(node, &node_size);
    w_.node = node;
    w_.grad_size = size_;
    w_.buffers = shared_buffers;
    MPI_Comm_rank(node, &w_.rank);
    if (shared_buffers > 0) {  // this rank sums and updates its own part: whole cache lines
      line_part(size_, static_cast<std::size_t>(w_.rank), static_cast<std::size_t>(node_size), &own_begin_, &own_end_);
    }
    w_.shm = std::make_unique<NodeWindow>(node, mpi_comm(comm_), w_.segment_bytes());
    backward_buffer_ = w_.grad(w_.rank, 0);
  }
  ~SharedSum() override {
    packed_shm_.reset();
    w_.shm.reset();  // the windows before their communicator
    MPI_Comm_free(&w_.node);
    if (w_.across != MPI_COMM_NULL) MPI_Comm_free(&w_.across);
  }

  float* place(FlatBuffer* params, Optimizer* optimizer, Mlp<float>* mlp) override {
    float* shared = shared_buffer(0);
    if (shared == nullptr) return params->data();
    const std::size_t states = optimizer->state().size();
    if (w_.buffers < 1 + states) throw Error("internal: too few shared buffers for the optimizer state");
    const bool leader = w_.rank == 0;
    if (leader) std::copy(params->begin(), params->end(), shared);
    std::vector<float*> places;
    for (std::size_t i = 1; i <= states; ++i) places.push_back(shared_buffer(i));
    optimizer->place_state(places, leader);
    packed_shm_ = share_packed_weights(w_.node, mpi_comm(comm_), shared, mlp);
    MPI_Barrier(w_.node);  // filled before anyone reads
    FlatBuffer().swap(*params);
    mlp->set_update_range(own_begin_, own_end_);
    return shared;
  }
  float* shared_buffer(std::size_t i) const override { return i < w_.buffers ? w_.buffer(i) : nullptr; }

  double sum_squares(double own) override {
    if (w_.buffers == 0) return own;  // every rank holds the whole sum
    w_.head(w_.rank)->squares[step_ & 1] = own;
    __atomic_store_n(w_.squared(w_.rank), step_ + 1, __ATOMIC_RELEASE);
    w_.wait_for(step_ + 1, &SharedWindow::squared);
    // The node's parts cover the whole gradient (across nodes, each part is
    // already the sum over the nodes): added in rank order, the same bits on every rank.
    double total = 0;
    for (int r = 0; r < w_.ranks(); ++r) total += w_.head(r)->squares[step_ & 1];
    return total;
  }

  void publish() override {
    if (published_) return;
    std::copy(stats_, stats_ + kStepStats, w_.stats(w_.rank, step_));
    __atomic_store_n(w_.published(w_.rank), step_ + 1, __ATOMIC_RELEASE);
    published_ = true;
  }
  const double* wait_stats() override {
    publish();
    w_.wait_for(step_ + 1);
    std::fill(stats_, stats_ + kStepStats, 0.0);
    for (int r = 0; r < w_.ranks(); ++r) {
      const double* peer = w_.stats(r, step_);
      for (int i = 0; i < kStepStats; ++i) stats_[i] += peer[i];
    }
    return stats_;
  }

 protected:
  std::size_t num_slices() const override { return (own_end_ - own_begin_ + kSharedSlice - 1) / kSharedSlice; }
  const float* finish_slice(std::size_t i, std::size_t* begin, std::size_t* end, const float** second) override {
    *second = nullptr;
    switch (mode_) {
    case AllreduceMode::kShared: {
      // Rank order, the same bits everywhere: ((g0 + g1) + g2) + ... The last
      // addition is the optimizer's; with 3 or more ranks the others are summed here.
      *begin = own_begin_ + i * kSharedSlice;
      *end = std::min(own_end_, *begin + kSharedSlice);
      const int last = w_.ranks() - 1;
      *second = w_.grad(last, step_);
      if (last == 1) return w_.grad(0, step_);
      w_.add_ranks(last, step_, *begin, *end, sums_);
      return sums_;
    }
      default:
        return nullptr;
    }
  }
  void end_step() override {
    published_ = false;
    if (w_.buffers > 0) {  // every part updated before anyone reads the parameters
      __atomic_store_n(w_.updated(w_.rank), step_ + 1, __ATOMIC_RELEASE);
      w_.wait_for(step_ + 1, &SharedWindow::updated);
    }
    GradientSync::end_step();
    backward_buffer_ = w_.grad(w_.rank, step_);
  }

 protected:
  SharedWindow w_;
  std::unique_ptr<NodeWindow> packed_shm_;  // --precision bf16: the node's packed weights
  bool published_ = false;                  // publish() done for this step
};

// libnbc (Open MPI's non-blocking collectives) sums with a binomial tree
// below 4 processes: a reduce to one node and a broadcast from it, so that
// node's link carries 2(p-1) times the message where a ring carries 2(p-1)/p
// (3 emulated hosts x 1 rank: 13-17 ms a step against 6-11 with the ring).
// Below 4 nodes the ring is asked for, through the MPI tool interface, unless
// the user chose an algorithm (coll_libnbc_iallreduce_algorithm not 0). The
// variable is global to the process and has scope "all": every rank sets the
// same value, as every rank sees the same node count.
void prefer_ring_below_4_nodes(int nodes) {
  if (nodes >= 4) return;
  int provided = 0, index = 0, count = 0;
  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return;
  MPI_T_cvar_handle handle;
  if (MPI_T_cvar_get_index("coll_libnbc_iallreduce_algorithm", &index) == MPI_SUCCESS &&
      MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) == MPI_SUCCESS) {
    int algorithm = -1;
    const int ring = 1;
    if (MPI_T_cvar_read(handle, &algorithm) == MPI_SUCCESS && algorithm == 0) MPI_T_cvar_write(handle, &ring);
    MPI_T_cvar_handle_free(&handle);
  }
  MPI_T_finalize();
}

// kHierarchical: the gradient in buckets (plan_buckets, last layer first),
// each cut into the node's ranks' parts (with shared buffers; without, every
// rank takes whole buckets). As soon as every rank of the node has
// backpropagated a bucket (their `pieces` counters say so), its part's owner
// adds the node's gradients of the part in local rank order and starts
// MPI_Iallreduce of it with the same part's owner on every other node; the
// requests are tested after every piece, as Open MPI's collectives progress
// only inside MPI calls. Every node's owner of a part adds in the same order
// and the allreduce hands all of them one result: the same bits on every rank.
class HierarchicalSum : public SharedSum {
 public:
  HierarchicalSum(const Communicator& comm, MPI_Comm node, const SumSetup& setup, std::size_t shared_buffers,
                  const BucketPlan& plan)
      : SharedSum(comm, node, setup, shared_buffers), pieces_(static_cast<int64_t>(plan.pieces.size())) {
    MPI_Comm_split(mpi_comm(comm_), w_.rank, comm.rank(), &w_.across);
    int nodes = 0;
    MPI_Comm_size(w_.across, &nodes);
    prefer_ring_below_4_nodes(nodes);
    for (const Bucket& b : plan_buckets(plan.pieces, size_, plan.bucket_bytes, plan.overlap)) {
      Part part{b.begin, b.end, b.last_piece};
      if (w_.buffers > 0) {  // whole cache lines of the bucket (the bucket's own start counts as one)
        line_part(b.end - b.begin, static_cast<std::size_t>(w_.rank), static_cast<std::size_t>(w_.ranks()),
                  &part.begin, &part.end);
        part.begin += b.begin;
        part.end += b.begin;
      }
      own_ += part.end - part.begin;
      parts_.push_back(part);
    }
    requests_.assign(parts_.size(), MPI_REQUEST_NULL);
    own_begin_ = own_end_ = 0;  // no one range: backprop claims no lines of the update (a hint only)
  }
  ~HierarchicalSum() override {
    for (MPI_Request& r : requests_) {
      if (r != MPI_REQUEST_NULL) MPI_Wait(&r, MPI_STATUS_IGNORE);
    }
  }

  std::size_t own_elements() const override { return own_; }
  std::size_t num_buckets() const override { return parts_.size(); }
  void piece_done(std::size_t piece) override {
    __atomic_store_n(w_.pieces(w_.rank), step_ * pieces_ + static_cast<int64_t>(piece) + 1, __ATOMIC_RELEASE);
    const double t0 = MPI_Wtime();
    start_ready();
    if (next_ > 0) {
      int done = 0;
      MPI_Testall(static_cast<int>(next_), requests_.data(), &done, MPI_STATUSES_IGNORE);
    }
    test_seconds_ += MPI_Wtime() - t0;
  }
  void all_pieces_done() override {
    __atomic_store_n(w_.pieces(w_.rank), (step_ + 1) * pieces_, __ATOMIC_RELEASE);
    start_ready();
  }
  const double* wait_stats() override {
    SharedSum::wait_stats();  // every local rank has published: every bucket can start
    while (next_ < parts_.size()) start(next_++);
    // After the buckets, in the same order on every rank of `across`.
    MPI_Allreduce(MPI_IN_PLACE, stats_, kStepStats, MPI_DOUBLE, MPI_SUM, w_.across);
    return stats_;
  }

 protected:
  std::size_t num_slices() const override { return parts_.size(); }
  const float* finish_slice(std::size_t i, std::size_t* begin, std::size_t* end, const float** second) override {
    MPI_Wait(&requests_[i], MPI_STATUS_IGNORE);  // the later buckets progress meanwhile
    *second = nullptr;
    *begin = parts_[i].begin;
    *end = parts_[i].end;
    return sums_;
  }
  void end_step() override {
    next_ = 0;
    SharedSum::end_step();
  }

 private:
  struct Part {
    std::size_t begin, end;  // this rank's part of the bucket
    std::size_t last_piece;
  };
  // Starts the buckets, in order, that every rank of the node has finished.
  void start_ready() {
    while (next_ < parts_.size()) {
      const int64_t needed = step_ * pieces_ + static_cast<int64_t>(parts_[next_].last_piece) + 1;
      for (int r = 0; r < w_.ranks(); ++r) {
        if (__atomic_load_n(w_.pieces(r), __ATOMIC_ACQUIRE) < needed) return;
      }
      start(next_++);
    }
  }
  // The node's sum of part b, then its allreduce over the nodes into sums_.
  // With shared buffers the part is this rank's alone, so the node's sum
  // overwrites this rank's own gradient there and the allreduce reads it from
  // there (not in place: libnbc then picks its algorithm by size); without,
  // peers read the whole bucket, so the node's sum goes to sums_ and is summed in place.
  void start(std::size_t b) {
    const Part& part = parts_[b];
    float* own = w_.grad(w_.rank, step_);
    float* node_sum = w_.ranks() == 1 || w_.buffers > 0 ? own : sums_;
    if (w_.ranks() > 1) w_.add_ranks(w_.ranks(), step_, part.begin, part.end, node_sum);
    const int count = static_cast<int>(part.end - part.begin);
    if (node_sum == sums_) {
      MPI_Iallreduce(MPI_IN_PLACE, sums_ + part.begin, count, MPI_FLOAT, MPI_SUM, w_.across, &requests_[b]);
    } else {
      MPI_Iallreduce(node_sum + part.begin, sums_ + part.begin, count, MPI_FLOAT, MPI_SUM, w_.across, &requests_[b]);
    }
  }

  int64_t pieces_;              // backprop's pieces per step
  std::vector<Part> parts_;     // one per bucket, in the order backprop finishes them
  std::vector<MPI_Request> requests_;
  std::size_t next_ = 0;        // buckets started this step
  std::size_t own_ = 0;         // elements in this rank's parts
};

}  // namespace

std::unique_ptr<GradientSync> make_shared_sum(const Communicator& comm, MPI_Comm node, const SumSetup& setup,
                                              std::size_t shared_buffers, const BucketPlan& plan) {
  if (setup.mode == AllreduceMode::kHierarchical) {
    return std::make_unique<HierarchicalSum>(comm, node, setup, shared_buffers, plan);
  }
  return std::make_unique<SharedSum>(comm, node, setup, shared_buffers);
}

}  // namespace nn_dist
