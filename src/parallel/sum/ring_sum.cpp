// nn_dist's ring allreduce: the gradient in buckets (last layer first), each
// bucket's ring started as soon as backprop has finished it and moved on
// between backprop's pieces, so the sum overlaps the backward pass.
#include <algorithm>
#include <climits>
#include <type_traits>

#include "parallel/mpi_comm.hpp"
#include "parallel/sum/sums.hpp"

namespace nn_dist {

namespace {

// A ring allreduce (reduce-scatter, then allgather) over one slice, driven
// step by step from progress() so it advances between backprop pieces.
// - The receives of the next two rounds are always posted, into scratch space
//   allocated once (a neighbour can run at most one round ahead): no message
//   ever arrives unexpected, so Open MPI never buffers one on the heap, and a
//   training step makes no allocation (Open MPI's own allreduce allocates
//   temporaries on every call).
// - Each chunk is summed by exactly one rank and copied to the others, in a
//   fixed order: every rank ends with the same bits, run after run.
template <typename T>
class Ring {
 public:
  Ring(MPI_Comm comm, T* data, std::size_t count, int tag) : comm_(comm), data_(data), tag_(tag) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
    for (int c = 0; c <= size_; ++c) bounds_.push_back(count * static_cast<std::size_t>(c) / size_);
    for (int c = 0; c < size_; ++c) widest_ = std::max(widest_, bounds_[c + 1] - bounds_[c]);
    scratch_.resize(widest_ * static_cast<std::size_t>(2 * steps()));
    receives_.assign(2 * steps(), MPI_REQUEST_NULL);
  }

  // Posts the receives of the first two rounds.
  void post_receives() {
    post_round(0);
    post_round(1);
  }
  void cancel_receives() {
    for (MPI_Request& r : receives_) {
      if (r == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&r);
      MPI_Wait(&r, MPI_STATUS_IGNORE);
    }
  }
  void start() {
    if (size_ == 1) return;
    slot_ = parity_ * steps();
    step_ = 0;
    active_ = true;
    send();
  }
  // Advances as far as the messages allow without blocking.
  void progress() {
    while (active_) {
      MPI_Request pending[2] = {receives_[slot_ + step_], send_};
      int done = 0;
      MPI_Testall(2, pending, &done, MPI_STATUSES_IGNORE);
      if (!done) return;
      receives_[slot_ + step_] = pending[0];
      send_ = pending[1];
      advance();
    }
  }
  void wait() {
    while (active_) {
      MPI_Wait(&receives_[slot_ + step_], MPI_STATUS_IGNORE);
      MPI_Wait(&send_, MPI_STATUS_IGNORE);
      advance();
    }
  }
  bool active() const { return active_; }

 private:
  int chunk(int c) const { return ((c % size_) + size_) % size_; }
  int steps() const { return 2 * (size_ - 1); }
  bool reducing(int s) const { return s < size_ - 1; }
  // Reduce-scatter step s: send chunk r-s, receive chunk r-s-1 and add it.
  // Allgather step t = s-(P-1): send the summed chunk r+1-t, receive chunk r-t.
  int send_chunk(int s) const { return reducing(s) ? chunk(rank_ - s) : chunk(rank_ + 1 - (s - size_ + 1)); }
  int recv_chunk(int s) const { return reducing(s) ? chunk(rank_ - s - 1) : chunk(rank_ - (s - size_ + 1)); }

  // Receives of round parity p: steps() chunks, each into its own scratch slot.
  void post_round(int p) {
    const int left = (rank_ + size_ - 1) % size_;
    for (int s = 0; s < steps(); ++s) {
      const int c = recv_chunk(s), slot = p * steps() + s;
      MPI_Irecv(scratch_.data() + widest_ * slot, static_cast<int>(bounds_[c + 1] - bounds_[c]), type(), left, tag_,
                comm_, &receives_[slot]);
    }
  }
  void send() {
    const int right = (rank_ + 1) % size_, c = send_chunk(step_);
    MPI_Isend(data_ + bounds_[c], static_cast<int>(bounds_[c + 1] - bounds_[c]), type(), right, tag_, comm_, &send_);
  }
  void advance() {
    const int c = recv_chunk(step_);
    T* __restrict out = data_ + bounds_[c];
    const T* __restrict in = scratch_.data() + widest_ * (slot_ + step_);
    const std::size_t n = bounds_[c + 1] - bounds_[c];
    if (reducing(step_)) {
      for (std::size_t i = 0; i < n; ++i) out[i] += in[i];
    } else {
      std::copy(in, in + n, out);
    }
    if (++step_ < steps()) {
      send();
      return;
    }
    active_ = false;
    post_round(parity_);  // for the round after next
    parity_ ^= 1;
  }
  static MPI_Datatype type() { return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE; }

  MPI_Comm comm_;
  T* data_;
  int tag_, rank_ = 0, size_ = 1, step_ = 0;
  int parity_ = 0, slot_ = 0;  // rounds alternate between two sets of receives
  bool active_ = false;
  std::vector<std::size_t> bounds_;  // chunk c is [bounds_[c], bounds_[c+1])
  std::size_t widest_ = 0;
  std::vector<T> scratch_;  // one chunk per step and round parity
  std::vector<MPI_Request> receives_;
  MPI_Request send_ = MPI_REQUEST_NULL;
};

class RingSum : public GradientSync {
 public:
  RingSum(const Communicator& comm, const SumSetup& setup, const BucketPlan& plan)
      : GradientSync(comm, setup.sums, setup.grad_size, setup.mode, setup.reason),
        overlap_(plan.overlap),
        buckets_(plan_buckets(plan.pieces, size_, plan.bucket_bytes, plan.overlap)) {
    MPI_Comm_dup(mpi_comm(comm_), &ring_comm_);  // a private communicator: no tag clashes
    rings_.reserve(buckets_.size());
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      rings_.emplace_back(ring_comm_, sums_ + buckets_[b].begin, buckets_[b].end - buckets_[b].begin,
                          static_cast<int>(b));
      rings_.back().post_receives();
    }
    stats_ring_ = std::make_unique<Ring<double>>(ring_comm_, stats_, kStepStats, static_cast<int>(buckets_.size()));
    stats_ring_->post_receives();
  }
  ~RingSum() override {
    for (Ring<float>& ring : rings_) ring.cancel_receives();
    stats_ring_->cancel_receives();
    MPI_Comm_free(&ring_comm_);
  }

  void start_stats(const double* stats) override {
    GradientSync::start_stats(stats);
    stats_ring_->start();
  }
  void piece_done(std::size_t piece_index) override {
    if (next_bucket_ < buckets_.size() && buckets_[next_bucket_].last_piece == piece_index) {
      rings_[next_bucket_++].start();
    }
    if (overlap_) progress();
  }
  void all_pieces_done() override {
    while (next_bucket_ < buckets_.size()) rings_[next_bucket_++].start();
  }
  const double* wait_stats() override {
    stats_ring_->wait();
    return stats_;
  }
  std::size_t num_buckets() const override { return buckets_.size(); }

 protected:
  std::size_t num_slices() const override { return buckets_.size(); }
  const float* finish_slice(std::size_t i, std::size_t* begin, std::size_t* end, const float** second) override {
    // Later buckets move on while this one is waited for.
    *second = nullptr;
    Ring<float>& ring = rings_[i];
    while (ring.active()) {
      ring.progress();
      for (std::size_t later = i + 1; later < next_bucket_; ++later) rings_[later].progress();
    }
    *begin = buckets_[i].begin;
    *end = buckets_[i].end;
    return sums_;
  }
  void end_step() override {
    next_bucket_ = 0;
    GradientSync::end_step();
  }

 private:
  // Every ring that has started moves on as far as its messages allow.
  void progress() {
    const double t0 = MPI_Wtime();
    stats_ring_->progress();
    for (std::size_t b = 0; b < next_bucket_; ++b) rings_[b].progress();
    test_seconds_ += MPI_Wtime() - t0;
  }

  bool overlap_;
  std::vector<Bucket> buckets_;
  std::size_t next_bucket_ = 0;  // buckets start in order
  MPI_Comm ring_comm_ = MPI_COMM_NULL;
  std::vector<Ring<float>> rings_;
  std::unique_ptr<Ring<double>> stats_ring_;
};

}  // namespace

std::unique_ptr<GradientSync> make_ring_sum(const Communicator& comm, const SumSetup& setup, const BucketPlan& plan) {
  return std::make_unique<RingSum>(comm, setup, plan);
}

}  // namespace nn_dist
