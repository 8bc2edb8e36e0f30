// Every MPI call of nn_dist: session, collectives, error agreement, and the
// bucketed gradient allreduce that overlaps backprop.
#include "nn_dist/parallel/comm.hpp"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include <sched.h>

namespace nn_dist {

namespace {
MPI_Comm mpi_comm(const Communicator& comm) { return MPI_Comm_f2c(comm.handle()); }
}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

Communicator::Communicator() : handle_(MPI_Comm_c2f(MPI_COMM_WORLD)) {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &node_size_);
  MPI_Comm_free(&node);
}

void Communicator::agree(const std::string& local_error) const {
  int mine = local_error.empty() ? size_ : rank_;
  int first = size_;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, mpi_comm(*this));
  if (first == size_) return;
  std::string message = local_error;
  broadcast(&message, first);
  throw AgreedError(message);
}

void Communicator::sum(double* data, int count) const {
  MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_DOUBLE, MPI_SUM, mpi_comm(*this));
}

long Communicator::max(long value) const {
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MAX, mpi_comm(*this));
  return out;
}

long Communicator::min(long value) const {
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MIN, mpi_comm(*this));
  return out;
}

void Communicator::broadcast(float* data, std::size_t count, int root) const {
  for (std::size_t done = 0; done < count;) {  // MPI counts are int
    const int chunk = static_cast<int>(std::min<std::size_t>(count - done, INT_MAX / 2));
    MPI_Bcast(data + done, chunk, MPI_FLOAT, root, mpi_comm(*this));
    done += chunk;
  }
}

void Communicator::broadcast(int64_t* data, int count, int root) const {
  MPI_Bcast(data, count, MPI_INT64_T, root, mpi_comm(*this));
}

void Communicator::broadcast(std::string* text, int root) const {
  int length = static_cast<int>(text->size());
  MPI_Bcast(&length, 1, MPI_INT, root, mpi_comm(*this));
  text->resize(length);
  MPI_Bcast(text->data(), length, MPI_CHAR, root, mpi_comm(*this));
}

std::vector<float> Communicator::allgather(const float* data, int count) const {
  std::vector<float> out(static_cast<std::size_t>(count) * size_);
  MPI_Allgather(data, count, MPI_FLOAT, out.data(), count, MPI_FLOAT, mpi_comm(*this));
  return out;
}

void Communicator::barrier() const { MPI_Barrier(mpi_comm(*this)); }

void Communicator::abort(int code) const { MPI_Abort(mpi_comm(*this), code); std::abort(); }


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

// The head of each rank's segment of the node's shared window. Every field
// is written by the segment's owner only and read by its peers:
//
//   byte 0    published   steps whose gradient and stats the owner has completed
//   byte 64   updated     steps whose part of the shared update the owner has written
//   byte 128  stats[0]    (loss, correct, count) of even steps
//   byte 192  stats[1]    ... of odd steps
//   byte 256  the owner's gradient buffer(s) (grad_buffers() x padded(grad_size) floats)
//   then      rank 0 only: the shared buffers (parameters, then each optimizer state)
//
// Each counter has a cache line of its own, so spinning peers do not slow the
// owner's other writes. Pairing: the owner writes its gradient and stats,
// then stores `published` with release; a peer loads it with acquire before
// reading them (wait_for). Likewise the owner writes its part of the
// parameters and optimizer state, then stores `updated` with release, and
// every rank acquires all `updated` counters before the next forward pass.
struct SegmentHead {
  alignas(64) int64_t published;
  alignas(64) int64_t updated;
  alignas(64) double stats[2][8];  // [step parity][loss, correct, count], a line each
};
static_assert(sizeof(SegmentHead) == 256, "the documented layout");

// The node's shared window. Gradients alternate between two buffers by step
// parity, so a rank may start the next backprop while a slower peer still
// reads the last gradient: the peer must have finished that reading before it
// can publish the step after. With shared buffers (the parameters and
// optimizer state, in rank 0's segment) every step ends when all parts are
// updated, so all gradient reads are done before the next backprop and one
// gradient buffer is enough (the same memory every step: 1.87x instead of
// 1.80x at 2 ranks).
struct GradientSync::Shared {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm across = MPI_COMM_NULL;  // kHierarchical: the ranks of this local rank on every node
  MPI_Win window = MPI_WIN_NULL;
  std::size_t grad_size = 0;
  std::size_t buffers = 0;      // shared parameter-sized buffers in rank 0's segment
  std::vector<char*> segments;  // every rank's segment, as mapped here
  int rank = 0;

  static std::size_t padded(std::size_t elements) { return (elements + 15) / 16 * 16; }
  std::size_t grad_buffers() const { return buffers > 0 ? 1 : 2; }  // see above
  std::size_t own_bytes() const { return sizeof(SegmentHead) + grad_buffers() * padded(grad_size) * sizeof(float); }
  std::size_t segment_bytes() const {
    return own_bytes() + (rank == 0 ? buffers * padded(grad_size) * sizeof(float) : 0);
  }
  SegmentHead* head(int r) const { return reinterpret_cast<SegmentHead*>(segments[r]); }
  float* buffer(std::size_t i) const {
    return reinterpret_cast<float*>(segments[0] + own_bytes()) + padded(grad_size) * i;
  }
  // Segments are allocated 64 bytes larger and used from their first 64-byte
  // boundary (the same offset in every process: mappings are page-aligned).
  static char* aligned(char* base) {
    return reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base) + 63) / 64 * 64);
  }
  int64_t* published(int r) const { return &head(r)->published; }
  int64_t* updated(int r) const { return &head(r)->updated; }
  double* stats(int r, int64_t step) const { return head(r)->stats[step & 1]; }
  float* grad(int r, int64_t step) const {
    return reinterpret_cast<float*>(segments[r] + sizeof(SegmentHead)) +
           padded(grad_size) * (static_cast<std::size_t>(step) % grad_buffers());
  }
  // Spins until every rank's counter (published or updated) has reached
  // `step` (acquire: what the owner wrote before its release is visible);
  // yields so oversubscribed ranks progress.
  void wait_for(int64_t step, int64_t* (Shared::*counter)(int) const = &Shared::published) const {
    for (std::size_t r = 0; r < segments.size(); ++r) {
      for (int spins = 0; __atomic_load_n((this->*counter)(static_cast<int>(r)), __ATOMIC_ACQUIRE) < step; ++spins) {
        if (spins > 64) sched_yield();
      }
    }
  }
};

AllreduceMode parse_allreduce_mode(const std::string& name) {
  if (name == "auto") return AllreduceMode::kAuto;
  if (name == "shared") return AllreduceMode::kShared;
  if (name == "hierarchical") return AllreduceMode::kHierarchical;
  if (name == "ring") return AllreduceMode::kRing;
  if (name == "mpi") return AllreduceMode::kMpi;
  if (name == "none") return AllreduceMode::kNone;
  throw Error("--allreduce: unknown value '" + name + "' (expected auto, shared, hierarchical, ring, mpi or none)");
}

std::string allreduce_mode_name(AllreduceMode mode) {
  switch (mode) {
    case AllreduceMode::kAuto: return "auto";
    case AllreduceMode::kShared: return "shared";
    case AllreduceMode::kHierarchical: return "hierarchical";
    case AllreduceMode::kRing: return "ring";
    case AllreduceMode::kMpi: return "mpi";
    case AllreduceMode::kNone: return "none";
  }
  return "?";
}

GradientSync::GradientSync(const Communicator& comm, float* sums, std::size_t grad_size,
                           const std::vector<GradientPiece>& pieces, std::size_t bucket_bytes, bool overlap,
                           AllreduceMode mode, std::size_t shared_buffers)
    : comm_(comm),
      sums_(sums),
      size_(grad_size),
      overlap_(overlap),
      mode_(mode),
      backward_buffer_(sums),
      own_end_(grad_size) {
  // Which ranks share a node, and whether every node has as many.
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(mpi_comm(comm_), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node);
  int node_size = 0, fewest = 0, most = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Allreduce(&node_size, &fewest, 1, MPI_INT, MPI_MIN, mpi_comm(comm_));
  MPI_Allreduce(&node_size, &most, 1, MPI_INT, MPI_MAX, mpi_comm(comm_));
  const bool one_node = node_size == comm.size();
  const bool even = fewest == most;
  const std::string layout = one_node ? "1 node" : even ? std::to_string(comm.size() / node_size) + " nodes x " +
                                                              std::to_string(node_size) + " rank(s)"
                                                        : "nodes of " + std::to_string(fewest) + " to " +
                                                              std::to_string(most) + " ranks";
  const AllreduceMode asked = mode_;
  if (mode_ == AllreduceMode::kAuto) {
    mode_ = one_node ? (comm.size() > 1 ? AllreduceMode::kShared : AllreduceMode::kRing)
            : even   ? AllreduceMode::kHierarchical
                     : AllreduceMode::kMpi;
  }
  // Shared memory cannot span nodes; the hierarchical sum needs equal nodes.
  if (mode_ == AllreduceMode::kShared && !one_node) mode_ = even ? AllreduceMode::kHierarchical : AllreduceMode::kMpi;
  if (mode_ == AllreduceMode::kShared && comm.size() == 1) mode_ = AllreduceMode::kRing;  // nothing to sum
  if (mode_ == AllreduceMode::kHierarchical && !even) mode_ = AllreduceMode::kMpi;
  reason_ = layout + (asked == AllreduceMode::kAuto ? ", chosen by --allreduce auto" : "") +
            (asked != AllreduceMode::kAuto && asked != mode_ ? ", instead of --allreduce " + allreduce_mode_name(asked)
                                                              : "");
  if (mode_ == AllreduceMode::kShared || mode_ == AllreduceMode::kHierarchical) {
    shared_ = std::make_unique<Shared>();
    shared_->node = node;
    shared_->grad_size = grad_size;
    shared_->buffers = shared_buffers;
    MPI_Comm_rank(node, &shared_->rank);
    if (mode_ == AllreduceMode::kHierarchical) {
      MPI_Comm_split(mpi_comm(comm_), shared_->rank, comm.rank(), &shared_->across);
    }
    if (shared_buffers > 0) {  // this rank sums and updates its own part: whole cache lines
      line_part(grad_size, static_cast<std::size_t>(shared_->rank), static_cast<std::size_t>(node_size), &own_begin_,
                &own_end_);
    }
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");  // each segment in its owner's memory
    char* mine = nullptr;
    MPI_Win_allocate_shared(static_cast<MPI_Aint>(shared_->segment_bytes() + 64), 1, info, node, &mine,
                            &shared_->window);
    MPI_Info_free(&info);
    std::fill(mine, mine + shared_->segment_bytes() + 64, 0);
    for (int r = 0; r < node_size; ++r) {
      MPI_Aint bytes = 0;
      int unit = 0;
      char* base = nullptr;
      MPI_Win_shared_query(shared_->window, r, &bytes, &unit, &base);
      shared_->segments.push_back(Shared::aligned(base));
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, shared_->window);
    MPI_Barrier(node);  // every segment zeroed before anyone reads one
    backward_buffer_ = shared_->grad(shared_->rank, 0);
    buckets_.push_back({0, grad_size, pieces.size() - 1});
    return;
  }
  MPI_Comm_free(&node);
  if (mode_ == AllreduceMode::kRing && overlap_) {
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
  if (mode_ == AllreduceMode::kMpi || mode_ == AllreduceMode::kNone) return;
  rings_ = std::make_unique<Rings>();
  MPI_Comm_dup(mpi_comm(comm_), &rings_->comm);
  rings_->buckets.reserve(buckets_.size());
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    rings_->buckets.emplace_back(rings_->comm, sums_ + buckets_[b].begin, buckets_[b].end - buckets_[b].begin,
                                 static_cast<int>(b));
    rings_->buckets.back().post_receives();
  }
  rings_->stats = std::make_unique<Ring<double>>(rings_->comm, stats_, 3, static_cast<int>(buckets_.size()));
  rings_->stats->post_receives();
}

GradientSync::~GradientSync() {
  if (rings_) {
    for (Ring<float>& ring : rings_->buckets) ring.cancel_receives();
    rings_->stats->cancel_receives();
    MPI_Comm_free(&rings_->comm);
  }
  if (shared_) {
    MPI_Win_unlock_all(shared_->window);
    MPI_Win_free(&shared_->window);
    MPI_Comm_free(&shared_->node);
    if (shared_->across != MPI_COMM_NULL) MPI_Comm_free(&shared_->across);
  }
}

void GradientSync::start_stats(double loss, double correct, double count) {
  stats_[0] = loss;
  stats_[1] = correct;
  stats_[2] = count;
  if (rings_) rings_->stats->start();
}

void GradientSync::progress() {
  // Every ring that has started moves on as far as its messages allow.
  const double t0 = MPI_Wtime();
  rings_->stats->progress();
  for (std::size_t b = 0; b < next_bucket_; ++b) rings_->buckets[b].progress();
  test_seconds_ += MPI_Wtime() - t0;
}

void GradientSync::piece_done(std::size_t piece_index) {
  if (!rings_) return;
  if (next_bucket_ < buckets_.size() && buckets_[next_bucket_].last_piece == piece_index) {
    rings_->buckets[next_bucket_++].start();
  }
  if (overlap_) progress();
}

void GradientSync::all_pieces_done() {
  if (!rings_) return;
  while (next_bucket_ < buckets_.size()) rings_->buckets[next_bucket_++].start();
}

void GradientSync::publish() {
  if (!shared_ || published_) return;
  std::copy(stats_, stats_ + 3, shared_->stats(shared_->rank, step_));
  __atomic_store_n(shared_->published(shared_->rank), step_ + 1, __ATOMIC_RELEASE);
  published_ = true;
}

const double* GradientSync::wait_stats() {
  switch (mode_) {
    case AllreduceMode::kShared:
    case AllreduceMode::kHierarchical: {
      publish();
      shared_->wait_for(step_ + 1);
      stats_[0] = stats_[1] = stats_[2] = 0;
      for (std::size_t r = 0; r < shared_->segments.size(); ++r) {
        const double* peer = shared_->stats(static_cast<int>(r), step_);
        for (int i = 0; i < 3; ++i) stats_[i] += peer[i];
      }
      // Every local rank holds its node's sums; each adds them over the nodes.
      if (mode_ == AllreduceMode::kHierarchical) {
        MPI_Allreduce(MPI_IN_PLACE, stats_, 3, MPI_DOUBLE, MPI_SUM, shared_->across);
      }
      break;
    }
    case AllreduceMode::kMpi:
    case AllreduceMode::kNone:
      MPI_Allreduce(MPI_IN_PLACE, stats_, 3, MPI_DOUBLE, MPI_SUM, mpi_comm(comm_));
      break;
    default:
      rings_->stats->wait();
  }
  return stats_;
}

// Shared memory: slices small enough that the partial sum of 3 or more ranks
// stays in cache until the optimizer reads it.
constexpr std::size_t kSharedSlice = 8192;

std::size_t GradientSync::num_slices() const {
  if (mode_ == AllreduceMode::kShared) return (own_end_ - own_begin_ + kSharedSlice - 1) / kSharedSlice;
  if (mode_ == AllreduceMode::kHierarchical) return 1;  // one allreduce of this rank's part per step
  return buckets_.size();
}

float* GradientSync::place(FlatBuffer* params, Optimizer* optimizer, Mlp<float>* mlp) {
  float* shared = shared_buffer(0);
  if (shared == nullptr) return params->data();
  const std::size_t states = optimizer->state().size();
  if (shared_->buffers < 1 + states) throw Error("internal: too few shared buffers for the optimizer state");
  const bool leader = shared_->rank == 0;
  if (leader) std::copy(params->begin(), params->end(), shared);
  std::vector<float*> places;
  for (std::size_t i = 1; i <= states; ++i) places.push_back(shared_buffer(i));
  optimizer->place_state(places, leader);
  MPI_Barrier(shared_->node);  // filled before anyone reads
  FlatBuffer().swap(*params);
  mlp->set_update_range(own_begin_, own_end_);
  return shared;
}

float* GradientSync::shared_buffer(std::size_t i) const {
  return shared_ && i < shared_->buffers ? shared_->buffer(i) : nullptr;
}

const float* GradientSync::finish_slice(std::size_t i, std::size_t* begin, std::size_t* end,
                                       const float** second) {
  *second = nullptr;
  switch (mode_) {
    case AllreduceMode::kShared: {
      // Rank order, the same bits everywhere: ((g0 + g1) + g2) + ... The last
      // addition is the optimizer's; with 3 or more ranks the others are summed here.
      *begin = own_begin_ + i * kSharedSlice;
      *end = std::min(own_end_, *begin + kSharedSlice);
      const int last = static_cast<int>(shared_->segments.size()) - 1;
      *second = shared_->grad(last, step_);
      if (last == 1) return shared_->grad(0, step_);
      const std::size_t n = *end - *begin;
      float* __restrict out = sums_ + *begin;
      const float* __restrict first = shared_->grad(0, step_) + *begin;
      std::copy(first, first + n, out);
      for (int r = 1; r < last; ++r) {
        const float* __restrict in = shared_->grad(r, step_) + *begin;
        for (std::size_t j = 0; j < n; ++j) out[j] += in[j];
      }
      return sums_;
    }
    case AllreduceMode::kHierarchical: {
      // This node's sum of this rank's part, in local rank order (the same
      // bits on every node's owner of the part), then the sum over the nodes.
      *begin = own_begin_;
      *end = own_end_;
      const int ranks = static_cast<int>(shared_->segments.size());
      float* out = sums_;
      if (ranks == 1) {
        out = shared_->grad(0, step_);  // this rank's own gradient: summed in place
      } else {
        const float* __restrict first = shared_->grad(0, step_);
        std::copy(first + *begin, first + *end, out + *begin);
        for (int r = 1; r < ranks; ++r) {
          const float* __restrict in = shared_->grad(r, step_);
          for (std::size_t j = *begin; j < *end; ++j) out[j] += in[j];
        }
      }
      for (std::size_t done = *begin; done < *end;) {  // MPI counts are int
        const int chunk = static_cast<int>(std::min<std::size_t>(*end - done, INT_MAX / 2));
        MPI_Allreduce(MPI_IN_PLACE, out + done, chunk, MPI_FLOAT, MPI_SUM, shared_->across);
        done += static_cast<std::size_t>(chunk);
      }
      return out;
    }
    case AllreduceMode::kMpi:
      MPI_Allreduce(MPI_IN_PLACE, sums_, static_cast<int>(size_), MPI_FLOAT, MPI_SUM, mpi_comm(comm_));
      [[fallthrough]];
    case AllreduceMode::kNone:  // kNone: this rank's own gradient is the "sum"
      *begin = 0;
      *end = size_;
      return sums_;
    default: {
      // Later buckets move on while this one is waited for.
      Ring<float>& ring = rings_->buckets[i];
      while (ring.active()) {
        ring.progress();
        for (std::size_t later = i + 1; later < next_bucket_; ++later) rings_->buckets[later].progress();
      }
      *begin = buckets_[i].begin;
      *end = buckets_[i].end;
      return sums_;
    }
  }
}

void GradientSync::end_step() {
  next_bucket_ = 0;
  published_ = false;
  if (shared_ && shared_->buffers > 0) {  // every part updated before anyone reads the parameters
    __atomic_store_n(shared_->updated(shared_->rank), step_ + 1, __ATOMIC_RELEASE);
    shared_->wait_for(step_ + 1, &Shared::updated);
  }
  ++step_;
  if (shared_) backward_buffer_ = shared_->grad(shared_->rank, step_);
}

}  // namespace nn_dist
