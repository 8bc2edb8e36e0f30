// Every MPI call of nn_dist: session, collectives, error agreement, and the
// bucketed gradient allreduce that overlaps backprop.
#include "nn_dist/dist/comm.hpp"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <type_traits>

namespace nn_dist {

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

Communicator::Communicator() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

void Communicator::agree(const std::string& local_error) const {
  int mine = local_error.empty() ? size_ : rank_;
  int first = size_;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == size_) return;
  std::string message = local_error;
  broadcast(&message, first);
  throw AgreedError(message);
}

void Communicator::sum(double* data, int count) const {
  MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

long Communicator::max(long value) const {
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

long Communicator::min(long value) const {
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
  return out;
}

void Communicator::broadcast(float* data, std::size_t count, int root) const {
  for (std::size_t done = 0; done < count;) {  // MPI counts are int
    const int chunk = static_cast<int>(std::min<std::size_t>(count - done, INT_MAX / 2));
    MPI_Bcast(data + done, chunk, MPI_FLOAT, root, MPI_COMM_WORLD);
    done += chunk;
  }
}

void Communicator::broadcast(int64_t* data, int count, int root) const {
  MPI_Bcast(data, count, MPI_INT64_T, root, MPI_COMM_WORLD);
}

void Communicator::broadcast(std::string* text, int root) const {
  int length = static_cast<int>(text->size());
  MPI_Bcast(&length, 1, MPI_INT, root, MPI_COMM_WORLD);
  text->resize(length);
  MPI_Bcast(text->data(), length, MPI_CHAR, root, MPI_COMM_WORLD);
}

std::vector<float> Communicator::allgather(const float* data, int count) const {
  std::vector<float> out(static_cast<std::size_t>(count) * size_);
  MPI_Allgather(data, count, MPI_FLOAT, out.data(), count, MPI_FLOAT, MPI_COMM_WORLD);
  return out;
}

void Communicator::barrier() const { MPI_Barrier(MPI_COMM_WORLD); }

void Communicator::abort(int code) const { MPI_Abort(MPI_COMM_WORLD, code); std::abort(); }

double Communicator::time() { return MPI_Wtime(); }

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

struct GradientSync::Rings {
  MPI_Comm comm = MPI_COMM_NULL;  // a private communicator: no tag clashes
  std::vector<Ring<float>> buckets;
  std::unique_ptr<Ring<double>> stats;
};

GradientSync::GradientSync(const Communicator& comm, float* grad, std::size_t grad_size,
                           const std::vector<GradientPiece>& pieces, std::size_t bucket_bytes, bool overlap)
    : comm_(comm), grad_(grad), overlap_(overlap), rings_(std::make_unique<Rings>()) {
  if (overlap_) {
    const std::size_t bucket_elements = std::max<std::size_t>(1, bucket_bytes / sizeof(float));
    std::size_t end = grad_size;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      if (end - pieces[i].begin >= bucket_elements || i + 1 == pieces.size()) {
        buckets_.push_back({pieces[i].begin, end, i});
        end = pieces[i].begin;
      }
    }
  } else {
    buckets_.push_back({0, grad_size, pieces.size() - 1});
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &rings_->comm);
  rings_->buckets.reserve(buckets_.size());
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    rings_->buckets.emplace_back(rings_->comm, grad_ + buckets_[b].begin, buckets_[b].end - buckets_[b].begin,
                                 static_cast<int>(b));
    rings_->buckets.back().post_receives();
  }
  rings_->stats = std::make_unique<Ring<double>>(rings_->comm, stats_, 3, static_cast<int>(buckets_.size()));
  rings_->stats->post_receives();
}

GradientSync::~GradientSync() {
  for (Ring<float>& ring : rings_->buckets) ring.cancel_receives();
  rings_->stats->cancel_receives();
  MPI_Comm_free(&rings_->comm);
}

void GradientSync::start_stats(double loss, double correct, double count) {
  stats_[0] = loss;
  stats_[1] = correct;
  stats_[2] = count;
  rings_->stats->start();
}

void GradientSync::progress() {
  // Every ring that has started moves on as far as its messages allow.
  const double t0 = MPI_Wtime();
  rings_->stats->progress();
  for (std::size_t b = 0; b < next_bucket_; ++b) rings_->buckets[b].progress();
  test_seconds_ += MPI_Wtime() - t0;
}

void GradientSync::piece_done(std::size_t piece_index) {
  if (next_bucket_ < buckets_.size() && buckets_[next_bucket_].last_piece == piece_index) {
    rings_->buckets[next_bucket_++].start();
  }
  if (overlap_) progress();
}

void GradientSync::all_pieces_done() {
  while (next_bucket_ < buckets_.size()) rings_->buckets[next_bucket_++].start();
}

void GradientSync::wait_bucket(std::size_t b) {
  // Later buckets move on while this one is waited for.
  while (rings_->buckets[b].active()) {
    rings_->buckets[b].progress();
    for (std::size_t later = b + 1; later < next_bucket_; ++later) rings_->buckets[later].progress();
  }
}

const double* GradientSync::wait_stats() {
  rings_->stats->wait();
  return stats_;
}

}  // namespace nn_dist
